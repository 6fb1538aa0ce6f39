"""The API's one door (:func:`identify`): who asks (a bearer key or a browser session),
whether the key's scopes allow the request, and its rate limit, in one order for the
fast lane (portal.api.lane), the DRF views (the thin classes below) and the streaming
views (compute.streaming).

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
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from core import metrics, tx
from core.counters import Take, Usage, ahit, hit
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


def client_ip(request: HttpRequest | Request) -> str:
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


# --- the API's one door -------------------------------------------------------------------
SCOPE_MESSAGE = "This API key lacks the required scope"


# Who may come in: an account (a key with the scopes the request needs, or a session), the
# API's default; anyone, whose credentials are checked when sent (the OpenAPI document's
# views); anyone, without a look at credentials (PublicView), limited per address.
Access = Literal["account", "open", "public"]


@dataclass
class Asking:
    """A request as the door sees it. ``view``: the DRF view (its handler of ``method``
    and its ``key_scope``), None for a view that serves ``method`` and names no scope.
    ``session``: the signed-in user of a browser session, CSRF-checked (None when
    there is none); absent where only keys are taken."""

    authorization: str
    ip: str
    method: str
    view: object = None
    session: Callable[[], User | None] | None = None
    access: Access = "account"


@dataclass
class Who:
    """Who asks: the account, and the key it came with (None for a browser session or a
    public view's stranger)."""

    user: User | None
    key: KeyInfo | None


class Io:
    """How the door reaches the database and Redis: in the caller's thread (DRF views,
    driven by :func:`~core.tx.run_sync`) or, with :class:`AsyncIo`, on the event loop.
    ``counted`` learns the usage of each limit (the answer's X-RateLimit-* headers)."""

    def __init__(self, counted: Callable[[Usage], None]) -> None:
        self.counted = counted

    async def one(self, statement: tx.Statement) -> Any:
        return await SyncTx().one(statement)

    async def hit(
        self, bucket: str, limit: int, *, key_id: str | None = None, take: Take | None = None
    ) -> Usage:
        if take is not None:
            raise ValueError("a member is taken on the event loop only")
        return hit(bucket, limit, key_id=key_id)


class AsyncIo(Io):
    """The fast lane's: the loop's own database connections (core.tx) and Redis client."""

    async def one(self, statement: tx.Statement) -> Any:
        return await tx.work(lambda db: db.one(statement))

    async def hit(
        self, bucket: str, limit: int, *, key_id: str | None = None, take: Take | None = None
    ) -> Usage:
        return await ahit(bucket, limit, key_id=key_id, take=take)


async def identify(asking: Asking, io: Io, *, limit: bool = True) -> Who:
    """Who asks, or the refusal, in the API's one order (the fast lane, the DRF views and
    the streaming views all come through here): a bearer key (malformed, unknown, revoked,
    expired, from an address it does not allow: 401/403; its lookup limited per address
    first), else a browser session (CSRF-checked), else 401 (unless the view is open to
    anyone: :data:`Access`); the key's scope (403); the rate limit per key, per account
    or per address (429). Without ``limit`` the caller counts the request itself
    (:func:`count`), first thing."""
    who = Who(None, None)
    if asking.access == "public":
        pass
    elif asking.authorization:
        key = await _key(asking, io)
        who = Who(key.user, key)
    elif asking.session is not None and (user := asking.session()) is not None:
        who = Who(user, None)
    elif asking.access == "account":
        raise exceptions.NotAuthenticated(
            "Authentication required: send 'Authorization: Bearer ak_...'"
        )
    if who.key is not None and asking.access == "account":
        check_scope(who.key, asking.method, asking.view)
    if limit:
        await count(who, asking, io)
    return who


async def _key(asking: Asking, io: Io) -> KeyInfo:
    key_hash = hash_key(bearer_key(asking.authorization))
    found, info = cached_key(key_hash)
    if not found:
        # Database lookups are limited per IP, so guessing keys costs a stranger a 429
        # long before it costs the database anything.
        await count_in(io, f"lookup:{asking.ip}", settings.API_ANON_RATE_LIMIT)
        now = time.monotonic()
        rows = await io.one(tx.query(_by_hash, key_hash=key_hash))
        info = cache_key(key_hash, _info(rows, key_hash), now)
    key = usable(info, asking.ip)
    if touch_due(key):
        await io.one(touching(key))
    return key


def check_scope(key: KeyInfo, method: str, view: object = None) -> None:
    """A key needs ``read`` for safe methods and ``write`` for the others, and the view's
    ``key_scope`` when it names one (``keys``: the API-key endpoints); a method the view
    does not serve answers 405 later, whatever the key's scopes."""
    if view is not None and not hasattr(view, method.lower()):
        return
    needed = getattr(view, "key_scope", None)
    if needed is not None and needed not in key.scopes:
        raise exceptions.PermissionDenied(
            f"This API key lacks the '{needed}' scope: create a key with it on /settings"
        )
    if ("read" if method in permissions.SAFE_METHODS else "write") not in key.scopes:
        raise exceptions.PermissionDenied(SCOPE_MESSAGE)


async def count(who: Who, asking: Asking, io: Io, take: Take | None = None) -> Usage:
    """Count the request against its key's, its account's or its address's limit (429
    over it, 401 for a key revoked elsewhere); with ``take`` (a key's request, on the
    event loop), take that member too in the same round trip (``Usage.taken``)."""
    if who.key is not None:
        key_id = who.key.key_id
        return await count_in(io, f"key:{key_id}", settings.API_RATE_LIMIT, key_id, take)
    if who.user is not None:
        return await count_in(io, f"user:{who.user.pk}", settings.API_RATE_LIMIT)
    return await count_in(io, f"ip:{asking.ip}", settings.API_ANON_RATE_LIMIT)


async def count_in(
    io: Io, bucket: str, limit: int, key_id: str | None = None, take: Take | None = None
) -> Usage:
    usage = await io.hit(bucket, limit, key_id=key_id, take=take)
    io.counted(usage)
    enforce(usage, key_id=key_id)
    return usage


def asking(request: Request, access: Access | None = None) -> Asking:
    """A DRF request as the door sees it: its view's ``access`` is an account's unless
    its permissions let anyone in (AllowAny)."""
    session = PortalSessionAuthentication()
    view = (request.parser_context or {}).get("view")
    if access is None:
        access = (
            "account" if HasScope in getattr(view, "permission_classes", [HasScope]) else "open"
        )
    return Asking(
        authorization=request.META.get("HTTP_AUTHORIZATION", ""),
        ip=client_ip(request),
        method=request.method or "",
        view=view,
        session=lambda: _user(session.authenticate(request)),
        access=access,
    )


def _user(found: tuple[Any, Any] | None) -> User | None:
    return found[0] if found else None


def drf_io(request: Request) -> Io:
    """The door's I/O for a DRF request: the usage of its limits is read back by
    ApiMiddleware for the X-RateLimit-* headers."""
    return Io(functools.partial(setattr, getattr(request, "_request", request), "rate_limit"))


# --- the door in DRF's terms: thin classes, for DRF's views and the OpenAPI document ------
class ApiKeyAuthentication(authentication.BaseAuthentication):
    """The API's one door (:func:`identify`): authentication, scope and rate limit, all
    in DRF's authentication step (the permission and throttle steps that follow it have
    nothing left to check). ``request.auth`` is the key (None for a session)."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User | None, KeyInfo | None]:
        who = run_sync(identify(asking(request), drf_io(request)))  # None: open view, stranger
        return who.user, who.key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class PortalSessionAuthentication(authentication.SessionAuthentication):
    """The signed-in portal user (browser pages calling the API), CSRF-checked: the
    door's second way in (:func:`identify`)."""


class HasScope(permissions.BasePermission):
    """Signed in, with the scopes the request needs: checked by the door
    (ApiKeyAuthentication), which refuses any other request before this step."""

    message = SCOPE_MESSAGE

    def has_permission(self, request: Request, view: object) -> bool:
        return True


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
