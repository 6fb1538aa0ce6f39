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


def kind_of(subject: str) -> tuple[str | None, str]:
    """``(host_id, kind)`` of a subject: ``host.{id}.{kind}`` or the register subject."""
    if subject == REGISTER:
        return None, "register"
    parts = subject.split(".")
    if len(parts) == 3 and parts[0] == "host":
        return parts[1], parts[2]
    return None, subject
