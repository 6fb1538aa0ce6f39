"""The Chat page: pick an LLM Cargo, type, and watch the answer stream in. The page talks
to ``POST /api/v1/chat/completions`` with the session (and its CSRF token)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from compute.models import Cargo
from compute.selectors.cargos import catalog

DEFAULT_MODEL = "llm-chat"


@login_required
def chat(request: HttpRequest) -> HttpResponse:
    cargos = list(catalog(category=Cargo.Category.LLM))
    default = next((c.slug for c in cargos if c.slug == DEFAULT_MODEL), None)
    return render(request, "compute/chat.html", {"cargos": cargos, "default": default})
