"""The pairing websockets through the real ASGI stack (session auth, origin check,
Redis channel layer)."""

import asyncio
import functools
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from compute.events import IslandStatus, send_to_user
from config.asgi import application
from pairing import consumers, mobile

pytestmark = pytest.mark.django_db(transaction=True)


def in_own_loop(test):
    """Run an async test on a fresh event loop in its own thread: the session's headless
    browser (Playwright's sync API) keeps a loop running in the main thread."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, test(*args, **kwargs)).result(timeout=30)

    return run


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def connect(path: str, user=None) -> tuple[WebsocketCommunicator, bool]:
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if user is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(user)))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect()
    return communicator, connected


def claim(code: str) -> dict:
    body = {"code": code, "device_name": "Pixel 8", "platform": "android"}
    response = APIClient().post("/api/v1/pairing/mobile/claim", body, format="json")
    assert response.status_code == 201
    return response.json()["data"]


@in_own_loop
async def test_the_mobile_socket_refuses_anonymous_visitors(user):
    session, _ = await sync_to_async(mobile.start_mobile_session)(user=user)
    communicator, connected = await connect(f"/ws/pair/mobile/{session.pk}/")
    assert connected is False
    await communicator.disconnect()


@in_own_loop
async def test_the_mobile_socket_refuses_another_users_session(user, other_user):
    session, _ = await sync_to_async(mobile.start_mobile_session)(user=user)
    communicator, connected = await connect(f"/ws/pair/mobile/{session.pk}/", other_user)
    assert connected is False
    await communicator.disconnect()


@in_own_loop
async def test_the_mobile_socket_receives_island_paired_after_a_claim(user):
    session, code = await sync_to_async(mobile.start_mobile_session)(user=user)
    communicator, connected = await connect(f"/ws/pair/mobile/{session.pk}/", user)
    assert connected is True
    data = await sync_to_async(claim)(code)
    event = await communicator.receive_json_from(timeout=5)
    assert event == {
        "type": "island.paired",
        "island_id": data["host_id"],
        "name": "Pixel 8",
        "platform": "android",
        "runtime": "onnx",
        "session_id": str(session.pk),
    }
    await communicator.disconnect()


@in_own_loop
async def test_the_mobile_socket_ignores_pairings_of_other_sessions(user):
    session, _ = await sync_to_async(mobile.start_mobile_session)(user=user)
    _, other_code = await sync_to_async(mobile.start_mobile_session)(user=user)
    communicator, _ = await connect(f"/ws/pair/mobile/{session.pk}/", user)
    await sync_to_async(claim)(other_code)
    assert await communicator.receive_nothing(timeout=0.5) is True
    await communicator.disconnect()


@in_own_loop
async def test_the_islands_socket_refuses_anonymous_visitors(db):
    communicator, connected = await connect("/ws/islands/")
    assert connected is False
    await communicator.disconnect()


@in_own_loop
async def test_the_islands_socket_forwards_status_changes_of_the_users_islands(user, other_user):
    communicator, connected = await connect("/ws/islands/", user)
    assert connected is True
    event = IslandStatus(island_id="i-1", status="offline", last_heartbeat_at=None)
    await sync_to_async(send_to_user)(other_user.pk, event)
    assert await communicator.receive_nothing(timeout=0.3) is True
    await sync_to_async(send_to_user)(user.pk, event)
    received = await communicator.receive_json_from(timeout=5)
    assert received["type"] == "island.status"
    assert received["status"] == "offline"
    await communicator.disconnect()


@in_own_loop
async def test_what_the_browser_sends_is_ignored_and_the_socket_stays_open(user):
    communicator, connected = await connect("/ws/islands/", user)
    assert connected is True
    for text in ("not json", '{"type": "island.status"}', "[" * 10_000):
        await communicator.send_to(text_data=text)
    await communicator.send_to(bytes_data=b"\x00\xff")
    assert await communicator.receive_nothing(timeout=0.3) is True
    event = IslandStatus(island_id="i-1", status="online", last_heartbeat_at=None)
    await sync_to_async(send_to_user)(user.pk, event)
    assert (await communicator.receive_json_from(timeout=5))["status"] == "online"
    await communicator.disconnect()


@in_own_loop
async def test_an_idle_socket_outlives_the_channel_layers_blocking_read(user):
    """GIVEN an open socket WHEN no event comes for longer than one blocking read of the
    channel layer (BZPOPMIN, 5 s) THEN the socket is still open and gets the next event
    (redis-py 8's 5 s read timeout closed it with a TimeoutError)."""
    from channels_redis.core import RedisChannelLayer

    communicator, connected = await connect("/ws/islands/", user)
    assert connected is True
    assert await communicator.receive_nothing(timeout=RedisChannelLayer.brpop_timeout + 1.5)
    event = IslandStatus(island_id="i-1", status="online", last_heartbeat_at=None)
    await sync_to_async(send_to_user)(user.pk, event)
    assert (await communicator.receive_json_from(timeout=5))["status"] == "online"
    await communicator.disconnect()


def password_login(user) -> Client:
    client = Client()
    body = {"username": user.email, "password": "correct horse battery"}
    assert client.post("/login", body).status_code == 302
    return client


async def socket_of(client: Client) -> WebsocketCommunicator:
    """An open /ws/islands/ socket with ``client``'s session cookie."""
    value = client.cookies[settings.SESSION_COOKIE_NAME].value
    headers = [
        (b"origin", b"http://127.0.0.1"),
        (b"host", b"127.0.0.1"),
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={value}".encode()),
    ]
    communicator = WebsocketCommunicator(application, "/ws/islands/", headers=headers)
    assert (await communicator.connect())[0] is True
    return communicator


@in_own_loop
async def test_logging_out_closes_the_sockets_of_that_session_only(user):
    laptop, phone = (
        await sync_to_async(password_login)(user),
        await sync_to_async(password_login)(user),
    )
    laptop_socket, phone_socket = await socket_of(laptop), await socket_of(phone)

    await sync_to_async(laptop.post)("/logout")

    assert (await laptop_socket.receive_output(timeout=5))["type"] == "websocket.close"
    assert await phone_socket.receive_nothing(timeout=0.5) is True
    await phone_socket.disconnect()


@in_own_loop
async def test_sign_out_everywhere_closes_the_sockets_of_the_other_sessions(user):
    laptop, phone = (
        await sync_to_async(password_login)(user),
        await sync_to_async(password_login)(user),
    )
    sockets = [await socket_of(laptop), await socket_of(phone)]

    await sync_to_async(laptop.post)("/settings/sessions/end")

    assert (await sockets[1].receive_output(timeout=5))["type"] == "websocket.close"
    assert await sockets[0].receive_nothing(timeout=0.5) is True
    for communicator in sockets:
        await communicator.disconnect()


@in_own_loop
async def test_an_account_holds_at_most_its_websockets_and_the_next_is_refused_cleanly(
    user, other_user, settings
):
    settings.WEBSOCKETS_PER_USER = 3
    sockets = [await connect("/ws/islands/", user) for _ in range(3)]
    assert [connected for _, connected in sockets] == [True] * 3

    extra, accepted = await connect("/ws/islands/", user)
    closed = await extra.receive_output(timeout=5)
    someone_else, theirs_connected = await connect("/ws/islands/", other_user)

    assert accepted is True  # accepted, then closed with a code the page can read
    assert closed == {
        "type": "websocket.close",
        "code": 4429,
        "reason": "At most 3 websockets may be open at once per account",
    }
    assert theirs_connected is True
    await sockets[0][0].disconnect()
    again, connected_again = await connect("/ws/islands/", user)
    assert connected_again is True  # a closed socket gives its slot back
    for communicator in (*(c for c, _ in sockets[1:]), again, someone_else):
        await communicator.disconnect()


@in_own_loop
async def test_an_open_socket_keeps_its_slot_and_a_lost_one_expires(user, monkeypatch):
    """GIVEN slots that expire after 1 s unless renewed WHEN a socket stays open for 2 s
    THEN it still holds its slot; a slot that nobody renews (its process died) expires."""
    from core.redis import redis_client

    monkeypatch.setattr(consumers.SocketSlots, "TTL", 1.0)
    monkeypatch.setattr(consumers.SocketSlots, "RENEW_EVERY", 0.2)
    key = consumers.sockets.key(user.pk)
    await sync_to_async(redis_client().zadd)(key, {"of-a-dead-process": time.time() + 1})
    communicator, _ = await connect("/ws/islands/", user)

    await asyncio.sleep(2)

    members = await sync_to_async(redis_client().zrangebyscore)(key, time.time(), "+inf")
    assert len(members) == 1
    assert members[0] != b"of-a-dead-process"
    await communicator.disconnect()
