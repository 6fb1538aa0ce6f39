"""The web process's ASGI handler (config/asgi.py), called in-process."""

import asyncio
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from asgiref.testing import ApplicationCommunicator
from django.contrib.staticfiles import finders

from config.asgi import application


def get(path: str) -> dict:
    """The response to a GET of ``path``, on an event loop of its own (the session's
    browser keeps one running in the main thread)."""

    async def call() -> dict:
        scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": []}
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": b""})
        response = await communicator.receive_output(10)
        response["body"] = b""
        while (part := await communicator.receive_output(10)).get("more_body"):
            response["body"] += part["body"]
        response["body"] += part.get("body", b"")
        return response

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, call()).result(timeout=30)


SWAGGER_BUNDLE = "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"  # 1.5 MB


@pytest.mark.parametrize("path", ["portal.css", SWAGGER_BUNDLE])
def test_a_static_file_is_streamed_without_a_synchronous_iterator_warning(path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = get(f"/static/{path}")
    assert response["status"] == 200
    assert response["body"] == Path(finders.find(path)).read_bytes()
    assert [str(w.message) for w in caught if "synchronous iterators" in str(w.message)] == []
