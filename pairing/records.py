"""What pairing leaves on record: every attempt to use a code (PairingAttempt, counted in
the metrics) and, in the owner's audit log (portal.audit), an Island paired, unpaired
and the Sail credentials of its key issued or revoked."""

import uuid

from compute.models import Island
from core import metrics
from pairing.models import PairingAttempt
from portal import audit as audit_log
from portal.models import AuditEntry, User


def attempted(
    *,
    kind: str,
    user: User | None,
    ip: str,
    code: str,
    outcome: str,
    island_id: uuid.UUID | None = None,
) -> None:
    metrics.PAIRING_ATTEMPTS.labels(kind, outcome).inc()
    PairingAttempt.objects.create(
        kind=kind,
        user=user,
        ip=audit_log.stored_address(ip),
        code_prefix=code[:2],
        outcome=outcome,
        island_id=island_id,
    )


def log_pairing(island: Island, *, account: User, actor: audit_log.Actor) -> None:
    """The owner's audit log: the Island paired and, with a key, the Sail credentials its
    key is admitted with from now on (pairing.identities)."""
    Action = audit_log.Action
    log(island, account, actor, Action.ISLAND_PAIRED, Action.CREDENTIALS_ISSUED)


def log(island: Island, account: User, actor: audit_log.Actor | None, *actions: str) -> None:
    """The first action, and the second (the key's credentials) for an Island with a key;
    in one statement (few between a pairing request and its commit)."""
    details = {"island_id": str(island.pk), "name": island.name}
    rows = [audit_log.entry(account=account, action=actions[0], actor=actor, **details)]
    if island.nkey:
        details["nkey"] = island.nkey  # the public key: the Island's name on the Sail
        rows.append(audit_log.entry(account=account, action=actions[1], actor=actor, **details))
    AuditEntry.objects.bulk_create(rows)
