"""Routes of the market under /api/v1: rates, history, asks, bids, the network's numbers."""

from django.urls import path

from compute import market_api as api

urlpatterns = [
    path("market/rates", api.RatesView.as_view(), name="api-market-rates"),
    path("market/rates/<slug:slug>", api.RateView.as_view(), name="api-market-rate"),
    path("market/history/<slug:slug>", api.HistoryView.as_view(), name="api-market-history"),
    path("market/asking-prices", api.AskingPricesView.as_view(), name="api-asking-prices"),
    path("market/bids", api.BidsView.as_view(), name="api-bids"),
    path("network/stats", api.NetworkStatsView.as_view(), name="api-network-stats"),
    path("island/recommendations", api.RecommendationsView.as_view(), name="api-recommendations"),
]
