"""Pairing codes of desktop Islands, mobile pairing sessions, and the audit trail.

No table holds a code in clear: see pairing/codes.py.
"""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from compute.models import Island


class PairingCode(models.Model):
    """A code an Island asked for over NATS; the signed-in user types it at /pair."""

    island = models.ForeignKey(Island, on_delete=models.CASCADE, related_name="pairing_codes")
    seed = models.CharField(max_length=32)
    code_hash = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["island", "used_at", "expires_at"])]

    def __str__(self) -> str:
        return f"pairing code of {self.island_id}"

    def is_live(self) -> bool:
        return self.used_at is None and self.expires_at > timezone.now()


class MobilePairingSession(models.Model):
    """One QR code shown at /pair/mobile; a phone claims it once and becomes an Island."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mobile_pairings"
    )
    code_hash = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    island = models.OneToOneField(
        Island, null=True, blank=True, on_delete=models.SET_NULL, related_name="mobile_pairing"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"mobile pairing {self.id}"

    def is_live(self) -> bool:
        return self.claimed_at is None and self.expires_at > timezone.now()


class PairingAttempt(models.Model):
    """Every attempt to use a code, for audit. Only the first two characters are kept."""

    class Kind(models.TextChoices):
        DESKTOP = "desktop"
        MOBILE = "mobile"

    class Outcome(models.TextChoices):
        PREVIEWED = "previewed"  # a valid code; the confirmation step was shown
        PAIRED = "paired"
        CLAIMED = "claimed"
        WRONG = "wrong"
        EXPIRED = "expired"
        USED = "used"
        ALREADY_PAIRED = "already_paired"
        LOCKED = "locked"
        RATE_LIMITED = "rate_limited"
        INVALID_FORMAT = "invalid_format"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pairing_attempts",
    )
    ip = models.GenericIPAddressField(null=True, blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    code_prefix = models.CharField(max_length=2, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    island = models.ForeignKey(Island, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.outcome} at {self.created_at:%Y-%m-%d %H:%M:%S}"
