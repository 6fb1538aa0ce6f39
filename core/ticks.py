"""Periodic work that runs once per tick however many beats (or workers) there are.

Celery beat sends each periodic task with ``tick`` = its period (settings'
CELERY_BEAT_SCHEDULE); the task first claims the tick, a Redis key per period of the
clock (``SET NX``), and does nothing when another process claimed it already. Two beats
whose schedules are shifted by any phase still fall into the same periods, one tick
each: the first of them runs it. A task called with no ``tick`` (a test, a request for a
dispatch pass) always runs.
"""

import math
import time

from core.redis import redis_client


def claim(name: str, tick: float) -> bool:
    """Whether this caller runs ``name``'s work of the current period of ``tick`` seconds
    (always, when ``tick`` is 0)."""
    if tick <= 0:
        return True
    period = int(time.time() // tick)
    expires = max(1, math.ceil(tick * 2))
    return bool(redis_client().set(f"tick:{name}:{tick}:{period}", 1, nx=True, ex=expires))
