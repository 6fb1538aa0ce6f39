"""Who may publish and subscribe to what on the Sail (README, "The Sail's security").

- A **paired Island** (its own key): its own ``host.{id}.*`` reports, its own durable
  consumer ``host-{id}`` on ``JOBS`` (next message and acks, nothing else of
  JetStream), its own pairing subject, and the replies meant for it (``_INBOX_{key}``).
- An **unpaired key**: its own pairing subject and its own replies, nothing else.
- The **shared field user** (upstream agents with ``user:password``), in an account of its
  own: the protocol's subjects for any host_id; what it publishes reaches the coordinator
  under ``field.``, and it hears only what the coordinator sends to field Islands.
- The coordinator's processes: everything but the auth callout's requests.

Subjects are spelled out (never ``host.{id}.>``): a plain publish on ``host.{id}.jobs``
would add jobs to the Island's own queue through the JOBS stream.

Imports no Django: the launcher renders the server configuration before Django starts.
"""

from sail import subjects

REPORTS = ("register", "heartbeat", "status", "output", "progress", "image", "lease", "ping")
FIELD_REPORTS = ("heartbeat", "status", "output", "progress", "image", "lease")
TO_ISLAND = ("jobs", "cancel", "paired", "unpaired", "reregister", "preload")
AUTH_REQUESTS = "$SYS.REQ.USER.AUTH"


def inbox(key: str) -> str:
    """The reply prefix of a key's connection (nats-py ``inbox_prefix``): only the holder
    of the key may subscribe to it, so replies reach nobody else."""
    return f"_INBOX_{key}"


def island(host_id: str, key: str) -> tuple[list[str], list[str]]:
    """(publish, subscribe) of a paired Island."""
    consumer = f"host-{host_id}"
    publish = [subjects.host(host_id, kind) for kind in REPORTS]
    publish += [
        subjects.pairing(key),
        f"$JS.API.CONSUMER.MSG.NEXT.{subjects.JOBS_STREAM}.{consumer}",
        f"$JS.API.CONSUMER.INFO.{subjects.JOBS_STREAM}.{consumer}",
        # The ack reply subject, and its newer form (with domain and account hash).
        f"$JS.ACK.{subjects.JOBS_STREAM}.{consumer}.>",
        f"$JS.ACK.*.*.{subjects.JOBS_STREAM}.{consumer}.>",
    ]
    subscribe = [f"{inbox(key)}.>", *(subjects.host(host_id, kind) for kind in TO_ISLAND)]
    return publish, subscribe


def unpaired(key: str) -> tuple[list[str], list[str]]:
    """(publish, subscribe) of a key no Island is paired with: ask for a code, hear it."""
    return [subjects.pairing(key)], [f"{inbox(key)}.>"]


def field_user() -> dict[str, dict[str, list[str]]]:
    """The shared field user's permissions, in its own account (server configuration)."""
    publish = [subjects.REGISTER, subjects.PAIRING]
    publish += [subjects.host("*", kind) for kind in (*FIELD_REPORTS, "ping")]
    # Its account has no JetStream: an agent looking for its stream is told so at once
    # (and falls back to core NATS for its jobs), instead of waiting for a timeout.
    publish.append("$JS.API.>")
    subscribe = ["_INBOX.>", *(subjects.host("*", kind) for kind in TO_ISLAND)]
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}}
