"""Forms of the portal pages. Errors render next to their field (templates/portal/_field.html);
Django adds aria-invalid and aria-describedby to the inputs."""

import re
from datetime import UTC, datetime
from ipaddress import ip_network

from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.utils import timezone

from portal.models import ApiKey, User
from portal.services import DEFAULT_SCOPES


def _email_taken(email: str, *, exclude: User | None = None) -> bool:
    users = User.objects.filter(email__iexact=email)
    if exclude is not None:
        users = users.exclude(pk=exclude.pk)
    return users.exists()


class SignUpForm(forms.Form):
    email = forms.EmailField(
        label="Email", widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})
    )
    password = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 8 characters; not a common password.",
    )

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if _email_taken(email):
            raise forms.ValidationError(
                "An account with this email already exists. Log in instead."
            )
        return email

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        candidate = User(email=self.cleaned_data.get("email", ""))
        password_validation.validate_password(password, candidate)
        return password


class LoginForm(AuthenticationForm):
    """Email and password; the email matches whatever its case."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That email and password do not match an account.",
    }

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()


class EmailForm(forms.Form):
    email = forms.EmailField(
        label="Email", widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})
    )


class ProfileForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["email", "display_name"]
        labels = {"email": "Email", "display_name": "Display name"}
        help_texts = {"display_name": "Shown instead of your email where others see you."}
        widgets = {"email": forms.EmailInput(attrs={"autocomplete": "email"})}

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if _email_taken(email, exclude=self.instance):
            raise forms.ValidationError("Another account already uses this email.")
        return email


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label="Key name",
        max_length=100,
        help_text="For your own reference, e.g. “laptop” or “CI”.",
        error_messages={"required": "Give the key a name."},
    )
    scopes = forms.MultipleChoiceField(
        label="Scopes",
        choices=[("read", "read"), ("write", "write"), ("keys", "keys (may manage API keys)")],
        initial=list(DEFAULT_SCOPES),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one scope."},
    )


def _cap(label: str) -> forms.DecimalField:
    return forms.DecimalField(
        label=label, required=False, min_value=0, max_digits=20, decimal_places=6,
        widget=forms.NumberInput(attrs={"step": "any", "placeholder": "no cap"}),
    )  # fmt: skip


class ApiKeyLimitsForm(forms.Form):
    """A key's optional limits (portal.keys); an empty field means no limit."""

    spend_cap_day = _cap("Credits per day")
    spend_cap_month = _cap("Credits per month")
    spend_cap_total = _cap("Credits in all")
    jobs_per_minute = forms.IntegerField(
        label="Jobs per minute", required=False, min_value=1,
        widget=forms.NumberInput(attrs={"placeholder": "account's limit"}),
    )  # fmt: skip
    expires_at = forms.DateTimeField(
        label="Expires (UTC)", required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )  # fmt: skip
    allowed_cargos = forms.CharField(
        label="Allowed Cargos", required=False, help_text="Slugs, separated by spaces; empty: any."
    )
    allowed_ips = forms.CharField(
        label="Allowed addresses",
        required=False,
        help_text="IP addresses or CIDRs, separated by spaces; empty: any.",
    )

    @classmethod
    def of(cls, key: ApiKey) -> "ApiKeyLimitsForm":
        initial = {name: getattr(key, name) for name in cls.base_fields}
        initial["allowed_cargos"] = " ".join(key.allowed_cargos)
        initial["allowed_ips"] = " ".join(key.allowed_ips)
        if key.expires_at:
            initial["expires_at"] = key.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
        return cls(initial=initial, prefix=str(key.pk))

    def clean_jobs_per_minute(self) -> int | None:
        value = self.cleaned_data["jobs_per_minute"]
        if value is not None and value > settings.API_RATE_LIMIT:
            raise forms.ValidationError(
                f"At most the account's limit, {settings.API_RATE_LIMIT} a minute."
            )
        return value

    def clean_expires_at(self) -> datetime | None:
        value = self.cleaned_data["expires_at"]
        if value is not None:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
            if value <= timezone.now():
                raise forms.ValidationError("Choose a time in the future.")
        return value

    def clean_allowed_cargos(self) -> list[str]:
        slugs = sorted(set(self.cleaned_data["allowed_cargos"].replace(",", " ").split()))
        if any(not re.fullmatch(r"[-a-zA-Z0-9_]{1,100}", slug) for slug in slugs):
            raise forms.ValidationError("Cargo slugs are letters, digits, - and _.")
        return slugs

    def clean_allowed_ips(self) -> list[str]:
        values = self.cleaned_data["allowed_ips"].replace(",", " ").split()
        try:
            return [str(ip_network(value, strict=False)) for value in values]
        except ValueError:
            raise forms.ValidationError(
                "Give IP addresses or CIDRs, e.g. 203.0.113.0/24."
            ) from None
