"""Every route of the public API, /api/v1/…; each app contributes its own api_urls."""

from django.urls import include, path, re_path

from billing import api as billing_api
from portal.api import keys, views

urlpatterns = [
    path("health", views.HealthView.as_view(), name="api-health"),
    path("account", billing_api.AccountView.as_view(), name="api-account"),
    path("account/audit", views.AuditLogView.as_view(), name="api-account-audit"),
    path("api-keys", keys.ApiKeyListView.as_view(), name="api-keys"),
    path("api-keys/changes", keys.ApiKeyChangesView.as_view(), name="api-key-changes"),
    path("api-keys/<uuid:key_id>", keys.ApiKeyDetailView.as_view(), name="api-key"),
    path("api-keys/<uuid:key_id>/usage", keys.ApiKeyUsageView.as_view(), name="api-key-usage"),
    path(
        "api-keys/<uuid:key_id>/changes",
        keys.ApiKeyChangesOfKeyView.as_view(),
        name="api-key-key-changes",
    ),
    path("schema", views.SchemaView.as_view(), name="api-schema"),
    path("docs", views.DocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("compute.api_urls")),
    path("", include("pairing.api_urls")),
    path("", include("compute.market_api_urls")),
    path("", include("billing.api_urls")),
    re_path(r"^.*$", views.NotFoundView.as_view()),
]
