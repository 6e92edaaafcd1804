from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt import selectors
from models_mgmt.api.cost_serializers import ModelCostSerializer
from models_mgmt.api.errors import errors

from .base import ModelScopedView
from .params import PERIOD_PARAMS, period_params


class ModelCostView(ModelScopedView):
    @extend_schema(
        summary="What the model's training jobs that started in [from, to) cost (trials included)",
        parameters=PERIOD_PARAMS,
        responses={200: ModelCostSerializer, **errors(400, 404)},
    )
    def get(self, request: Request, name: str) -> Response:
        start, end = period_params(request)
        total = selectors.ai_model_cost(request.user, name, start, end)
        period = {"modelName": name, "from": start, "to": end, **vars(total)}
        return Response(ModelCostSerializer(period).data)
