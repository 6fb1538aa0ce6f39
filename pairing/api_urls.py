from django.urls import path

from pairing import api

urlpatterns = [
    path("pairing/mobile/claim", api.MobileClaimView.as_view(), name="api-pairing-mobile-claim"),
]
