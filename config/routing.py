"""Websocket routes of every app."""

from pairing.routing import websocket_urlpatterns as pairing_ws

websocket_urlpatterns = [*pairing_ws]
