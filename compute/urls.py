"""Pages of the compute app: chat, try, the Exchange, the credit history."""

from django.urls import path

from compute import chat_views, market_views, try_views

urlpatterns: list = [
    path("chat", chat_views.chat, name="chat"),
    path("try", try_views.try_cargo, name="try-cargo"),
    path("exchange", market_views.exchange, name="exchange"),
    path("settings/credits", market_views.credit_history, name="credit-history"),
]
