"""Island karma: every change goes through here and leaves a KarmaEvent.

1 karma is about one hour of successful compute: completed jobs add minutes to
``pending_minutes`` (1.5x below the monetization threshold), and every 60 of them become
+1 karma. Failures, timeouts and long unannounced disconnections deduct karma.
"""

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from compute.models import Island, KarmaEvent
from compute.selectors.islands import is_heard
from core import prepared
from core.prepared import Prepared

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
        island = Island.objects.select_for_update(no_key=True).get(pk=island_id)
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
            due.select_for_update(skip_locked=True, no_key=True).values_list(
                "id", "karma", "pending_minutes"
            )
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


# --- Jobs: exactly once per job ----------------------------------------------------------
# Called by compute.services.jobs in the transaction that moves the job to its final
# state, under the job's row lock: the state machine lets only one caller end a job, so
# duplicate or reordered Island messages and a second worker never count a job twice.

SECONDS_PER_MINUTE = 60


def compute_seconds(seconds: int, *, karma: int) -> int:
    """What ``seconds`` of a completed job count for: 1.5x (truncated to whole seconds)
    below the monetization threshold, 1x at or above it."""
    seconds = max(0, int(seconds))
    return seconds * 3 // 2 if karma < settings.KARMA_MONETIZATION_THRESHOLD else seconds


def lock_island(island_id: uuid.UUID | str) -> Island:
    """Lock an Island's row for the end of one of its jobs (what the end changes, and
    its owner, who gets paid). Lock order of a job's end: the job, its Island, then the
    balances (billing.services)."""
    island = _locked_island.first(island=island_id)
    if island is None:
        raise Island.DoesNotExist(f"no Island {island_id}")
    return island


# Run at every job's end: built once (core.prepared).
_locked_island = Prepared(
    lambda island: Island.objects.filter(pk=island).only(
        "id",
        "owner_id",
        "karma",
        "pending_minutes",
        "pending_seconds",
        "jobs_completed",
        "jobs_failed",
        "earnings",
    ),
    lock=True,
    island=uuid.UUID,
)


def record_completed_job(
    *,
    island_id: uuid.UUID | str,
    job_id: uuid.UUID | str,
    seconds: int,
    earned: Decimal = Decimal(0),
    island: Island | None = None,
) -> KarmaEvent | None:
    """A completed job: ``jobs_completed`` + 1, ``earned`` (its owner's earning net of the
    fee) added to ``earnings``, and its compute time (``started_at`` to ``completed_at``)
    added to the pending minutes, in one row update. ``island``: the row already locked
    by :func:`lock_island` in this transaction.

    Fractions of a minute: the counted seconds (1.5x below the threshold) join the
    Island's ``pending_seconds``; whole minutes move to ``pending_minutes`` (the rest,
    under 60 s, waits for the next job), and every 60 pending minutes become +1 karma.
    So a 40-minute job below the threshold adds 60 minutes (+1 karma), and a thousand
    5-second jobs add as much as one 5000-second job instead of nothing. A KarmaEvent
    records every change of karma or pending minutes (none when a job only adds seconds).
    """
    # No savepoint: this runs inside the job's transaction, and any error aborts it all.
    with transaction.atomic(savepoint=False):
        island = island or lock_island(island_id)
        counted = island.pending_seconds + compute_seconds(seconds, karma=island.karma)
        minutes, rest = divmod(counted, SECONDS_PER_MINUTE)
        gained, pending = divmod(island.pending_minutes + minutes, MINUTES_PER_KARMA)
        prepared.update(Island, {"pk": island.pk}, {
            "jobs_completed": island.jobs_completed + 1, "earnings": island.earnings + earned,
            "karma": island.karma + gained, "pending_minutes": pending, "pending_seconds": rest,
        })  # fmt: skip
        if not minutes:
            return None
        return KarmaEvent.objects.create(
            island_id=island.pk,
            delta=gained,
            minutes=minutes,
            reason="job_completed",
            job_id=job_id,
            karma_after=island.karma + gained,
            pending_minutes_after=pending,
        )


def record_failed_job(
    *,
    island_id: uuid.UUID | str,
    job_id: uuid.UUID | str,
    timed_out: bool,
    island: Island | None = None,
) -> KarmaEvent | None:
    """A failed or timed-out job: ``jobs_failed`` + 1 and, at once, the karma penalty of
    ``KARMA_FAILURE_PENALTY`` / ``KARMA_TIMEOUT_PENALTY`` (0 turns it off). ``island``:
    the row already locked by :func:`lock_island` in this transaction."""
    penalty = settings.KARMA_TIMEOUT_PENALTY if timed_out else settings.KARMA_FAILURE_PENALTY
    with transaction.atomic(savepoint=False):
        island = island or lock_island(island_id)
        prepared.update(
            Island, {"pk": island.pk},
            {"jobs_failed": island.jobs_failed + 1, "karma": island.karma - penalty},
        )  # fmt: skip
        if not penalty:
            return None
        return KarmaEvent.objects.create(
            island_id=island.pk,
            delta=-penalty,
            reason="job_timeout" if timed_out else "job_failed",
            job_id=job_id,
            karma_after=island.karma - penalty,
            pending_minutes_after=island.pending_minutes,
        )
