"""The "Try a Cargo" page: any Cargo but the chat ones (the Chat page has them) that an
online Island can serve, a form made from its input schema, and the job's progress and
output live. The page talks to ``POST /api/v1/jobs`` and the job's stream with the
session (and its CSRF token)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from compute.models import Cargo
from compute.selectors.cargos import catalog
from compute.services import waiting


@login_required
def try_cargo(request: HttpRequest) -> HttpResponse:
    cargos = [c for c in catalog() if c.category != Cargo.Category.LLM]
    unservable = waiting.unservable(cargos)
    offered = [c for c in cargos if c.slug not in unservable]
    schemas = {c.slug: c.input_schema or {} for c in offered}
    return render(request, "compute/try.html", {"cargos": offered, "schemas": schemas})
