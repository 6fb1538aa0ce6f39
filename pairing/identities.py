"""Who a key on the Sail is, as the auth callout asks it (pairing.callout), and the
disconnection of keys that lost their Island.

An Island proves that it holds its key by signing the server's nonce; the callout checks
the signature, then asks :func:`admit` what the key may do: the permissions of its
paired Island, or those of a key that can only ask for a pairing code for itself. What a
key was admitted with lasts ``SAIL_CREDENTIAL_SECONDS`` at most; :func:`cut_off` ends it
at once (unpairing, a new pairing), by asking the server to disconnect every connection
the callout admitted with that key. The connection then authenticates again, and is
admitted with what the key may do now.
"""

import logging
from dataclasses import dataclass

import orjson
from django.conf import settings

from compute.models import Island
from core.counters import hit
from core.redis import redis_client
from sail import permissions
from sail.client import system

logger = logging.getLogger(__name__)
# An unpaired key only waits for its code: it authenticates again within the code's life.
UNPAIRED_CREDENTIAL_SECONDS = 900
KICK_TIMEOUT = 2.0


class Refused(Exception):
    """The key may not connect; the message is for the server's log."""


@dataclass(frozen=True)
class Grant:
    name: str
    publish: list[str]
    subscribe: list[str]
    ttl_seconds: int
    host_id: str = ""  # the paired Island's, if any


def admit(*, key: str, ip: str) -> Grant:
    """What the holder of ``key`` may do (its signature is already checked)."""
    island = Island.objects.filter(nkey=key).values_list("id", "owner_id").first()
    if island is not None and island[1] is not None:
        host_id = str(island[0])
        publish, subscribe = permissions.island(host_id, key)
        return Grant(
            f"island:{host_id}", publish, subscribe, settings.SAIL_CREDENTIAL_SECONDS, host_id
        )
    if not hit(f"sail-unpaired:{ip}", settings.SAIL_UNPAIRED_CONNECTS_PER_IP).allowed:
        raise Refused(f"too many connections of unpaired keys from {ip}")
    publish, subscribe = permissions.unpaired(key)
    return Grant(f"unpaired:{key[:16]}", publish, subscribe, UNPAIRED_CREDENTIAL_SECONDS)


def _sessions(key: str) -> str:
    return f"sail:sessions:{key}"


def remember(*, key: str, server_id: str, client_id: int, ttl_seconds: int) -> None:
    """Note a connection the callout admitted, so that :func:`cut_off` can end it."""
    name = _sessions(key)
    pipe = redis_client().pipeline(transaction=False)
    pipe.sadd(name, orjson.dumps([server_id, client_id]))
    pipe.expire(name, ttl_seconds + 60)
    pipe.execute()


def cut_off(key: str) -> int:
    """Disconnect every connection admitted with ``key``; returns how many the servers
    knew. They reconnect by themselves and are admitted anew (:func:`admit`)."""

    members = redis_client().smembers(_sessions(key))
    if not members:
        return 0
    redis_client().delete(_sessions(key))
    sessions = [orjson.loads(member) for member in members]

    async def kick_all(nc) -> int:  # type: ignore[no-untyped-def]
        kicked = 0
        for server_id, client_id in sessions:
            subject = f"$SYS.REQ.SERVER.{server_id}.KICK"
            try:
                reply = await nc.request(subject, orjson.dumps({"cid": client_id}), KICK_TIMEOUT)
            except Exception:  # that server is gone, and the connection with it
                logger.warning("could not reach server %s to disconnect a key", server_id)
                continue
            kicked += "error" not in orjson.loads(reply.data)
        return kicked

    return system.call(kick_all, timeout=KICK_TIMEOUT * len(sessions) + 1)
