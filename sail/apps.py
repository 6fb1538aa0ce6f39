from django.apps import AppConfig


class SailConfig(AppConfig):
    name = "sail"

    def ready(self) -> None:
        # Here, not at the top: the apps' handlers modules import their models, which
        # need the app registry (Django's loading order). As the admin finds ``admin``.
        from sail import registry  # (see above)

        registry.discover()
