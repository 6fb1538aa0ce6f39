from django.urls import path

from pairing import consumers

websocket_urlpatterns: list = [
    path("ws/islands/", consumers.UserEventsConsumer.as_asgi()),
    path("ws/pair/mobile/<uuid:session_id>/", consumers.MobilePairingConsumer.as_asgi()),
]
