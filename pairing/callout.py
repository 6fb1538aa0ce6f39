"""The auth callout: the NATS server asks it about every client that is none of the
coordinator's static users (sail.server_config), and it answers with the client's
permissions or a refusal.

A client proves that it holds an nkey by signing the server's nonce; the server does not
check that signature for keys it does not know, so this does, before anything else.
What the key may do is :func:`pairing.identities.admit`'s to say. The answer is a user
JWT signed with the account key (sail.natsjwt), valid for a limited time. Anyone else
(a password, a token, nothing) is refused.

It runs in the bridge process, on a connection of its own as the callout user, in a
queue group: several bridges share the requests. While none runs, Islands cannot
(re)connect, though those connected go on.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from core import tx
from pairing import identities
from sail import keys, natsjwt, permissions, streams
from sail.client import coordinator_keys, credentials, log_error, servers

logger = logging.getLogger(__name__)
QUEUE_GROUP = "auth-callout"
ACCOUNT = "APP"
NEEDS_A_KEY = "authentication required: connect with an nkey"


Admit = Callable[..., identities.Grant]


def decide(request: dict[str, Any], admit: Admit = identities.admit) -> tuple[str, str, str]:
    """``(user jwt, "", host_id)`` for an admitted client (the host_id of its paired
    Island, or ""), ``("", reason, "")`` for a refused one. Blocking (the database,
    Redis): call it off the event loop."""
    options = request.get("connect_opts") or {}
    client = request.get("client_info") or {}
    key = str(options.get("nkey") or "")
    nonce, signature = str(client.get("nonce") or ""), str(options.get("sig") or "")
    if not keys.is_user_key(key) or not keys.verify_nonce(key, nonce, signature):
        return "", NEEDS_A_KEY, ""
    try:
        grant = admit(key=key, ip=str(client.get("host") or "unknown"))
    except Exception as exc:  # identities.Refused, or the database is away
        return "", f"refused: {exc}", ""
    identities.remember(
        key=key,
        server_id=request["server_id"]["id"],
        client_id=int(client.get("id") or 0),
        ttl_seconds=grant.ttl_seconds,
    )
    jwt = natsjwt.user(
        user_key=request["user_nkey"],
        account=ACCOUNT,
        name=grant.name,
        publish=grant.publish,
        subscribe=grant.subscribe,
        ttl_seconds=grant.ttl_seconds,
        issuer_seed=coordinator_keys().issuer,
    )
    return jwt, "", grant.host_id


def answer(data: bytes, admit: Admit = identities.admit) -> tuple[bytes | None, str]:
    """The signed answer to one authorization request, and the host_id of the Island it
    admits (or ""); no answer for something that is not a request (the server refuses
    the client when its wait ends)."""
    try:
        request = natsjwt.authorization_request(data.decode())
        user_key, server_id = request["user_nkey"], request["server_id"]["id"]
    except (natsjwt.InvalidToken, KeyError, TypeError, UnicodeDecodeError) as exc:
        logger.warning("ignored an authorization request: %s", exc)
        return None, ""
    jwt, error, host_id = decide(request, admit)
    if error:
        host = (request.get("client_info") or {}).get("host")
        logger.info("refused a client from %s: %s", host, error)
    token = natsjwt.response(
        user_key=user_key,
        server_id=server_id,
        issuer_seed=coordinator_keys().issuer,
        jwt=jwt,
        error=error,
    )
    return token.encode(), host_id


async def run_callout(
    nats_url: str, stopping: asyncio.Event, js: JetStreamContext, admit: Admit = identities.admit
) -> None:
    """Answer authorization requests until ``stopping`` is set; ``js`` (the coordinator's)
    makes each admitted Island's jobs consumer first, so that it finds it. ``admit``: who
    a key is (pairing.identities.admit; the agent's tests play the coordinator's part)."""
    nc = await nats.connect(
        servers(nats_url),
        name="coordinator-callout",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        error_cb=log_error,
        **credentials("callout"),
    )
    replies = asyncio.Semaphore(16)

    async def on_request(msg: Msg) -> None:
        async with replies:
            try:
                reply, host_id = await tx.in_thread(answer, msg.data, admit)
                if host_id:
                    try:
                        await streams.ensure_island_consumer(js, host_id)
                    except Exception:  # no stream yet: the bridge is making it
                        logger.warning("could not make the jobs consumer of %s", host_id)
                if reply is not None:
                    await msg.respond(reply)
            except Exception:
                logger.exception("could not answer an authorization request")

    await nc.subscribe(permissions.AUTH_REQUESTS, queue=QUEUE_GROUP, cb=on_request)
    # nats-py may send flush's PING ahead of the SUB before it: a second one makes sure.
    await nc.flush()
    await nc.flush()
    try:
        await stopping.wait()
    finally:
        await nc.drain()
