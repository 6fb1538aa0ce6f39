"""Portal pages: accounts (sign-up, log in, magic links, password reset) and /settings.
Thin callers of portal.services; htmx requests get the partial they swap in."""

import copy
import math

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from portal import attempts, audit, services, sessions, tasks
from portal.forms import EmailForm, LoginForm, ProfileForm, SignUpForm
from portal.keys.page import keys_context
from portal.models import User

BACKEND = "django.contrib.auth.backends.ModelBackend"


class PortalRequest(HttpRequest):
    """The request of a signed-in page, as the middleware leaves it."""

    user: User
    htmx: HtmxDetails


def client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "landing.html")


def quickstart(request: HttpRequest) -> HttpResponse:
    return render(request, "quickstart.html", {"public_url": settings.PUBLIC_URL})


# --- Accounts ---------------------------------------------------------------------------


def _wait_message(wait: int) -> str:
    minutes = math.ceil(wait / 60)
    return f"Too many attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."


def _limited(request: HttpRequest, template: str, form, wait: int) -> HttpResponse:
    """The form again, with a message saying when the next attempt is allowed."""
    context = {"form": form, "limit_message": _wait_message(wait)}
    response = render(request, template, context, status=429)
    response["Retry-After"] = str(wait)
    return response


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        email = request.POST.get("username", "")
        if wait := attempts.exhausted(action="login", ip=client_ip(request), email=email):
            return _limited(request, self.template, LoginForm(initial={"username": email}), wait)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        email = form.data.get("username", "")
        attempts.record(action="login", ip=client_ip(self.request), email=email)
        return super().form_invalid(form)


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's login page, with the same attempt limits (and counters) as /login."""
    if request.method != "POST":
        return admin.site.login(request)
    email, ip = request.POST.get("username", ""), client_ip(request)
    if wait := attempts.exhausted(action="login", ip=ip, email=email):
        context = {
            **admin.site.each_context(request),
            "title": "Log in",
            "app_path": request.get_full_path(),
            "form": AdminAuthenticationForm(request, initial={"username": email}),
            "limit_message": _wait_message(wait),
        }
        response = render(request, "admin/login_limited.html", context, status=429)
        response["Retry-After"] = str(wait)
        return response
    response = admin.site.login(request)
    if response.status_code == 200:  # the form again: the password did not open the admin
        attempts.record(action="login", ip=ip, email=email)
    return response


class LogoutView(auth_views.LogoutView):
    """Log out; the session's open websockets close too."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        user_id = request.user.pk if request.user.is_authenticated else None
        response = super().post(request, *args, **kwargs)
        if user_id is not None:
            sessions.tell_sockets(user_id)
        return response


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("settings")
    template = "registration/signup.html"
    form = SignUpForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        email, ip = request.POST.get("email", ""), client_ip(request)
        if wait := attempts.exhausted(action="signup", ip=ip, email=email):
            return _limited(request, template, SignUpForm(initial={"email": email}), wait)
        attempts.record(action="signup", ip=ip, email=email)
        if form.is_valid():
            try:
                user = services.sign_up(**form.cleaned_data)
            except IntegrityError:  # the same email signed up a moment ago
                form.add_error(
                    "email", "An account with this email already exists. Log in instead."
                )
            else:
                login(request, user, backend=BACKEND)
                credits = f"{settings.STARTING_CREDITS:,.0f}"
                messages.success(request, f"Welcome! Your account starts with {credits} credits.")
                return redirect("settings")
    return render(request, template, {"form": form})


@require_http_methods(["GET", "POST"])
def magic_link_request(request: HttpRequest) -> HttpResponse:
    template = "registration/magic_link_request.html"
    form = EmailForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        email, ip = form.cleaned_data["email"], client_ip(request)
        if wait := attempts.exhausted(action="magic_link", ip=ip, email=email):
            return _limited(request, template, EmailForm(initial={"email": email}), wait)
        attempts.record(action="magic_link", ip=ip, email=email)
        # The same answer, and the same work here, whether or not the account exists.
        if attempts.may_send(action="magic_link", email=email):
            tasks.magic_link.delay(email)
        return redirect("magic_link_sent")
    return render(request, template, {"form": form})


def magic_link_sent(request: HttpRequest) -> HttpResponse:
    minutes = int(settings.MAGIC_LINK_TTL.total_seconds() // 60)
    return render(request, "registration/magic_link_sent.html", {"minutes": minutes})


@never_cache
@require_http_methods(["GET", "POST"])
def magic_link_confirm(request: HttpRequest, token: str) -> HttpResponse:
    # GET only shows a button: mail scanners that follow links must not use up the token.
    if request.method == "GET":
        return render(request, "registration/magic_link_confirm.html")
    user = services.redeem_magic_link(token=token)
    if user is None:
        return render(request, "registration/magic_link_invalid.html", status=400)
    login(request, user, backend=BACKEND)
    return redirect("settings")


class PasswordResetView(auth_views.PasswordResetView):
    template = "registration/password_reset_form.html"

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        email, ip = form.cleaned_data["email"], client_ip(self.request)
        if wait := attempts.exhausted(action="password_reset", ip=ip, email=email):
            return _limited(
                self.request, self.template, PasswordResetForm(initial={"email": email}), wait
            )
        attempts.record(action="password_reset", ip=ip, email=email)
        # The same answer, and the same work here, whether or not the account exists.
        if attempts.may_send(action="password_reset", email=email):
            tasks.password_reset.delay(email)
        return HttpResponseRedirect(self.get_success_url())


# --- /settings --------------------------------------------------------------------------


def _optional_url(name: str) -> str | None:
    """The URL of a page another app may not provide yet."""
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


SHOWN_AUDIT_ENTRIES = 50  # the whole log: GET /api/v1/account/audit


def settings_context(request: PortalRequest, **overrides) -> dict:
    user = request.user
    context = {
        "profile_form": ProfileForm(instance=user),
        "credit_history_url": _optional_url("credit-history"),
        **keys_context(user),
        "other_sessions": sessions.others(user=user, keep=request.session.session_key).count(),
        "audit_entries": audit.entries_of(user)[:SHOWN_AUDIT_ENTRIES],
    }
    context.update(overrides)
    return context


@never_cache
@login_required
def settings_page(request: PortalRequest) -> HttpResponse:
    return render(request, "settings.html", settings_context(request))


@never_cache
@login_required
@require_POST
def profile_update(request: PortalRequest) -> HttpResponse:
    # A copy, so that a rejected email never reaches request.user (shown in the header).
    form = ProfileForm(request.POST, instance=copy.copy(request.user))
    saved = form.is_valid()
    if saved:
        form.instance.save(update_fields=["email", "display_name"])
        request.user.email, request.user.display_name = (
            form.instance.email,
            form.instance.display_name,
        )
    if request.htmx:
        return render(request, "portal/_profile.html", {"profile_form": form, "saved": saved})
    if saved:
        messages.success(request, "Profile saved.")
        return redirect("settings")
    return render(request, "settings.html", settings_context(request, profile_form=form))


@never_cache
@login_required
@require_POST
def sign_out_everywhere(request: PortalRequest) -> HttpResponse:
    """End every other session of the account (this browser stays signed in)."""
    ended = sessions.end_other_sessions(
        user=request.user, keep=request.session.session_key, actor=audit.Actor.of(request)
    )
    messages.success(request, f"Signed out everywhere else ({ended} session{'s' * (ended != 1)}).")
    return redirect(reverse("settings") + "#sessions")
