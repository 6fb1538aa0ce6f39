from django.apps import AppConfig


class SailConfig(AppConfig):
    name = "sail"
