from django.contrib import admin
from django.urls import include, path

from config.metrics_view import metrics
from portal import views

urlpatterns = [
    path("api/v1/", include("config.api_urls")),
    path("admin/login/", views.admin_login),  # the admin's, with the attempt limits
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),
    path("", include("portal.page_urls")),
    path("", include("pairing.urls")),
    path("", include("compute.urls")),
]

handler500 = "portal.api.middleware.server_error"
