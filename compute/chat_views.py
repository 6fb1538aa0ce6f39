"""The Chat page: pick an LLM Cargo, type, and watch the answer stream in. The page talks
to ``POST /api/v1/chat/completions`` with the session (and its CSRF token)."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from compute.models import Cargo, Job
from compute.selectors.cargos import catalog
from compute.services import waiting

DEFAULT_MODEL = "llm-chat"


@login_required
def chat(request: HttpRequest) -> HttpResponse:
    cargos = list(catalog(category=Cargo.Category.LLM))
    default = next((c.slug for c in cargos if c.slug == DEFAULT_MODEL), None)
    context = {
        "cargos": cargos,
        "default": default,
        # Marked in the picker: a message to one of them waits in the queue.
        "unavailable": waiting.unservable(cargos),
        "no_island": Job.QueueReason.NO_ISLAND.label,
        "queue_limit": duration(settings.JOB_QUEUE_TIMEOUT_SECONDS),
    }
    return render(request, "compute/chat.html", context)


def duration(seconds: int) -> str:
    """``300`` -> ``5 minutes``; ``90`` -> ``90 seconds``."""
    if seconds % 60:
        return f"{seconds} seconds"
    minutes = seconds // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
