"""``python manage.py sail_bridge``: the long-running NATS bridge (see sail/bridge.py)."""

import asyncio
import signal

from django.core.management.base import BaseCommand

from sail.bridge import Bridge


class Command(BaseCommand):
    help = "Answer Islands on NATS and hand their events to the Celery workers."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--nats-url", help="defaults to settings.NATS_URL")

    def handle(self, *args, **options) -> None:
        asyncio.run(self.serve(options.get("nats_url")))

    async def serve(self, nats_url: str | None) -> None:
        bridge = Bridge(nats_url=nats_url)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, bridge.stop)
        await bridge.run()
        self.stdout.write("bridge stopped")
