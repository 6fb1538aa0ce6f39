"""The ASGI application of the ``web`` process: Django over HTTP, Channels websockets.

Django's own ``ASGIHandler`` runs a request's sync code in a thread made for that one
request (``ThreadSensitiveContext``) and hops between the event loop and that thread
around every sync-only middleware: about a dozen hops per request, and a new database
connection per request because connections belong to threads. Almost every view here is
sync (DRF is), so :class:`Handler` serves sync views the way a WSGI server does: the
whole middleware chain and the view in **one** call on a small pool of long-lived threads
(``WEB_THREADS``), with ``request_started`` / ``request_finished`` (and so
``close_old_connections``) sent in that thread. Async views (server-sent events, chat
completions) keep Django's async path unchanged. bench/README.md has the measurements.
"""

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django.setup(set_prefix=False)

from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from functools import lru_cache  # noqa: E402

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core import signals  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.core.handlers.base import BaseHandler  # noqa: E402
from django.urls import Resolver404, get_resolver, set_script_prefix  # noqa: E402

from portal.api.asgi import limit_api_body  # noqa: E402
from portal.routing import websocket_urlpatterns  # noqa: E402


@lru_cache(maxsize=4096)
def is_async_view(urlconf: str, path_info: str) -> bool:
    try:
        match = get_resolver(urlconf).resolve(path_info)
    except Resolver404:
        return False  # the 404 page: sync
    return iscoroutinefunction(match.func)


class _SyncChain(BaseHandler):
    """The middleware chain built for sync calls, as under WSGI: no adapter anywhere."""

    def __init__(self) -> None:
        self.load_middleware(is_async=False)


class Handler(ASGIHandler):
    def __init__(self, threads: int) -> None:
        super().__init__()  # Django's async chain, for async views
        self.sync_chain = _SyncChain()
        # sync_to_async rather than loop.run_in_executor: it carries the context over and
        # lets a view call async_to_sync (channel layer sends) back on this event loop.
        self.respond_in_thread = sync_to_async(
            self.respond,
            thread_sensitive=False,
            executor=ThreadPoolExecutor(threads, thread_name_prefix="django-sync"),
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path_info = scope["path"].removeprefix(get_script_prefix(scope))
            if not is_async_view(settings.ROOT_URLCONF, path_info):
                return await self.handle_sync(scope, receive, send)
        return await super().__call__(scope, receive, send)

    async def handle_sync(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            response = await self.respond_in_thread(scope, body_file)
            if response.streaming:  # an iterator (a static file): Django's own path
                async with ThreadSensitiveContext():
                    await self.send_response(response, send)
                    await sync_to_async(response.close)()
            else:
                await self.send_response(response, send)
        finally:
            body_file.close()

    def respond(self, scope, body_file):
        """What a WSGI server calls, in one pool thread. A response held in memory is
        closed here, so ``request_finished`` returns the database connection in the
        thread that used it."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.sync_chain.get_response(request)
        response._handler_class = self.__class__
        if not response.streaming:
            response.close()
        return response


django_asgi_app = Handler(threads=settings.WEB_THREADS)

application = ProtocolTypeRouter(
    {
        "http": limit_api_body(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

# What is loaded by now lives as long as the process: frozen, it is no longer walked by
# every full garbage collection.
gc.freeze()
