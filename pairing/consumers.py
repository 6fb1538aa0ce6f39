"""Websockets of the pairing pages. Both join the user's group (compute.events) and
forward its typed events as JSON; auth and ownership are checked in connect()."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from compute.events import user_group
from pairing.selectors import mobile_session_of
from portal.sessions import session_is_live

# Close codes for refused handshakes (sent as an HTTP 403 before accept).
UNAUTHORIZED = 4401
FORBIDDEN = 4403


class UserEventsConsumer(AsyncJsonWebsocketConsumer):
    """ws/islands/: the Your Islands section re-fetches its cards on these events."""

    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=UNAUTHORIZED)
            return
        if not await self.authorize(user):
            await self.close(code=FORBIDDEN)
            return
        # Kept to check, when sessions of the user end, whether this one did.
        self.session_key = getattr(self.scope.get("session"), "session_key", None)
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def authorize(self, user) -> bool:
        return True

    async def disconnect(self, code: int) -> None:
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
