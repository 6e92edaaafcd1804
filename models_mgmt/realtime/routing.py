"""Websocket routes served by the ASGI server (uvicorn) next to HTTP."""

from django.urls import re_path

from models_mgmt.models.ai_model import MODEL_NAME_PATTERN
from models_mgmt.realtime.consumers import JobFeedConsumer, ModelFeedConsumer

websocket_urlpatterns = [
    re_path(rf"^ws/model-management/models/(?P<name>{MODEL_NAME_PATTERN})/progress/?$", ModelFeedConsumer.as_asgi()),
    re_path(r"^ws/model-management/jobs/(?P<job_id>[0-9]{1,18})/?$", JobFeedConsumer.as_asgi()),
]
