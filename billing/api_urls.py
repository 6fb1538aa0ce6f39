from django.urls import path

from billing import api

urlpatterns = [
    path("account/ledger", api.LedgerView.as_view(), name="api-ledger"),
]
