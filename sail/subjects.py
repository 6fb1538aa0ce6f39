"""NATS subjects of the Island protocol (shared/spec island-protocol.md)."""

REGISTER = "coordinator.hosts.register"
PAIRING = "coordinator.hosts.pairing"
JOBS_STREAM = "JOBS"


def host(host_id: str, kind: str) -> str:
    """``host.{id}.{kind}``: heartbeat, jobs, status, output, progress, image, lease,
    cancel, preload, ping, paired."""
    return f"host.{host_id}.{kind}"
