"""Pairing writes: codes for desktop Islands, /pair confirmation, and the owner's
rename/unpair (mobile claims: pairing.mobile). Every attempt to use a code is recorded
(pairing.records), and wrong ones count against the limits of pairing/limits.py.

Side effects fire on commit: ``host.{id}.paired`` on NATS (protocol extension), the
``island.paired`` realtime event to the owner's pages, and on unpairing
``host.{id}.unpaired`` (our extension: ``{host_id, unpaired_at}``, so that a listening
agent can go back to asking for a code at once).
"""

import logging
import math
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from compute.events import IslandPaired, send_to_user
from compute.models import Island
from core.counters import hit
from pairing import codes, identities, limits, records
from pairing.models import PairingAttempt, PairingCode
from portal import audit as audit_log
from portal.models import User
from sail import subjects
from sail.client import sail

logger = logging.getLogger(__name__)
Outcome = PairingAttempt.Outcome
Kind = PairingAttempt.Kind
# How long an Island that a key asked a code for stays when nobody pairs it.
UNPAIRED_KEY_TTL = timedelta(hours=1)
COUNTED = {Outcome.WRONG, Outcome.EXPIRED, Outcome.USED, Outcome.ALREADY_PAIRED, Outcome.LOCKED}


class PairingError(Exception):
    """A code that cannot be used; ``message`` is meant for the person who typed it."""

    def __init__(
        self, message: str, *, outcome: str, code: str, status: int = 400, retry_after: int = 0
    ):
        super().__init__(message)
        self.message = message
        self.outcome = outcome
        self.code = code
        self.status = status
        self.retry_after = retry_after


def after_commit(callback: Callable[[], object]) -> None:
    # robust: a NATS or Redis hiccup is logged and never turns a done pairing into a 500.
    transaction.on_commit(callback, robust=True)


def _minutes(duration: timedelta) -> str:
    minutes = math.ceil(duration.total_seconds() / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def refuse(message: str, outcome: str, code: str, status: int = 400) -> PairingError:
    return PairingError(message, outcome=outcome, code=code, status=status)


def check_limits(*, user: User | None, ip: str) -> None:
    wait = limits.retry_after(user_id=user.pk if user else None, ip=ip)
    if wait is not None:
        raise PairingError(
            f"Too many wrong codes. Try again in {_minutes(timedelta(seconds=wait))}.",
            outcome=Outcome.RATE_LIMITED,
            code="rate_limited",
            status=429,
            retry_after=wait,
        )


# --- Desktop Islands: the code over NATS, then /pair.


def request_pairing_code(
    host_id: str, *, key: str | None = None, registration: dict | None = None
) -> dict:
    """The reply to a pairing request: a live code for an unpaired Island.

    ``key``: the public key the request came with (``coordinator.hosts.pairing.{key}``,
    which only that key may publish on): a host_id is bound to the first key that asks
    for it, and no other key gets its code or its Island. ``registration``: what such an
    Island says of itself (it may not register before it is paired). Without a key (a
    field Island on the shared user) the host_id is all there is.
    """
    try:
        island_id = uuid.UUID(str(host_id))
    except (ValueError, TypeError, AttributeError):
        return {"success": False, "error": "invalid host_id: expected a UUID"}
    if not hit(
        f"sail-pairing:{key or island_id}", settings.SAIL_PAIRING_REQUESTS_PER_MINUTE
    ).allowed:
        return {"success": False, "error": "too many pairing requests: try again in a minute"}
    with transaction.atomic():
        island = Island.objects.select_for_update(no_key=True).filter(pk=island_id).first()
        if island is None:
            if key is not None and Island.objects.filter(nkey=key).exists():
                return {"success": False, "error": "this key belongs to another Island"}
            island = Island.objects.create(id=island_id, nkey=key, **_registered(registration))
        elif island.nkey != key:
            return {"success": False, "error": "this host_id belongs to another key"}
        if island.owner_id is not None:
            return {
                "success": False,
                "error": "already paired",
                "account_id": str(island.owner_id),
                "paired_at": island.paired_at.isoformat() if island.paired_at else None,
            }
        if registration:  # the Island says it anew each time it asks
            for name, value in _registered(registration).items():
                setattr(island, name, value)
            island.save(update_fields=list(_registered(registration)))
        now = timezone.now()
        live = island.pairing_codes.filter(used_at__isnull=True, expires_at__gt=now).first()
        if live is not None and limits.code_locked(live.code_hash):
            # Tried from too many accounts: it stays refused, and the Island gets another.
            live.expires_at = now
            live.save(update_fields=["expires_at"])
            live = None
        if live is None:
            live = _new_pairing_code(island=island, now=now)
    return {
        "success": True,
        "code": codes.derive_code(live.seed),
        "expires_in_seconds": math.ceil((live.expires_at - now).total_seconds()),
        "pair_url": f"{settings.PUBLIC_URL}/pair",
    }


def _registered(registration: dict | None) -> dict:
    """The Island fields of a registration (compute.handlers.parse_register's)."""
    if not registration:
        return {}
    fields = {
        "capabilities": registration["capabilities"],
        "region": registration["region"] or "",
        "agent_version": registration["agent_version"] or "",
    }
    if registration.get("name"):
        fields["name"] = registration["name"]
    return fields


def forget_unpaired_keys(*, older_than: timedelta = UNPAIRED_KEY_TTL) -> int:
    """Delete the Islands that a key asked a code for and nobody paired, once their codes
    are long dead: strangers' requests leave nothing behind. Returns how many."""
    cutoff = timezone.now() - older_than
    stale = Island.objects.filter(
        owner__isnull=True, paired_at__isnull=True, nkey__isnull=False, registered_at__lt=cutoff
    ).exclude(pairing_codes__expires_at__gt=cutoff)
    ids = list(stale.values_list("pk", flat=True)[:10_000])
    # Their codes go with them; their audited attempts stay (without the Island).
    return Island.objects.filter(pk__in=ids).delete()[1].get("compute.Island", 0)


def _new_pairing_code(*, island: Island, now) -> PairingCode:
    for _ in range(10):
        seed = codes.new_seed()
        code_hash = codes.code_hash(codes.derive_code(seed))
        # 30 bits: a clash with another live code is rare but must not make one code
        # open two Islands.
        clash = PairingCode.objects.filter(
            code_hash=code_hash, used_at__isnull=True, expires_at__gt=now
        ).exists()
        if not clash:
            return PairingCode.objects.create(
                island=island,
                seed=seed,
                code_hash=code_hash,
                created_at=now,
                expires_at=now + settings.PAIRING_CODE_TTL,
            )
    raise RuntimeError("could not find a free pairing code")


def _find_desktop_code(*, code: str, user: User, ip: str, lock: bool = False) -> PairingCode:
    if not codes.is_well_formed(code, codes.DESKTOP_LENGTH):
        raise refuse(
            "Enter the 6-character code your Island shows (letters and digits).",
            Outcome.INVALID_FORMAT,
            "invalid_format",
        )
    if codes.has_lookalikes(code):
        raise refuse(
            "Pairing codes never contain I, O, 0 or 1. Check the code your Island shows.",
            Outcome.INVALID_FORMAT,
            "invalid_format",
        )
    check_limits(user=user, ip=ip)
    code_hash = codes.code_hash(code)
    if limits.code_locked(code_hash):
        raise _locked()
    rows = PairingCode.objects.select_related("island").filter(code_hash=code_hash)
    if lock:
        # The code and its Island, locked by the lookup itself: of two people confirming
        # the same code at once, the second waits here and then sees it used.
        rows = rows.select_for_update(no_key=True)
    row = rows.first()
    now = timezone.now()
    if row is None:
        raise refuse(
            "That code is not valid. Check the code your Island shows and try again.",
            Outcome.WRONG,
            "invalid_code",
            404,
        )
    if row.used_at is not None:
        raise refuse(
            "This code has already been used. Each code works once.",
            Outcome.USED,
            "code_used",
            409,
        )
    if row.expires_at <= now:
        # The agent asks for a new code by itself the moment its code expires.
        raise refuse(
            f"This code has expired (codes last {_minutes(settings.PAIRING_CODE_TTL)}). "
            "Your Island has shown a new code by itself: enter the newest code it shows.",
            Outcome.EXPIRED,
            "code_expired",
            410,
        )
    if row.island.owner_id is not None:
        raise refuse(
            "This Island is already paired with an account.",
            Outcome.ALREADY_PAIRED,
            "already_paired",
            409,
        )
    ttl = math.ceil((row.expires_at - now).total_seconds())
    if not limits.note_account_on_code(code_hash=code_hash, user_id=user.pk, ttl_seconds=ttl):
        raise _locked()
    return row


def _locked() -> PairingError:
    return refuse(
        "This code has been tried from too many accounts and is locked. Restart the Island "
        "software to get a new code, or wait: the Island shows a new one by itself within "
        f"{_minutes(settings.PAIRING_CODE_TTL)}.",
        Outcome.LOCKED,
        "code_locked",
        423,
    )


def attempt(kind: str, code: str, user: User | None, ip: str, run: Callable[[], object]):
    """Run one attempt; audit it and count a failure against the limits."""
    try:
        result = run()
    except PairingError as error:
        records.attempted(kind=kind, user=user, ip=ip, code=code, outcome=error.outcome)
        if error.outcome in COUNTED:
            limits.record_failure(user_id=user.pk if user else None, ip=ip)
        raise
    return result


def preview_pairing(*, code: str, user: User, ip: str) -> Island:
    """The Island a code would pair, for the confirmation step. Counts as an attempt."""
    code = codes.normalize(code)
    row = attempt(
        Kind.DESKTOP, code, user, ip, lambda: _find_desktop_code(code=code, user=user, ip=ip)
    )
    records.attempted(
        kind=Kind.DESKTOP,
        user=user,
        ip=ip,
        code=code,
        outcome=Outcome.PREVIEWED,
        island_id=row.island_id,
    )
    return row.island


def confirm_pairing(*, code: str, user: User, ip: str) -> Island:
    """Bind the code's Island to ``user``; the code is spent."""
    code = codes.normalize(code)
    island = attempt(Kind.DESKTOP, code, user, ip, lambda: _bind(code=code, user=user, ip=ip))
    records.attempted(
        kind=Kind.DESKTOP, user=user, ip=ip, code=code, outcome=Outcome.PAIRED, island_id=island.pk
    )
    return island


@transaction.atomic
def _bind(*, code: str, user: User, ip: str) -> Island:
    # Few statements between the request and the commit that publishes ``paired``:
    # one locking lookup, two updates (bench/README.md, "Pairing latency").
    row = _find_desktop_code(code=code, user=user, ip=ip, lock=True)
    island = row.island
    now = timezone.now()
    island.owner = user
    island.paired_at = now
    island.save(update_fields=["owner", "paired_at"])
    # This code is spent by ``user``; any other live code of the Island dies with it.
    spent_by = Case(When(pk=row.pk, then=Value(user.pk)), default=F("used_by"))
    PairingCode.objects.filter(island=island, used_at__isnull=True).update(
        used_at=now, used_by=spent_by
    )
    payload = {"host_id": str(island.pk), "account_id": str(user.pk), "paired_at": now.isoformat()}
    _tell_island(island, "paired", payload)
    after_commit(lambda: send_to_user(user.pk, paired_event(island)))
    records.log_pairing(island, account=user, actor=audit_log.Actor(user=user, ip=ip))
    return island


def _tell_island(island: Island, kind: str, payload: dict) -> None:
    """On commit: ``host.{id}.{kind}`` to the Island; then, for an Island with a key, end
    its connections, which authenticate again at once with what the key may do now
    (the Island's permissions after a pairing, a pairing code's after an unpairing)."""
    subject = subjects.to_island(str(island.pk), kind, field=island.nkey is None)
    after_commit(lambda: sail.publish(subject, payload))
    if island.nkey:
        key = island.nkey
        after_commit(lambda: identities.cut_off(key))


def paired_event(island: Island, session_id: str | None = None) -> IslandPaired:
    runtime = island.runtimes[0] if island.runtimes else "container"
    return IslandPaired(
        island_id=str(island.pk),
        name=island.name or str(island.pk),
        platform=island.platform,
        runtime=runtime,
        session_id=session_id,
    )


# --- The owner's Islands.


@transaction.atomic
def rename_island(*, island: Island, name: str, actor: audit_log.Actor | None = None) -> Island:
    before, island.name = island.name, name.strip()
    island.save(update_fields=["name"])
    if island.owner is not None:
        audit_log.record(
            account=island.owner, action=audit_log.Action.ISLAND_RENAMED, actor=actor,
            island_id=str(island.pk), before=before, after=island.name,
        )  # fmt: skip
    return island


@transaction.atomic
def unpair_island(*, island: Island, actor: audit_log.Actor | None = None) -> None:
    """Unbind from its owner; its mobile token stops working; it may be paired again."""
    if island.owner is not None:
        Action = audit_log.Action
        records.log(island, island.owner, actor, Action.ISLAND_UNPAIRED, Action.CREDENTIALS_REVOKED)
    now = timezone.now()
    island.owner = None
    island.paired_at = None
    island.token_hash = ""
    island.token_expires_at = None
    island.save(update_fields=["owner", "paired_at", "token_hash", "token_expires_at"])
    island.pairing_codes.filter(used_at__isnull=True).update(used_at=now)
    _tell_island(island, "unpaired", {"host_id": str(island.pk), "unpaired_at": now.isoformat()})
