from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("api/v1/", include("config.api_urls")),
    path("admin/", admin.site.urls),
    path("", include("portal.page_urls")),
    path("", include("pairing.urls")),
    path("", include("compute.urls")),
    path("", include("billing.urls")),
]

handler500 = "portal.api.middleware.server_error"
