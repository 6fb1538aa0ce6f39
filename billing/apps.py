from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        # Here, not at the top: billing.services imports models, which need the app
        # registry (Django's loading order).
        from billing import services  # (see above)
        from portal import signals  # (see above)

        signals.account_created.connect(services.grant_starting_credits, weak=False)
