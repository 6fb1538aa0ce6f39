"""Pairing pages (/pair, /pair/mobile) and the Your Islands section of /settings.
Thin callers of pairing.services and pairing.selectors."""

from urllib.parse import urlencode
from uuid import UUID

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from compute.models import Island
from pairing import mobile, selectors, services
from pairing.codes import normalize
from pairing.forms import PairCodeForm, RenameIslandForm
from portal import audit
from portal.api.auth import client_ip as _client_ip
from portal.models import User


class AuthedRequest(HttpRequest):
    """What login_required and django-htmx's middleware guarantee."""

    user: User
    htmx: HtmxDetails


def client_ip(request: HttpRequest) -> str:
    return _client_ip(request)  # type: ignore[arg-type]  # reads only META


def _pair_form_error(request: HttpRequest, form: PairCodeForm, error: services.PairingError):
    response = render(
        request, "pairing/pair.html", {"form": form, "error": error.message}, status=error.status
    )
    if error.outcome == services.Outcome.RATE_LIMITED:
        response["Retry-After"] = str(error.retry_after)
    return response


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def pair(request: AuthedRequest) -> HttpResponse:
    """Step 1: the code. A valid one leads to the confirmation step."""
    if request.method == "GET":
        return render(request, "pairing/pair.html", {"form": PairCodeForm()})
    form = PairCodeForm(request.POST)
    if not form.is_valid():
        return render(request, "pairing/pair.html", {"form": form}, status=400)
    try:
        island = services.preview_pairing(
            code=form.cleaned_data["code"], user=request.user, ip=client_ip(request)
        )
    except services.PairingError as error:
        return _pair_form_error(request, form, error)
    code = normalize(form.cleaned_data["code"])
    context = {"card": selectors.island_card(island), "code": code}
    return render(request, "pairing/confirm.html", context)


@never_cache
@login_required
@require_POST
def pair_confirm(request: AuthedRequest) -> HttpResponse:
    """Step 2: bind the Island shown on the confirmation step."""
    form = PairCodeForm(request.POST)
    if not form.is_valid():
        return render(request, "pairing/pair.html", {"form": form}, status=400)
    try:
        island = services.confirm_pairing(
            code=form.cleaned_data["code"], user=request.user, ip=client_ip(request)
        )
    except services.PairingError as error:
        return _pair_form_error(request, PairCodeForm(), error)
    return render(request, "pairing/paired.html", {"card": selectors.island_card(island)})


def qr_svg(payload: str) -> str:
    image = qrcode.make(payload, image_factory=qrcode.image.svg.SvgPathImage, border=4)
    svg = image.to_string(encoding="unicode")
    return svg.replace("<svg ", '<svg role="img" aria-label="Pairing QR code" ', 1)


def mobile_payload(code: str) -> str:
    """The documented QR payload: archipelago://pair?code=<CODE>&coordinator=<URL-encoded>."""
    return "archipelago://pair?" + urlencode({"code": code, "coordinator": settings.PUBLIC_URL})


@never_cache
@login_required
@require_GET
def pair_mobile(request: AuthedRequest) -> HttpResponse:
    """A new one-time pairing session on every visit ("New code" reloads the page)."""
    session, code = mobile.start_mobile_session(user=request.user)
    payload = mobile_payload(code)
    context = {
        "session": session,
        "code": code,
        "payload": payload,
        "qr": mark_safe(qr_svg(payload)),  # noqa: S308 - our own SVG of our own payload
        "ttl_seconds": int((session.expires_at - session.created_at).total_seconds()),
    }
    return render(request, "pairing/mobile.html", context)


# --- Your Islands (loaded into /settings with htmx; a full page when opened directly).


@never_cache
@login_required
@require_GET
def your_islands(request: AuthedRequest) -> HttpResponse:
    cards = selectors.island_cards(user=request.user)
    template = "pairing/your_islands.html" if request.htmx else "pairing/your_islands_page.html"
    return render(request, template, {"cards": cards})


def _owned(request: AuthedRequest, island_id: UUID) -> Island:
    island = selectors.owned_island(user=request.user, island_id=island_id)
    if island is None:
        raise Http404("No such Island")
    return island


@login_required
@require_POST
def island_rename(request: AuthedRequest, island_id: UUID) -> HttpResponse:
    island = _owned(request, island_id)
    form = RenameIslandForm(request.POST)
    if not form.is_valid():
        context = {"card": selectors.island_card(island), "rename_form": form}
        return render(request, "pairing/_island_card.html", context, status=400)
    actor = audit.Actor.of(request)
    services.rename_island(island=island, name=form.cleaned_data["name"], actor=actor)
    return render(request, "pairing/_island_card.html", {"card": selectors.island_card(island)})


@login_required
@require_POST
def island_unpair(request: AuthedRequest, island_id: UUID) -> HttpResponse:
    services.unpair_island(island=_owned(request, island_id), actor=audit.Actor.of(request))
    cards = selectors.island_cards(user=request.user)
    return render(request, "pairing/your_islands.html", {"cards": cards})
