"""``python manage.py demo_account``: the account ``make run`` prints, ready to try.

Idempotent: the account is created once (with its starting grant); its password is
derived from SECRET_KEY, so it stays the same across runs of one installation without
being stored anywhere; each run revokes the previous demo key and prints a fresh one (a
full key cannot be shown twice).
"""

import hashlib
import hmac

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


class Command(BaseCommand):
    help = "Create the demo account if missing and print its email, password and a new API key."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--email", default=DEMO_EMAIL)

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        email, password = options["email"].lower(), demo_password()
        user = User.objects.filter(email=email).first()
        if user is None:
            user = services.sign_up(email=email, password=password)
        elif not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        old_keys = ApiKey.objects.filter(user=user, name=DEMO_KEY_NAME, revoked_at__isnull=True)
        for key in old_keys:
            services.revoke_api_key(key=key)
        _, raw = services.create_api_key(user=user, name=DEMO_KEY_NAME)
        self.stdout.write(f"  email:    {email}")
        self.stdout.write(f"  password: {password}")
        self.stdout.write(f"  API key:  {raw}")
