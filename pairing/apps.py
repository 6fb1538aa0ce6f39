from django.apps import AppConfig


class PairingConfig(AppConfig):
    name = "pairing"

    def ready(self) -> None:
        # Here, not at the top: pairing.consumers imports models, which need the app
        # registry (Django's loading order).
        from pairing import consumers  # (see above)
        from portal import signals  # (see above)

        signals.sessions_ended.connect(consumers.close_ended_sessions, weak=False)
