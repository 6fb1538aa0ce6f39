"""The API-key section of /settings: create (``keys`` only when ticked), edit limits,
revoke, each key's usage chart over 30 days and the audit trail. Thin callers of
portal.keys; htmx requests get the section they swap in."""

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from portal.forms import ApiKeyForm, ApiKeyLimitsForm
from portal.keys import services as keys
from portal.keys.page import keys_context
from portal.models import ApiKey
from portal.views import PortalRequest, settings_context


def _section(request: PortalRequest, **context) -> HttpResponse:
    """The section (htmx), or the whole page."""
    if request.htmx:
        return render(request, "portal/_api_keys.html", keys_context(request.user, **context))
    return render(request, "settings.html", settings_context(request, **context))


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request: PortalRequest) -> HttpResponse:
    if request.method == "GET":
        if request.htmx:
            return _section(request)
        return redirect(reverse("settings") + "#api-keys")
    form = ApiKeyForm(request.POST)
    new_key = None
    if form.is_valid():
        _, new_key = keys.create_key(actor=keys.Actor.of(request), **form.cleaned_data)
        form = ApiKeyForm()
    return _section(request, key_form=form, new_key=new_key)


def _own_key(request: PortalRequest, key_id: uuid.UUID) -> ApiKey:
    return get_object_or_404(ApiKey, pk=key_id, user=request.user, revoked_at__isnull=True)


def _done(request: PortalRequest, notice: str) -> HttpResponse:
    """After a change: the section with its notice (htmx), or back to the page with it."""
    if request.htmx:
        return _section(request, notice=notice)
    messages.success(request, notice)
    return redirect(reverse("settings") + "#api-keys")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def api_key_revoke(request: PortalRequest, key_id: uuid.UUID) -> HttpResponse:
    key = _own_key(request, key_id)
    if request.method == "GET":
        template = "portal/_api_key_confirm.html" if request.htmx else "portal/api_key_revoke.html"
        return render(request, template, {"key": key})
    keys.revoke_key(actor=keys.Actor.of(request), key=key)
    notice = f"Key “{key.name}” ({key.prefix}…) revoked. Requests with it are refused from now on."
    return _done(request, notice)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def api_key_limits(request: PortalRequest, key_id: uuid.UUID) -> HttpResponse:
    """A key's limits: the form in its row (GET), saved (POST) with its audit entry."""
    key = _own_key(request, key_id)
    if request.method == "GET":
        return _limits_form(request, key, ApiKeyLimitsForm.of(key))
    form = ApiKeyLimitsForm(request.POST, prefix=str(key.pk))
    if not form.is_valid():
        return _limits_form(request, key, form, status=422)
    keys.update_key(actor=keys.Actor.of(request), key=key, changes=form.cleaned_data)
    return _done(request, f"Limits of “{key.name}” saved.")


def _limits_form(
    request: PortalRequest, key: ApiKey, form: ApiKeyLimitsForm, status: int = 200
) -> HttpResponse:
    """The limits form: in the key's row (htmx), or on a page of its own."""
    template = "portal/_api_key_limits.html" if request.htmx else "portal/api_key_limits.html"
    return render(request, template, {"key": key, "form": form}, status=status)
