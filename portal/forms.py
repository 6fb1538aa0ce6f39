"""Forms of the portal pages. Errors render next to their field (templates/portal/_field.html);
Django adds aria-invalid and aria-describedby to the inputs."""

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm

from portal.models import ApiKey, User


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
        choices=[("read", "read"), ("write", "write")],
        initial=list(ApiKey.SCOPES),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one scope."},
    )
