from django.apps import AppConfig


class PairingConfig(AppConfig):
    name = "pairing"

    def ready(self) -> None:
        # Here, not at the top: both import models, which need the app registry.
        from pairing import consumers  # (see above)
        from portal import sessions  # (see above)

        sessions.sessions_ended.connect(consumers.close_ended_sessions, weak=False)
