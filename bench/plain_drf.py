"""What users would write instead (bench/upload.py --plain-drf): a plain Django REST
Framework view, DRF's own JSONParser and a ModelSerializer whose JSONField stores the
submission into Postgres, its answer carrying the input as ours does. Loaded by the web
process in place of the project's settings (DJANGO_SETTINGS_MODULE=plain_drf): the
project's settings and URLs, plus ``POST /plain/jobs``. A bench's scratch: its table is
made by bench/upload.py, and no migration knows it."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "plain_drf"
DATA_UPLOAD_MAX_MEMORY_SIZE = JOB_SUBMIT_MAX_BODY  # noqa: F405 - what such a user sets

import functools  # noqa: E402

TABLE = "bench_plain_upload"
CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, "
    "workload varchar(100) NOT NULL, input jsonb NOT NULL)"
)


def __getattr__(name: str) -> list:
    """``urlpatterns``, built when Django's resolver first asks for them (this module is
    also the settings, read before models may be defined)."""
    if name != "urlpatterns":
        raise AttributeError(name)
    return _urls()


@functools.cache
def _urls() -> list:
    # Imported here: they need the apps, which are loaded after the settings.
    from django.db import models
    from django.urls import path
    from rest_framework import generics, permissions, serializers
    from rest_framework.parsers import JSONParser
    from rest_framework.renderers import JSONRenderer

    class Upload(models.Model):
        workload = models.CharField(max_length=100)
        input = models.JSONField()

        class Meta:
            app_label = "compute"
            db_table = TABLE
            managed = False

    class UploadSerializer(serializers.ModelSerializer):
        class Meta:
            model = Upload
            fields = ["id", "workload", "input"]

    class UploadView(generics.CreateAPIView):
        queryset = Upload.objects.all()
        serializer_class = UploadSerializer
        parser_classes = [JSONParser]
        renderer_classes = [JSONRenderer]
        authentication_classes = []
        permission_classes = [permissions.AllowAny]

    from config.urls import urlpatterns

    return [*urlpatterns, path("plain/jobs", UploadView.as_view())]
