import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def reuse_connections(sender=None, **kwargs) -> None:
    """Connections live as long as Django lets them live between two requests
    (``CONN_MAX_AGE``, ``CONN_HEALTH_CHECKS``; a pool gets them back), not one task
    (settings.CELERY_DB_REUSE_MAX). Eager tasks run inside their caller's transaction."""
    if sender is not None and not getattr(sender.request, "is_eager", False):
        from django.db import close_old_connections

        close_old_connections()
