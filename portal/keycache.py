"""This process's cache of API keys by hash: a key is looked up in the database at most
once every ``API_KEY_CACHE_SECONDS`` (portal.api.auth); revoking a key drops it here
(portal.services) and other processes learn it from Redis (core.counters)."""

import threading
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from portal.keys.limits import KeyLimits
from portal.models import User

MAX_CACHED_KEYS = 10_000


@dataclass
class KeyInfo:
    key_id: str
    user: User
    scopes: frozenset[str]
    expires_at: datetime | None
    last_used: float  # Unix time of the last known write of last_used_at
    limits: KeyLimits  # portal.keys.limits


_cache: dict[str, KeyInfo | None] = {}  # by key hash; None remembers an unknown key
_cache_loaded: dict[str, float] = {}  # by key hash: monotonic time of the lookup
_lock = threading.Lock()


def forget_key(key_hash: str) -> None:
    with _lock:
        _cache.pop(key_hash, None)
        _cache_loaded.pop(key_hash, None)


def forget_key_id(key_id: str) -> None:
    with _lock:
        for key_hash, info in list(_cache.items()):
            if info is not None and info.key_id == key_id:
                _cache.pop(key_hash, None)
                _cache_loaded.pop(key_hash, None)


def cache_key(key_hash: str, info: KeyInfo | None, loaded: float) -> KeyInfo | None:
    with _lock:
        if len(_cache) >= MAX_CACHED_KEYS:
            _cache.clear()
            _cache_loaded.clear()
        _cache[key_hash] = info
        _cache_loaded[key_hash] = loaded
    return info


def cached_key(key_hash: str, now: float) -> tuple[bool, KeyInfo | None]:
    """``(found, info)`` from this process's cache, without any I/O: found when it was
    looked up less than ``API_KEY_CACHE_SECONDS`` before ``now`` (monotonic time)."""
    with _lock:
        loaded = _cache_loaded.get(key_hash)
        if loaded is not None and now - loaded < settings.API_KEY_CACHE_SECONDS:
            return True, _cache[key_hash]
    return False, None
