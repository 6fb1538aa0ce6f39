"""The ASGI application of the ``web`` process: Django over HTTP, Channels websockets.

Django's own ``ASGIHandler`` runs a request's sync code in a thread made for that one
request (``ThreadSensitiveContext``) and hops between the event loop and that thread
around every sync-only middleware, and around each ``process_request`` and
``process_response`` of the others: a dozen hops or more per request, and a new database
connection per request because connections belong to threads. :class:`Handler` serves
every HTTP request the way a WSGI server does instead: the whole middleware chain and the
view in **one** call on a pool of long-lived threads, with ``request_started`` /
``request_finished`` (and so ``close_old_connections``) sent in that thread.

- Sync views (nearly all: DRF is sync) run on ``WEB_THREADS`` threads.
- Job submissions, chat completions and job streams sent with an API key take the API's
  fast lane (portal.api.lane) on the event loop, without the chain.
- Async views (server-sent events, chat completions) are called by the same sync chain,
  which runs their coroutine on the server's event loop while the thread waits (their
  thread-sensitive database calls come back to that thread). They get a pool of their own
  (``WEB_WAITING_THREADS``), since a non-streaming chat completion holds its thread until
  the job ends. A streamed body is sent from the event loop, and is cancelled when the
  client goes away, as Django does; a synchronous one (a static file) is read in a thread.
bench/README.md has the measurements.
"""

import gc
import io
import os

import django

from config.lifeline import die_with_parent

die_with_parent()  # a worker of granian's (the Procfile's) master dies with it
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from collections.abc import AsyncIterator, Iterator  # noqa: E402
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
from django.http import FileResponse  # noqa: E402
from django.urls import Resolver404, get_resolver, set_script_prefix  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from core import metrics  # noqa: E402
from portal.api import lane  # noqa: E402
from portal.api.asgi import limit_api_body, limit_query, until_gone  # noqa: E402

STATIC_BLOCK_SIZE = 64 * 1024  # bytes of a file read per trip to a thread


@lru_cache(maxsize=4096)
def route(urlconf: str, path_info: str) -> tuple[object, tuple]:
    """The view of a path and its keyword arguments (``None`` for the 404 page)."""
    try:
        match = get_resolver(urlconf).resolve(path_info)
    except Resolver404:
        return None, ()
    return match.func, tuple(match.kwargs.items())


class _SyncChain(BaseHandler):
    """The middleware chain built for sync calls, as under WSGI: no adapter anywhere."""

    def __init__(self) -> None:
        self.load_middleware(is_async=False)


class Handler(ASGIHandler):
    def __init__(self, threads: int, waiting_threads: int) -> None:
        # No super().__init__(): Django's async middleware chain is never used here.
        self.sync_chain = _SyncChain()
        # sync_to_async rather than loop.run_in_executor: it carries the context over and
        # lets a view call async_to_sync (async views, channel layer sends) back on this
        # event loop.
        self.respond_sync = self._pool(threads, "django-sync")
        self.respond_waiting = self._pool(waiting_threads, "django-wait")

    def _pool(self, threads: int, name: str):
        executor = ThreadPoolExecutor(threads, thread_name_prefix=name)
        return sync_to_async(self.respond, thread_sensitive=False, executor=executor)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django serves HTTP here, not {scope['type']}")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        path_info = scope["path"].removeprefix(get_script_prefix(scope))
        view, kwargs = route(settings.ROOT_URLCONF, path_info)
        try:
            if lane.takes(scope, view):
                if await lane.serve(scope, body_file, receive, send, view, dict(kwargs)):
                    return
                body_file.seek(0)
            waits = iscoroutinefunction(view)
            respond = self.respond_waiting if waits else self.respond_sync
            response = await respond(scope, body_file)
            if response.streaming:
                async with ThreadSensitiveContext():
                    await self._stream(response, receive, send)
            else:
                await self.send_response(response, send)
        finally:
            body_file.close()

    async def read_body(self, receive):
        """A body that comes in one message (every body under /api/v1: portal.api.asgi
        reads it) is wrapped as it is, without a copy; Django spools any other to a
        temporary file, on disk past FILE_UPLOAD_MAX_MEMORY_SIZE."""
        first = await receive()
        if first["type"] == "http.request" and not first.get("more_body", False):
            return io.BytesIO(first.get("body", b""))  # shares the bytes: no copy
        replayed = [first]

        async def rest():
            return replayed.pop() if replayed else await receive()

        return await super().read_body(rest)

    async def _stream(self, response, receive, send) -> None:
        """Send a streamed body until it ends or the client goes away (then the body's
        iterator is cancelled, so that its ``finally`` blocks run at once)."""
        if not response.is_async:
            # A file (WhiteNoise's static files): read block by block in a thread, instead
            # of Django's fallback, which warns and reads it whole first.
            if isinstance(response, FileResponse):
                response.block_size = STATIC_BLOCK_SIZE
            response.streaming_content = _read_in_thread(response.streaming_content)
        try:
            await until_gone(self.send_response(response, send), receive)
        finally:
            await sync_to_async(response.close)()

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


async def _read_in_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    read = sync_to_async(lambda: next(chunks, None), thread_sensitive=False)
    while (chunk := await read()) is not None:
        yield chunk


django_asgi_app = Handler(
    threads=settings.WEB_THREADS, waiting_threads=settings.WEB_WAITING_THREADS
)

application = ProtocolTypeRouter(
    {
        "http": metrics.instrument(limit_query(limit_api_body(django_asgi_app))),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

# What is loaded by now lives as long as the process: frozen, it is no longer walked by
# every full garbage collection.
gc.freeze()
