from django.apps import AppConfig
from django.contrib.auth import signals


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Accounts and API keys"

    def ready(self) -> None:
        from core import squashes  # noqa: F401  (registers its check on import)
        from portal import audit  # models are loaded only now

        signals.user_logged_in.connect(audit.signed_in, dispatch_uid="audit-signed-in")
        signals.user_login_failed.connect(audit.sign_in_failed, dispatch_uid="audit-failed")
        signals.user_logged_out.connect(audit.signed_out, dispatch_uid="audit-signed-out")
