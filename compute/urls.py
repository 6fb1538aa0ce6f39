"""Pages of the compute app."""

from django.urls import path

from compute import chat_views, try_views

urlpatterns: list = [
    path("chat", chat_views.chat, name="chat"),
    path("try", try_views.try_cargo, name="try-cargo"),
]
