"""Websocket routes. The live progress feed is added by the progress issue."""

websocket_urlpatterns: list = []
