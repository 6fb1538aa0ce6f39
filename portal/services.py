"""Account and API-key writes, shared by the portal pages, the API and the admin."""

import hashlib
import secrets
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.counters import mark_revoked
from portal import signals
from portal.keycache import forget_key
from portal.models import ApiKey, MagicLink, User

KEY_PREFIX = "ak_"
KEY_RANDOM_CHARS = 40


def hash_key(raw_key: str) -> str:
    # Keys carry ~238 bits from a CSPRNG, so a fast hash is as safe as a slow one here
    # and keeps authentication cheap.
    return hashlib.sha256(raw_key.encode()).hexdigest()


@transaction.atomic
def sign_up(*, email: str, password: str | None) -> User:
    """Create an account with its starting grant of credits (billing.apps)."""
    user = User.objects.create_user(email=email, password=password)
    signals.account_created.send(sender=User, user=user)
    return user


DEFAULT_SCOPES = ("read", "write")  # ``keys`` only when asked for


def create_api_key(
    *, user: User, name: str, scopes: Iterable[str] = DEFAULT_SCOPES, **limits: Any
) -> tuple[ApiKey, str]:
    """Create a key (``limits``: its optional fields, portal.keys); returns the row and
    the full key, which is never retrievable again. Minting rules and the audit trail:
    portal.keys.services."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    raw = KEY_PREFIX + "".join(secrets.choice(alphabet) for _ in range(KEY_RANDOM_CHARS))
    key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=raw[:8],
        key_hash=hash_key(raw),
        scopes=sorted(set(scopes)),
        **limits,
    )
    return key, raw


def revoke_api_key(*, key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    forget_key(key.key_hash)
    # Other web processes learn it from Redis on their next request with this key.
    transaction.on_commit(lambda: mark_revoked(str(key.pk)))


# --- Magic links ------------------------------------------------------------------------


def create_magic_link(*, email: str) -> tuple[User, str] | None:
    """Issue a single-use sign-in token for an active account; None when there is none."""
    user = User.objects.filter(email__iexact=email.strip(), is_active=True).first()
    if user is None:
        return None
    token = secrets.token_urlsafe(32)
    MagicLink.objects.create(
        user=user,
        token_hash=hash_key(token),
        expires_at=timezone.now() + settings.MAGIC_LINK_TTL,
    )
    return user, token


def redeem_magic_link(*, token: str) -> User | None:
    """Use up a token; returns its account, or None when it is unknown, used or expired."""
    now = timezone.now()
    link = MagicLink.objects.select_related("user").filter(token_hash=hash_key(token)).first()
    if link is None or link.expires_at <= now or not link.user.is_active:
        return None
    # The conditional UPDATE is the single-use guarantee: of two concurrent redemptions
    # of one token, only one matches a row with used_at still empty.
    claimed = MagicLink.objects.filter(pk=link.pk, used_at__isnull=True).update(used_at=now)
    return link.user if claimed else None
