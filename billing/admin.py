"""Billing in the Django admin: everything is read-only (the ledger is immutable and the
balances are its projection); credits move only through "Grant credits", which calls
billing.services.grant like every other caller."""

import uuid
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from billing import services
from billing.models import Balance, LedgerEntry
from portal import audit
from portal.models import User


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class GrantForm(forms.Form):
    """``grant_id`` is drawn when the form is shown, so submitting the same form twice
    (a double click, a reload) makes one grant: the ledger's idempotency key is built
    from it on the server, never taken from the browser."""

    account = forms.EmailField(label="Account email")
    amount = forms.DecimalField(
        label="Credits", max_digits=20, decimal_places=6, min_value=Decimal("0.000001")
    )
    reason = forms.CharField(max_length=200, help_text="Shown in the account's credit history.")
    grant_id = forms.UUIDField(widget=forms.HiddenInput)

    def clean_account(self) -> User:
        email = self.cleaned_data["account"]
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise forms.ValidationError(f"No account with the email {email}.")
        return user


@admin.register(Balance)
class BalanceAdmin(ReadOnlyAdmin):
    list_display = ["user", "available", "held", "earnings"]
    list_select_related = ["user"]
    search_fields = ["user__email"]
    ordering = ["user__email"]
    change_list_template = "billing/admin/balance_change_list.html"
    change_form_template = "billing/admin/balance_change_form.html"

    def get_urls(self) -> list:
        grant = self.admin_site.admin_view(self.grant_view)
        return [path("grant/", grant, name="billing_balance_grant"), *super().get_urls()]

    def grant_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("billing.add_ledgerentry"):
            raise PermissionDenied
        if request.method == "POST":
            form = GrantForm(request.POST)
            if form.is_valid():
                return self._grant(request, **form.cleaned_data)
        else:
            initial = {"account": request.GET.get("account", ""), "grant_id": uuid.uuid4()}
            form = GrantForm(initial=initial)
        context = {
            **self.admin_site.each_context(request),
            "title": "Grant credits",
            "form": form,
            "opts": self.opts,
        }
        return TemplateResponse(request, "billing/admin/grant.html", context)

    def _grant(
        self,
        request: HttpRequest,
        *,
        account: User,
        amount: Decimal,
        reason: str,
        grant_id: uuid.UUID,
    ) -> HttpResponse:
        key = f"admin-grant:{grant_id}"
        with transaction.atomic():
            services.lock_balances(account.pk)  # of a double submit, the second sees the first
            repeated = LedgerEntry.objects.filter(idempotency_key=key).exists()
            entry = services.grant(user=account, amount=amount, reason=reason, idempotency_key=key)
            if not repeated:
                audit.record(
                    account=account, action=audit.Action.CREDITS_GRANTED,
                    actor=audit.Actor.of(request), amount=str(amount), reason=reason,
                )  # fmt: skip
        if repeated:
            messages.warning(request, "This grant was already made; nothing changed.")
        else:
            self.log_addition(request, entry, f"Granted {amount} credits: {reason}")
            messages.success(request, f"Granted {amount} credits to {account.email}.")
        return HttpResponseRedirect(reverse("admin:billing_balance_changelist"))


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    """Entries are immutable: no add, change or delete, for superusers too. A correction
    is a new entry (a grant here, an adjustment through billing.services)."""

    list_display = [
        "created_at",
        "user",
        "kind",
        "amount",
        "job_id",
        "reason",
        "available_after",
        "held_after",
        "earnings_after",
    ]
    list_filter = ["kind"]
    list_select_related = ["user"]
    search_fields = ["user__email", "reason", "idempotency_key"]
    date_hierarchy = "created_at"
    show_full_result_count = False
