"""Bearer-key authentication and scope checks for the public API.

A key is looked up in the database at most once every ``API_KEY_CACHE_SECONDS`` per
process. Revoking a key drops it from this process's cache and leaves a marker in Redis
that the rate-limit script of every other process checks in the same round trip, so a
revoked key is refused everywhere at once. ``last_used_at`` is written at most once a minute per key.
"""

import functools
import hmac
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.utils import timezone
from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from core import metrics, tx
from core.counters import Usage, ahit, hit
from core.prepared import Prepared
from core.tx import SyncTx, run_sync
from portal import keycache
from portal.keycache import KeyInfo, cache_key, forget_key_id
from portal.keys.limits import KeyLimits, check_address, networks
from portal.models import ApiKey, User
from portal.services import KEY_PREFIX, hash_key

LAST_USED_WRITE_INTERVAL = 60.0
MAX_KEY_LENGTH = 200


LIMIT_FIELDS = ("spend_cap_day", "spend_cap_month", "spend_cap_total", "jobs_per_minute",
                "allowed_cargos", "allowed_ips")  # fmt: skip

# The live key of a hash and its account, in one statement built once (core.prepared):
# the account, with the key's fields as annotations.
_by_hash = Prepared(
    lambda key_hash: User.objects.filter(
        api_keys__key_hash=key_hash, api_keys__revoked_at__isnull=True, is_active=True
    ).annotate(
        key_id=F("api_keys__id"),
        key_hash=F("api_keys__key_hash"),
        key_scopes=F("api_keys__scopes"),
        key_expires_at=F("api_keys__expires_at"),
        key_last_used_at=F("api_keys__last_used_at"),
        **{f"key_{name}": F(f"api_keys__{name}") for name in LIMIT_FIELDS},
    )[:1],
    key_hash=str,
)


def _info(rows: list[Any], key_hash: str) -> KeyInfo | None:
    if not rows or not hmac.compare_digest(rows[0].key_hash, key_hash):
        return None
    user = rows[0]
    last_used = user.key_last_used_at
    return KeyInfo(
        key_id=str(user.key_id),
        user=user,
        scopes=frozenset(user.key_scopes),
        expires_at=user.key_expires_at,
        last_used=last_used.timestamp() if last_used else 0.0,
        limits=KeyLimits(
            key_id=str(user.key_id),
            spend_cap_day=user.key_spend_cap_day,
            spend_cap_month=user.key_spend_cap_month,
            spend_cap_total=user.key_spend_cap_total,
            jobs_per_minute=user.key_jobs_per_minute,
            allowed_cargos=frozenset(user.key_allowed_cargos or ()),
            allowed_ips=networks(user.key_allowed_ips or ()),
        ),
    )


def cached_key(key_hash: str) -> tuple[bool, KeyInfo | None]:
    """``(found, info)`` from this process's cache, without any I/O."""
    return keycache.cached_key(key_hash, time.monotonic())


def load_key(
    key_hash: str, ip: str, counted: Callable[[Usage], None] = lambda usage: None
) -> KeyInfo | None:
    """Look a key up in the database (and cache the answer, a miss included).
    ``counted`` learns the usage of the lookup limit (for the answer's headers)."""
    # Database lookups are limited per IP, so guessing keys costs a stranger a 429
    # long before it costs the database anything.
    usage = hit(f"lookup:{ip}", settings.API_ANON_RATE_LIMIT)
    counted(usage)
    enforce(usage)
    now = time.monotonic()
    return cache_key(key_hash, _info(_by_hash.rows(key_hash=key_hash), key_hash), now)


async def aload_key(
    db: tx.AsyncTx, key_hash: str, ip: str, counted: Callable[[Usage], None]
) -> KeyInfo | None:
    """:func:`load_key` on an event loop, with its connection ``db``."""
    usage = await ahit(f"lookup:{ip}", settings.API_ANON_RATE_LIMIT)
    counted(usage)
    enforce(usage)
    now = time.monotonic()
    rows = await db.one(tx.query(_by_hash, key_hash=key_hash))
    return cache_key(key_hash, _info(rows, key_hash), now)


def client_ip(request: Request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def enforce(usage: Usage, *, key_id: str | None = None) -> None:
    """Refuse a request that ``usage`` says is over its limit (429), or whose key was
    revoked in another process (401)."""
    if usage.revoked and key_id:
        forget_key_id(key_id)
        raise exceptions.AuthenticationFailed("Invalid or revoked API key")
    if not usage.allowed:
        metrics.RATE_LIMIT_REFUSALS.labels("key" if key_id else "address").inc()
        raise exceptions.Throttled(wait=usage.retry_after)


def lookup_key(
    raw_key: str, ip: str, counted: Callable[[Usage], None] = lambda usage: None
) -> KeyInfo | None:
    key_hash = hash_key(raw_key)
    found, info = cached_key(key_hash)
    return info if found else load_key(key_hash, ip, counted)


def bearer_key(header: str) -> str:
    """The raw key of an ``Authorization: Bearer ak_...`` header; 401 when malformed."""
    scheme, _, raw = header.partition(" ")
    raw = raw.strip()
    if (
        scheme.lower() != "bearer"
        or not raw.startswith(KEY_PREFIX)
        or len(raw) > MAX_KEY_LENGTH
        or not raw.isascii()
    ):
        raise exceptions.AuthenticationFailed("Malformed Authorization header: use 'Bearer ak_...'")
    return raw


def usable(info: KeyInfo | None, ip: str) -> KeyInfo:
    """``info`` if it names a live key usable from ``ip``; 401 (403 from an address the
    key does not allow) otherwise."""
    if info is None:
        raise exceptions.AuthenticationFailed("Invalid or revoked API key")
    if info.expires_at and info.expires_at <= timezone.now():
        raise exceptions.AuthenticationFailed("API key has expired")
    check_address(info.limits, ip)
    return info


def touch_due(info: KeyInfo) -> bool:
    """Whether ``last_used_at`` is due a write (at most one a minute per key)."""
    return time.time() - info.last_used >= LAST_USED_WRITE_INTERVAL


_TOUCH_SQL = (
    f"UPDATE {ApiKey._meta.db_table} SET last_used_at = %s"  # noqa: S608
    " WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)"
)


def touching(info: KeyInfo) -> tx.Statement:
    """The write of ``last_used_at``; several processes may find it due at once, its
    condition keeps it to one write."""
    info.last_used = time.time()
    now = timezone.now()
    stale = now - timedelta(seconds=LAST_USED_WRITE_INTERVAL)
    key_id = uuid.UUID(info.key_id)
    if connection.vendor != "postgresql":
        key_id = key_id.hex  # type: ignore[assignment]  # SQLite stores UUIDs as hex text
    return tx.Statement(_TOUCH_SQL, [now, key_id, stale], tx.NOTHING)


def touch(info: KeyInfo) -> None:
    if touch_due(info):
        run_sync(SyncTx().one(touching(info)))


def has_scope(info: KeyInfo, method: str, view: object = None) -> bool:
    """A key needs ``read`` for safe methods and ``write`` for the others; and the view's
    ``key_scope`` when it names one (``keys``: the API-key endpoints)."""
    needed = getattr(view, "key_scope", None)
    if needed is not None and needed not in info.scopes:
        return False
    return ("read" if method in permissions.SAFE_METHODS else "write") in info.scopes


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, KeyInfo] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        # The headers of a refused lookup tell its limit (portal.api.middleware).
        counted = functools.partial(setattr, getattr(request, "_request", request), "rate_limit")
        ip = client_ip(request)
        info = usable(lookup_key(bearer_key(header), ip, counted), ip)
        touch(info)
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
        method = request.method or ""
        if not isinstance(request.auth, KeyInfo) or not hasattr(view, method.lower()):
            return True  # a session has every scope; an unsupported method answers 405
        needed = getattr(view, "key_scope", None)
        if needed is not None and needed not in request.auth.scopes:
            raise exceptions.PermissionDenied(
                f"This API key lacks the '{needed}' scope: create a key with it on /settings"
            )
        return has_scope(request.auth, method, view)


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
    target_class = PortalSessionAuthentication  # type: ignore[assignment]
