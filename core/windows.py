"""Sliding-window limits: at most ``limit`` events in any ``seconds`` long stretch of time.

Each window is a Redis sorted set of its events scored by their time, trimmed to the
last ``seconds`` on every use. Unlike counters that reset on the hour, a limit cannot be
spent twice around a reset, and a refusal waits only until the oldest counted event
leaves the window (its Retry-After). A set holds at most ``limit`` events: what is
refused is not counted, and older events beyond the limit are dropped.
"""

import ipaddress
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from core.redis import redis_client

# For each window (KEYS[i], ARGV: now, then seconds and limit per key): drop what left
# it, then answer its count and the milliseconds until it is below its limit (0: now).
_CHECK = """
local now = tonumber(ARGV[1])
local result = {}
for i, key in ipairs(KEYS) do
  local seconds = tonumber(ARGV[2 * i])
  local limit = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - seconds)
  local count = redis.call('ZCARD', key)
  local wait = 0
  if count >= limit then
    local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    wait = math.max(1, math.ceil((tonumber(oldest[2]) + seconds - now) * 1000))
  end
  table.insert(result, {count, wait})
end
return result
"""
# Add one event (ARGV[2], unique) to each window and keep the newest ``limit`` of them.
_RECORD = """
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local seconds = tonumber(ARGV[2 * i + 1])
  local limit = tonumber(ARGV[2 * i + 2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - seconds)
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('ZREMRANGEBYRANK', key, 0, -limit - 1)
  redis.call('EXPIRE', key, math.ceil(seconds) + 1)
end
return 0
"""


@dataclass(frozen=True)
class Window:
    key: str  # the Redis key, unique to what is counted
    limit: int
    seconds: float


@dataclass(frozen=True)
class Count:
    count: int  # events in the window now
    retry_after: int  # seconds until the window is below its limit; 0 when it is

    @property
    def full(self) -> bool:
        return self.retry_after > 0


@cache
def _scripts():
    client = redis_client()
    return client.register_script(_CHECK), client.register_script(_RECORD)


def _args(windows: Sequence[Window]) -> list:
    return [arg for w in windows for arg in (w.seconds, max(1, w.limit))]


def check(windows: Sequence[Window], *, now: float | None = None) -> list[Count]:
    """What each window holds now, in one round trip."""
    if not windows:
        return []
    now = time.time() if now is None else now
    keys = [w.key for w in windows]
    answers = _scripts()[0](keys=keys, args=[now, *_args(windows)])
    return [Count(count, -(-wait // 1000)) for count, wait in answers]


def retry_after(windows: Sequence[Window], *, now: float | None = None) -> int:
    """Seconds until every window has room; 0 when they all have it now."""
    return max((c.retry_after for c in check(windows, now=now)), default=0)


def record(windows: Sequence[Window], *, now: float | None = None) -> None:
    """Count one event in every window."""
    if not windows:
        return
    now = time.time() if now is None else now
    event = f"{now:.6f}:{secrets.token_hex(4)}"
    keys = [w.key for w in windows]
    _scripts()[1](keys=keys, args=[now, event, *_args(windows)])


def address(ip: str) -> str:
    """What a limit per address counts: the address, or its /64 for IPv6 (what one
    subscriber usually holds whole)."""
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
