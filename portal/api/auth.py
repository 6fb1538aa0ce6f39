"""Bearer-key authentication and scope checks for the public API.

A key is looked up in the database at most once every ``API_KEY_CACHE_SECONDS`` per
process; revoking a key drops it from this process's cache at once and from the
others' within those seconds.
"""

import hmac
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from portal.models import ApiKey, User
from portal.services import KEY_PREFIX, hash_key

LAST_USED_WRITE_INTERVAL = 60.0


@dataclass
class KeyInfo:
    key_id: str
    key_hash: str
    user: User
    scopes: frozenset[str]
    expires_at: datetime | None
    loaded_at: float
    last_used_written: float = field(default=0.0)


_cache: dict[str, KeyInfo | None] = {}
_cache_loaded: dict[str, float] = {}
_lock = threading.Lock()


def forget_key(key_hash: str) -> None:
    with _lock:
        _cache.pop(key_hash, None)
        _cache_loaded.pop(key_hash, None)


def _load(key_hash: str) -> KeyInfo | None:
    key = (
        ApiKey.objects.select_related("user")
        .filter(key_hash=key_hash, revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if key is None or not hmac.compare_digest(key.key_hash, key_hash):
        return None
    return KeyInfo(
        key_id=str(key.pk),
        key_hash=key.key_hash,
        user=key.user,
        scopes=frozenset(key.scopes),
        expires_at=key.expires_at,
        loaded_at=time.monotonic(),
    )


def lookup_key(raw_key: str) -> KeyInfo | None:
    key_hash = hash_key(raw_key)
    now = time.monotonic()
    with _lock:
        loaded = _cache_loaded.get(key_hash)
        if loaded is not None and now - loaded < settings.API_KEY_CACHE_SECONDS:
            return _cache[key_hash]
    info = _load(key_hash)
    with _lock:
        if len(_cache) > 10_000:  # a stranger spraying random keys must not grow memory
            _cache.clear()
            _cache_loaded.clear()
        _cache[key_hash] = info
        _cache_loaded[key_hash] = now
    return info


def _touch(info: KeyInfo) -> None:
    now = time.monotonic()
    if now - info.last_used_written < LAST_USED_WRITE_INTERVAL:
        return
    info.last_used_written = now
    ApiKey.objects.filter(pk=info.key_id).update(last_used_at=timezone.now())


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, KeyInfo] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw.startswith(KEY_PREFIX) or len(raw) > 200:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: use 'Bearer ak_...'"
            )
        info = lookup_key(raw)
        if info is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key")
        if info.expires_at and info.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed("API key has expired")
        _touch(info)
        return info.user, info

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class PortalSessionAuthentication(authentication.SessionAuthentication):
    """The signed-in portal user (browser pages calling the API), CSRF-checked."""


class HasScope(permissions.BasePermission):
    """Signed in, and the key carries ``read`` for safe methods and ``write`` otherwise."""

    message = "This API key lacks the required scope"

    def has_permission(self, request: Request, view: object) -> bool:
        if not (request.user and request.user.is_authenticated):
            raise exceptions.NotAuthenticated(
                "Authentication required: send 'Authorization: Bearer ak_...'"
            )
        if not isinstance(request.auth, KeyInfo):
            return True
        needed = "read" if request.method in permissions.SAFE_METHODS else "write"
        return needed in request.auth.scopes
