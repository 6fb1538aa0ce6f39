import uuid
from typing import ClassVar

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import models
from django.utils import timezone

from core.money import MONEY


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> "User":
        if not email:
            raise ValueError("email is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save()
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> "User":
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)


class User(AbstractUser):
    """An account: consumer of compute, owner of Islands, or both. Signs in by email."""

    username = None  # type: ignore[assignment]
    first_name = None  # type: ignore[assignment]
    last_name = None  # type: ignore[assignment]
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(unique=True)
    display_name = models.CharField(max_length=100, blank=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []
    objects = UserManager()  # type: ignore[misc,assignment]

    def __str__(self) -> str:
        return self.email


class ApiKey(models.Model):
    """A bearer key. Only the SHA-256 of the full key is stored; the prefix is for display.

    Its limits (all optional, README "API keys"): spend caps in credits per UTC day, per
    UTC month and in all (a job counts its budget while it runs, its cost once ended), a
    jobs-per-minute limit, an expiry, the Cargos and the client addresses it may use."""

    SCOPES = ("read", "write", "keys")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=8)
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    spend_cap_day = models.DecimalField(**MONEY, null=True, blank=True)
    spend_cap_month = models.DecimalField(**MONEY, null=True, blank=True)
    spend_cap_total = models.DecimalField(**MONEY, null=True, blank=True)
    jobs_per_minute = models.PositiveIntegerField(null=True, blank=True)
    allowed_cargos = models.JSONField(default=list, blank=True)  # slugs; empty: any
    allowed_ips = models.JSONField(default=list, blank=True)  # addresses or CIDRs; empty: any

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class ApiKeyDay(models.Model):
    """A key's usage in one UTC day, counted where it happens (portal.keys.usage): its
    jobs and the credits they hold when submitted, their cost and tokens when they end
    (on the day they were submitted), its requests."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="days")
    day = models.DateField()
    requests = models.BigIntegerField(default=0)
    jobs = models.BigIntegerField(default=0)
    tokens = models.BigIntegerField(default=0)
    credits_spent = models.DecimalField(**MONEY, default=0)
    credits_held = models.DecimalField(**MONEY, default=0)

    class Meta:
        ordering = ["day"]
        constraints = [models.UniqueConstraint(fields=["key", "day"], name="unique_key_day")]


class ApiKeyChange(models.Model):
    """The audit trail of a key: who changed what, when, and through which key or session
    (a hash of the session's key, never the key itself)."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="changes")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=16)  # created, updated, revoked
    changes = models.JSONField(default=dict)  # {field: [before, after]}
    by_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    by_session = models.CharField(max_length=16, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["key", "-at"], name="key_change_key_at")]


class AuditEntry(models.Model):
    """One security-relevant action on an account (portal.audit): who did it, from where,
    and a few details that are never a secret. Key edits keep their field-by-field trail
    in ApiKeyChange; this log holds one line for each of them, beside every other action."""

    class Action(models.TextChoices):
        # Labels where the name's own (``Signed In``) would not do.
        SIGNED_IN = "signed_in"
        SIGN_IN_FAILED = "sign_in_failed"
        SIGNED_OUT = "signed_out"
        KEY_CREATED = "key_created", "API key created"
        KEY_UPDATED = "key_updated", "API key edited"
        KEY_REVOKED = "key_revoked", "API key revoked"
        ISLAND_PAIRED = "island_paired"
        ISLAND_RENAMED = "island_renamed"
        ISLAND_UNPAIRED = "island_unpaired"
        CREDENTIALS_ISSUED = "credentials_issued", "Sail credentials issued"
        CREDENTIALS_REVOKED = "credentials_revoked", "Sail credentials revoked"
        CREDITS_GRANTED = "credits_granted"
        PERMISSIONS_CHANGED = "permissions_changed", "Account flags changed"

    class Actor(models.TextChoices):
        USER = "user", "The account holder"
        STAFF = "staff", "Staff"
        KEY = "key", "An API key"
        SYSTEM = "system", "The coordinator"
        ANONYMOUS = "anonymous", "Someone not signed in"

    account = models.ForeignKey(User, on_delete=models.CASCADE, related_name="audit_entries")
    at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=32, choices=Action.choices)
    actor = models.CharField(max_length=16, choices=Actor.choices)
    by_user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    by_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ip = models.GenericIPAddressField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["account", "-at"], name="audit_account_at")]

    def __str__(self) -> str:
        return f"{self.get_action_display()} ({self.at:%Y-%m-%d %H:%M})"


class MagicLink(models.Model):
    """A single-use sign-in link; only the token's hash is stored."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="magic_links")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)


class Session(AbstractBaseSession):
    """A browser's session. The key is the cookie's value; only its SHA-256 is stored
    (portal.sessions), so a copy of this table opens no session. ``user`` lets the owner
    end them all ("Sign out everywhere" on /settings)."""

    session_key = models.CharField(max_length=64, primary_key=True)
    # No database constraint: a session saved by a request that outlived its account's
    # deletion must not fail (Django's store retries a failed insert forever); deleting
    # an account still deletes its sessions (the ORM's cascade).
    user = models.ForeignKey(
        User,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="sessions",
        db_constraint=False,
    )

    @classmethod
    def get_session_store_class(cls):
        # Here, not at the top: portal.sessions imports this module.
        from portal.sessions import SessionStore

        return SessionStore
