"""``python manage.py sail_setup``: create (or update) the JetStream streams and the
coordinator's consumers, and return. ``make run`` and the deploy path run it before any
process starts, so that nothing an Island publishes can precede its stream; the bridge
checks them again on every start and reconnection."""

import asyncio

import nats
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sail import streams
from sail.client import credentials, servers

# JetStream answers a moment after the server accepts connections.
ATTEMPTS = 20


class Command(BaseCommand):
    help = "Create the Sail's JetStream streams and consumers, then exit."

    def handle(self, *args, **options) -> None:
        try:
            asyncio.run(self.setup())
        except Exception as exc:
            raise CommandError(
                f"could not set up the streams on {settings.NATS_URL}: {exc}"
            ) from exc
        self.stdout.write("streams ready")

    async def setup(self) -> None:
        nc = await nats.connect(
            servers(), name="coordinator-setup", allow_reconnect=False, **credentials()
        )
        try:
            for attempt in range(ATTEMPTS):
                try:
                    await streams.ensure_all(nc.jetstream(), strict=True)
                    return
                except Exception:
                    if attempt == ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(0.25)
        finally:
            await nc.close()
