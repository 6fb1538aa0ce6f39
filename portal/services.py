"""Account and API-key writes, shared by the portal pages, the API and the admin."""

import hashlib
import secrets
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import services as billing
from portal.models import ApiKey, User

KEY_PREFIX = "ak_"
KEY_RANDOM_CHARS = 40


def hash_key(raw_key: str) -> str:
    # Keys carry ~238 bits from a CSPRNG, so a fast hash is as safe as a slow one here
    # and keeps authentication cheap.
    return hashlib.sha256(raw_key.encode()).hexdigest()


@transaction.atomic
def sign_up(*, email: str, password: str | None) -> User:
    """Create an account with its starting grant of credits."""
    user = User.objects.create_user(email=email, password=password)
    billing.grant(
        user=user,
        amount=settings.STARTING_CREDITS,
        reason="Starting grant",
        idempotency_key=f"signup-grant:{user.pk}",
    )
    return user


def create_api_key(
    *, user: User, name: str, scopes: Iterable[str] = ApiKey.SCOPES
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is never retrievable again."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    raw = KEY_PREFIX + "".join(secrets.choice(alphabet) for _ in range(KEY_RANDOM_CHARS))
    key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=raw[:8],
        key_hash=hash_key(raw),
        scopes=sorted(set(scopes)),
    )
    return key, raw


def revoke_api_key(*, key: ApiKey) -> None:
    from portal.api.auth import forget_key

    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    forget_key(key.key_hash)
