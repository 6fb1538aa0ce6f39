"""Websockets of the pairing pages. Both join the user's group (compute.events) and
forward its typed events as JSON; auth and ownership are checked in connect(), and each
holds one of the WEBSOCKETS_PER_USER slots of its account while it is open."""

import asyncio

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from compute.events import SessionsEnded, send_to_user, user_group
from compute.streaming import StreamSlots
from core.errors import ApiError
from pairing.selectors import mobile_session_of
from portal.sessions import session_is_live

# Close codes for refused handshakes (sent as an HTTP 403 before accept).
UNAUTHORIZED = 4401
FORBIDDEN = 4403
# Sent after accept, so that the browser sees it: the account holds all its sockets.
TOO_MANY = 4429
UNAVAILABLE = 1011


class SocketSlots(StreamSlots):
    """The account's open websockets, as its open streams (held, renewed, released)."""

    NAME = "websockets"

    @staticmethod
    def limit() -> int:
        return settings.WEBSOCKETS_PER_USER


sockets = SocketSlots()


class UserEventsConsumer(AsyncJsonWebsocketConsumer):
    """ws/islands/: the Your Islands section re-fetches its cards on these events."""

    group: str | None = None
    slot: str | None = None
    renewing: asyncio.Task | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=UNAUTHORIZED)
            return
        if not await self.authorize(user):
            await self.close(code=FORBIDDEN)
            return
        self.user_id = user.pk
        try:
            self.slot = await sockets.aacquire(user.pk)
        except ApiError as refusal:
            await self.accept()
            code = TOO_MANY if refusal.status_code == 429 else UNAVAILABLE
            await self.close(code=code, reason=str(refusal.detail))
            return
        self.renewing = asyncio.create_task(self.keep_slot(user.pk, self.slot))
        # Kept to check, when sessions of the user end, whether this one did.
        self.session_key = getattr(self.scope.get("session"), "session_key", None)
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def authorize(self, user) -> bool:
        return True

    async def keep_slot(self, user_id: object, slot: str) -> None:
        while True:
            await asyncio.sleep(sockets.RENEW_EVERY)
            await sockets.renew(user_id, slot)

    async def disconnect(self, code: int) -> None:
        if self.renewing:
            self.renewing.cancel()
        if self.slot:
            await sockets.release(self.user_id, self.slot)
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        """The browser only listens: what it sends is dropped unread (decoding it as JSON
        would end the connection with an error on anything else)."""

    async def sessions_ended(self, event: dict) -> None:
        if not await session_is_live(self.session_key):
            await self.close()

    async def island_status(self, event: dict) -> None:
        await self.send_json(event)

    async def island_paired(self, event: dict) -> None:
        await self.send_json(event)


class MobilePairingConsumer(UserEventsConsumer):
    """ws/pair/mobile/<session_id>/: the /pair/mobile page of one pairing session."""

    async def authorize(self, user) -> bool:
        self.session_id = str(self.scope["url_route"]["kwargs"]["session_id"])
        session = await database_sync_to_async(mobile_session_of)(
            user=user, session_id=self.session_id
        )
        return session is not None

    async def island_paired(self, event: dict) -> None:
        if event.get("session_id") == self.session_id:
            await self.send_json(event)


def close_ended_sessions(sender: object, *, user_id: object, **kwargs: object) -> None:
    """portal.signals.sessions_ended: each socket of the account checks its session."""
    send_to_user(user_id, SessionsEnded())
