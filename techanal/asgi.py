"""ASGI entry point: HTTP and websockets, served by uvicorn (bin/serve) or daphne (`bench/` compares them)."""

import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "techanal.settings")

# Django must be set up before anything imports models (consumers do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from models_mgmt.realtime.auth import BearerOrSessionAuth  # noqa: E402
from models_mgmt.realtime.routing import websocket_urlpatterns  # noqa: E402
from techanal.http_server import leave_request_bodies_to_django  # noqa: E402

if "daphne.server" in sys.modules:  # daphne serves (`daphne techanal.asgi:application`)
    leave_request_bodies_to_django()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": BearerOrSessionAuth(URLRouter(websocket_urlpatterns)),
    }
)
