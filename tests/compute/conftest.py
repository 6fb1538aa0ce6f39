"""The job tests' fixtures (tests/compute/jobs_support.py) for every module here: each
test builds its own placement index; ``chat``, ``streams`` and ``closed_pool`` when asked."""

from tests.compute.jobs_support import _fresh_index, chat, closed_pool, streams  # noqa: F401
