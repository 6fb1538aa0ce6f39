from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from core.money import MONEY


class Balance(models.Model):
    """Projection of an account's ledger, updated in the same transaction as each entry.

    ``available`` can be spent, ``held`` is reserved for running jobs, ``earnings`` is what
    the account's Islands earned (net of the platform fee).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="balance"
    )
    available = models.DecimalField(**MONEY, default=Decimal(0))
    held = models.DecimalField(**MONEY, default=Decimal(0))
    earnings = models.DecimalField(**MONEY, default=Decimal(0))

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(available__gte=0), name="available_not_negative"
            ),
            models.CheckConstraint(condition=models.Q(held__gte=0), name="held_not_negative"),
            models.CheckConstraint(
                condition=models.Q(earnings__gte=0), name="earnings_not_negative"
            ),
        ]


class LedgerEntry(models.Model):
    """An immutable movement of credits. Corrections are new entries, never edits.

    ``amount`` is a magnitude (signed only for adjustments); ``EFFECTS`` says which
    buckets of the balance it moves, so the balance is always the sum of the entries.
    """

    class Kind(models.TextChoices):
        GRANT = "grant"
        HOLD = "hold"
        CAPTURE = "capture"
        RELEASE = "release"
        EARNING = "earning"
        FEE = "fee"
        ADJUSTMENT = "adjustment"

    # kind -> multipliers of amount for (available, held, earnings)
    EFFECTS: dict[str, tuple[int, int, int]] = {
        Kind.GRANT: (1, 0, 0),
        Kind.HOLD: (-1, 1, 0),
        Kind.RELEASE: (1, -1, 0),
        Kind.CAPTURE: (0, -1, 0),
        Kind.EARNING: (0, 0, 1),
        Kind.FEE: (0, 0, -1),
        Kind.ADJUSTMENT: (1, 0, 0),
    }

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ledger"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = models.DecimalField(**MONEY)
    job_id = models.UUIDField(null=True, blank=True, db_index=True)
    idempotency_key = models.CharField(max_length=200, unique=True)
    reason = models.CharField(max_length=200, blank=True)
    available_after = models.DecimalField(**MONEY)
    held_after = models.DecimalField(**MONEY)
    earnings_after = models.DecimalField(**MONEY, default=Decimal(0))
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
