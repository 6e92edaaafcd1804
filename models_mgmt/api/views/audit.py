from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from models_mgmt import selectors
from models_mgmt.api.errors import errors
from models_mgmt.api.serializers import AuditEventSerializer
from models_mgmt.errors import Forbidden


class AuditEventListView(generics.GenericAPIView):
    serializer_class = AuditEventSerializer

    @extend_schema(
        summary="Audit trail (maintainer role): events of the models the caller may view",
        responses={200: AuditEventSerializer(many=True), **errors(403, 404)},
    )
    def get(self, request: Request) -> Response:
        if not request.user.has_perm("models_mgmt.view_auditevent"):
            raise Forbidden("Reading the audit trail needs the maintainer role.")
        queryset = selectors.audit_event_list(request.user)
        model_name = request.query_params.get("model")
        if model_name:
            queryset = queryset.filter(ai_model_name=model_name)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(AuditEventSerializer(page, many=True).data)
