"""The audit log of security-relevant actions on an account (portal.models.AuditEntry):
sign-ins and sign-outs, API keys, Islands paired, renamed and unpaired, Sail credentials,
staff grants and account flags.

The service that does an action writes its entry with :func:`record`, inside its own
transaction: an action that fails leaves no entry, and no entry survives a rolled-back
action. Sign-ins and sign-outs come from Django's auth signals (connected in
portal.apps), whichever page signed in. Details hold no secret: a key's prefix and an
Island's public key, never a key, a token or a password."""

import hashlib
from dataclasses import dataclass, replace
from ipaddress import ip_address
from typing import Any

from django.http import HttpRequest

from portal.models import ApiKey, AuditEntry, User

Action = AuditEntry.Action
Kind = AuditEntry.Actor


@dataclass(frozen=True)
class Actor:
    """Who acts: a signed-in person (the account holder or staff), through a key or a
    session, from an address; ``user`` None: someone not signed in."""

    user: User | None
    key_id: str | None = None
    session: str = ""  # a hash of the session's key, never the key itself
    ip: str | None = None

    @classmethod
    def of(cls, request: Any) -> "Actor":
        key_id = getattr(getattr(request, "auth", None), "key_id", None)  # a page has no auth
        session = getattr(request, "session", None)
        session_key = "" if key_id else (getattr(session, "session_key", "") or "")
        hashed = hashlib.sha256(session_key.encode()).hexdigest()[:16] if session_key else ""
        user = getattr(request, "user", None)
        user = user if user is not None and user.is_authenticated else None
        ip = request.META.get("REMOTE_ADDR") or None
        return cls(user=user, key_id=key_id, session=hashed, ip=ip)

    def acting_key(self) -> ApiKey | None:
        return ApiKey.objects.filter(pk=self.key_id).first() if self.key_id else None

    def kind(self, account: User) -> str:
        if self.key_id:
            return Kind.KEY
        if self.user is None:
            return Kind.ANONYMOUS
        return Kind.USER if self.user.pk == account.pk else Kind.STAFF


def record(*, account: User, action: str, actor: Actor | None, **details: Any) -> AuditEntry:
    """Write one entry about ``account``; ``actor`` None: the coordinator itself."""
    row = entry(account=account, action=action, actor=actor, **details)
    row.save(force_insert=True)
    return row


def entry(*, account: User, action: str, actor: Actor | None, **details: Any) -> AuditEntry:
    """An entry, unsaved: for writing several in one statement (``bulk_create``)."""
    return AuditEntry(
        account=account,
        action=action,
        actor=actor.kind(account) if actor else Kind.SYSTEM,
        by_user=actor.user if actor else None,
        by_key_id=actor.key_id if actor else None,
        ip=stored_address(actor.ip) if actor else None,
        details=details,
    )


def stored_address(ip: str | None) -> str | None:
    """``ip`` if it is an address, for a column of addresses ("unknown" is what a request
    without one gives)."""
    try:
        return str(ip_address(ip)) if ip else None
    except ValueError:
        return None


def entries_of(account: User):
    """The account's log, newest first (what its holder may see)."""
    return AuditEntry.objects.filter(account=account).select_related("by_key")


# --- Sign-ins and sign-outs (Django's auth signals) ---------------------------------------


def _page(request: HttpRequest | None) -> str:
    match = getattr(request, "resolver_match", None)
    return match.view_name if match else ""


def signed_in(sender: Any, request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    # The one who signs in acts, whether or not the request carries them yet.
    actor = replace(Actor.of(request), user=user) if request is not None else Actor(user=user)
    record(account=user, action=Action.SIGNED_IN, actor=actor, page=_page(request))


def sign_in_failed(
    sender: Any, credentials: dict, request: HttpRequest | None = None, **kwargs: Any
) -> None:
    """A wrong password for an existing account (an unknown email concerns no account;
    the sign-in limits count both: portal.attempts)."""
    email = str(credentials.get("username") or credentials.get("email") or "")
    account = User.objects.filter(email__iexact=email.strip()).first() if email else None
    if account is None:
        return
    actor = Actor.of(request) if request is not None else Actor(user=None)
    record(account=account, action=Action.SIGN_IN_FAILED, actor=actor, page=_page(request))


def signed_out(sender: Any, request: HttpRequest | None, user: User | None, **kwargs: Any) -> None:
    if user is None:
        return
    actor = Actor.of(request) if request is not None else Actor(user=user)
    record(account=user, action=Action.SIGNED_OUT, actor=actor)
