"""Island karma: every change goes through here and leaves a KarmaEvent.

1 karma is about one hour of successful compute: completed jobs add minutes to
``pending_minutes`` (1.5x below the monetization threshold), and every 60 of them become
+1 karma. Failures, timeouts and long unannounced disconnections deduct karma.
"""

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from compute.models import Island, KarmaEvent

MINUTES_PER_KARMA = 60
DISCONNECTION = "disconnection"


def change_karma(
    *,
    island_id: uuid.UUID | str,
    delta: int = 0,
    minutes: int = 0,
    reason: str,
    job_id: uuid.UUID | str | None = None,
) -> KarmaEvent:
    """Add ``delta`` karma and ``minutes`` pending minutes (carrying whole hours over)."""
    with transaction.atomic():
        island = Island.objects.select_for_update().get(pk=island_id)
        gained, pending = divmod(island.pending_minutes + minutes, MINUTES_PER_KARMA)
        island.karma += delta + gained
        island.pending_minutes = pending
        island.save(update_fields=["karma", "pending_minutes"])
        return KarmaEvent.objects.create(
            island=island,
            delta=delta + gained,
            minutes=minutes,
            reason=reason,
            job_id=job_id,
            karma_after=island.karma,
            pending_minutes_after=island.pending_minutes,
        )


def credit_compute(
    *, island_id: uuid.UUID | str, minutes: int, job_id: uuid.UUID | str | None = None
) -> KarmaEvent:
    """Minutes of a completed job; 1.5x (truncated) below the monetization threshold."""
    karma = Island.objects.values_list("karma", flat=True).get(pk=island_id)
    if karma < settings.KARMA_MONETIZATION_THRESHOLD:
        minutes = minutes * 3 // 2
    return change_karma(island_id=island_id, minutes=minutes, reason="job_completed", job_id=job_id)


def penalize_disconnections(*, now: datetime | None = None) -> int:
    """Deduct ``DISCONNECT_KARMA_PENALTY`` once from every Island silent for longer than
    ``DISCONNECT_PENALTY_AFTER_SECONDS`` without a graceful goodbye; returns how many.

    ``disconnect_penalized`` makes it once per disconnection: the next heartbeat clears it.
    """
    from compute.selectors.islands import is_heard

    now = now or timezone.now()
    if not is_heard(now):
        return 0
    amount = settings.DISCONNECT_KARMA_PENALTY
    silent_since = now - timedelta(seconds=settings.DISCONNECT_PENALTY_AFTER_SECONDS)
    due = Island.objects.filter(
        Q(last_heartbeat_at__lt=silent_since),
        offline_graceful=False,
        disconnect_penalized=False,
    )
    with transaction.atomic():
        rows = list(
            due.select_for_update(skip_locked=True).values_list("id", "karma", "pending_minutes")
        )
        ids = [row[0] for row in rows]
        Island.objects.filter(id__in=ids).update(
            karma=F("karma") - amount, disconnect_penalized=True
        )
        KarmaEvent.objects.bulk_create(
            KarmaEvent(
                island_id=island_id,
                delta=-amount,
                reason=DISCONNECTION,
                karma_after=karma - amount,
                pending_minutes_after=pending,
                created_at=now,
            )
            for island_id, karma, pending in rows
        )
    return len(rows)
