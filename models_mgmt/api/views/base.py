from __future__ import annotations

from rest_framework.views import APIView

from models_mgmt.models import AIModel
from models_mgmt.selectors import ai_model_get


class ModelScopedView(APIView):
    """A view under models/<name>/: the model is looked up through the permission filter."""

    def get_ai_model(self, name: str) -> AIModel:
        return ai_model_get(self.request.user, name)
