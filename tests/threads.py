"""Calls made at the same moment from several threads, as workers taking messages at once."""

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection


def at_once(count: int, call: Callable[[int], Any]) -> list[Any]:
    """``call(i)`` for each ``i`` below ``count``, each on its own thread, all released
    together; what each returned, or the exception it raised, in the order of ``i``. Each
    thread closes its database connection when done."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = call(i)
        except Exception as error:
            results[i] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results
