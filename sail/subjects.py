"""NATS subjects of the Island protocol (shared/spec island-protocol.md)."""

REGISTER = "coordinator.hosts.register"
PAIRING = "coordinator.hosts.pairing"
JOBS_STREAM = "JOBS"
ISLANDS_STREAM = "ISLANDS"
JOB_EVENTS_STREAM = "JOB_EVENTS"


def host(host_id: str, kind: str) -> str:
    """``host.{id}.{kind}``: heartbeat, jobs, status, output, progress, image, lease,
    cancel, preload, ping, paired."""
    return f"host.{host_id}.{kind}"


FIELD = "field."


def to_island(host_id: str, kind: str, *, field: bool) -> str:
    """What the coordinator publishes to one Island: ``host.{id}.{kind}``, or for a field
    Island (no key of its own, sail.server_config) the same under ``field.``, which only
    the field account hears."""
    return f"{FIELD if field else ''}host.{host_id}.{kind}"


def kind_of(subject: str) -> tuple[str | None, str, bool]:
    """``(host_id, kind, field)`` of a subject: ``host.{id}.{kind}`` or the register
    subject, ``field`` when it came from the shared field user (under ``field.``)."""
    field = subject.startswith(FIELD)
    subject = subject.removeprefix(FIELD)
    if subject == REGISTER:
        return None, "register", field
    parts = subject.split(".")
    if len(parts) == 3 and parts[0] == "host":
        return parts[1], parts[2], field
    return None, subject, field


def pairing(key: str) -> str:
    """``coordinator.hosts.pairing.{key}``: the pairing requests of an Island that holds
    ``key`` (only that key may publish there, so the coordinator knows who asks)."""
    return f"{PAIRING}.{key}"
