"""Bearer-key authentication and scope checks for the public API.

A key is looked up in the database at most once every ``API_KEY_CACHE_SECONDS`` per
process. Revoking a key drops it from this process's cache and leaves a marker in Redis
that the rate-limit script of every other process checks in the same round trip, so a
revoked key is refused everywhere at once. ``last_used_at`` is written at most once a minute per key.
"""

import hmac
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from portal.api.throttling import charge, client_ip
from portal.models import ApiKey, User
from portal.services import KEY_PREFIX, hash_key

LAST_USED_WRITE_INTERVAL = 60.0
MAX_KEY_LENGTH = 200
MAX_CACHED_KEYS = 10_000


@dataclass
class KeyInfo:
    key_id: str
    user: User
    scopes: frozenset[str]
    expires_at: datetime | None
    last_used: float  # Unix time of the last known write of last_used_at


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
        user=key.user,
        scopes=frozenset(key.scopes),
        expires_at=key.expires_at,
        last_used=key.last_used_at.timestamp() if key.last_used_at else 0.0,
    )


def lookup_key(raw_key: str, request: Request) -> KeyInfo | None:
    key_hash = hash_key(raw_key)
    now = time.monotonic()
    with _lock:
        loaded = _cache_loaded.get(key_hash)
        if loaded is not None and now - loaded < settings.API_KEY_CACHE_SECONDS:
            return _cache[key_hash]
    # Database lookups are limited per IP, so guessing keys costs a stranger a 429
    # long before it costs the database anything.
    charge(request, f"lookup:{client_ip(request)}", settings.API_ANON_RATE_LIMIT)
    info = _load(key_hash)
    with _lock:
        if len(_cache) >= MAX_CACHED_KEYS:
            _cache.clear()
            _cache_loaded.clear()
        _cache[key_hash] = info
        _cache_loaded[key_hash] = now
    return info


def _touch(info: KeyInfo) -> None:
    now = time.time()
    if now - info.last_used < LAST_USED_WRITE_INTERVAL:
        return
    info.last_used = now
    # Several processes may pass the check above; the condition keeps it to one write.
    stale = timezone.now() - timedelta(seconds=LAST_USED_WRITE_INTERVAL)
    ApiKey.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale), pk=info.key_id
    ).update(last_used_at=timezone.now())


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, KeyInfo] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if (
            scheme.lower() != "bearer"
            or not raw.startswith(KEY_PREFIX)
            or len(raw) > MAX_KEY_LENGTH
            or not raw.isascii()
        ):
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: use 'Bearer ak_...'"
            )
        info = lookup_key(raw, request)
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
        if not isinstance(request.auth, KeyInfo) or not hasattr(view, request.method.lower()):
            return True  # a session has every scope; an unsupported method answers 405
        needed = "read" if request.method in permissions.SAFE_METHODS else "write"
        return needed in request.auth.scopes


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema: object) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from Settings → API keys: `Authorization: Bearer ak_...`",
        }


class PortalSessionScheme(SessionScheme):
    target_class = PortalSessionAuthentication
