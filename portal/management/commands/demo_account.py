"""``python manage.py demo_account``: the account ``make run`` prints, ready to try.

Idempotent: the account is created once (with its starting grant); its password is
derived from SECRET_KEY, so it stays the same across runs of one installation without
being stored anywhere. It is a superuser, so that it opens the admin: ``make run`` is the
operator's own machine, and the banner showing its password is only on that console.

Its API key lasts across runs, so that a CLI logged in with it keeps working after a
restart. The database holds only the key's hash, as for every key; the full key, which
cannot be shown again from it, is kept for the banner in STATE_DIR/demo_api_key (0600).
A new key replaces it when that file is missing, when the key in it no longer works
(revoked on /settings, another database), or when ``--new-key`` asks for one.
"""

import hashlib
import hmac
import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from portal import services
from portal.models import ApiKey, User

DEMO_EMAIL = "demo@example.com"
DEMO_KEY_NAME = "demo (make run)"


def demo_password() -> str:
    digest = hmac.new(str(settings.SECRET_KEY).encode(), b"demo-account-password", hashlib.sha256)
    return "demo-" + digest.hexdigest()[:16]


def key_file() -> Path:
    return Path(settings.STATE_DIR) / "demo_api_key"


def kept_key(user: User) -> str | None:
    """The key kept in the state folder, if it still works for ``user``."""
    try:
        raw = key_file().read_text().strip()
    except FileNotFoundError:
        return None
    live = ApiKey.objects.filter(
        user=user, key_hash=services.hash_key(raw), revoked_at__isnull=True
    ).exists()
    return raw if live else None


def keep_key(raw: str) -> None:
    path = key_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(raw + "\n")
    path.chmod(0o600)  # a file left by hand with a wider mode


def new_key(user: User) -> str:
    """Revoke the demo keys of earlier runs and create one."""
    old_keys = ApiKey.objects.filter(user=user, name=DEMO_KEY_NAME, revoked_at__isnull=True)
    for key in old_keys:
        services.revoke_api_key(key=key)
    return services.create_api_key(user=user, name=DEMO_KEY_NAME)[1]


def demo_user(email: str, password: str) -> User:
    user = User.objects.filter(email=email).first()
    if user is None:
        user = services.sign_up(email=email, password=password)
    changed = []
    if not user.check_password(password):
        user.set_password(password)
        changed.append("password")
    if not (user.is_staff and user.is_superuser):
        user.is_staff = user.is_superuser = True
        changed += ["is_staff", "is_superuser"]
    if changed:
        user.save(update_fields=changed)
    return user


class Command(BaseCommand):
    help = "Create the demo account if missing and print its email, password and API key."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--email", default=DEMO_EMAIL)
        parser.add_argument(
            "--new-key", action="store_true", help="replace the API key of earlier runs"
        )

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        email, password = options["email"].lower(), demo_password()
        user = demo_user(email, password)
        raw = None if options["new_key"] else kept_key(user)
        if raw is None:
            raw = new_key(user)
            keep_key(raw)
        self.stdout.write(f"  email:    {email}")
        self.stdout.write(f"  password: {password}")
        self.stdout.write(f"  API key:  {raw}")
        self.stdout.write(f"  admin:    {settings.PUBLIC_URL}/admin/")
