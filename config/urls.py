from django.contrib import admin
from django.urls import include, path

from config.metrics_view import metrics

urlpatterns = [
    path("api/v1/", include("config.api_urls")),
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),
    path("", include("portal.page_urls")),
    path("", include("pairing.urls")),
    path("", include("compute.urls")),
    path("", include("billing.urls")),
]
