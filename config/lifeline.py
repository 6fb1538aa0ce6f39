"""Web workers die with the web server's master process.

granian (and uvicorn with ``--workers``) runs the app in worker processes that a master
starts and stops. A master killed with SIGKILL cannot stop them: they would be re-parented
to PID 1 and go on serving on the port, beside the workers of the next master. So each
worker asks Linux to send it SIGKILL when its parent dies (``PR_SET_PDEATHSIG``) as it
loads the app (config.asgi); the masters spawn their workers from their main thread,
whose end is what the kernel watches.
"""

import ctypes
import logging
import multiprocessing
import os
import signal
import sys

logger = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """In a worker process of a master (a ``multiprocessing`` child): be killed when the
    master dies; ``True`` if armed. Elsewhere (one process, not Linux) nothing."""
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        logger.warning("could not tie this worker to its master: errno %d", ctypes.get_errno())
        return False
    if os.getppid() != parent.pid:  # the master died before the call: nobody will tell us
        os.kill(os.getpid(), signal.SIGKILL)
    return True
