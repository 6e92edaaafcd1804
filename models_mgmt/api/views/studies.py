from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from models_mgmt import selectors
from models_mgmt.api.errors import errors
from models_mgmt.api.serializers import StudyDetailSerializer, StudySerializer, StudyStartSerializer
from models_mgmt.services import studies

from .base import ModelScopedView


class StudyListView(ModelScopedView):
    throttle_scope = "training"

    @extend_schema(
        summary="Start a hyperparameter study: trials are training jobs judged walk-forward",
        request=StudyStartSerializer,
        responses={202: StudyDetailSerializer, **errors(400, 403, 404, 409, 503)},
    )
    def post(self, request: Request, name: str) -> Response:
        model = self.get_ai_model(name)
        data = StudyStartSerializer(data=request.data, context={"model": model})
        data.is_valid(raise_exception=True)
        body = data.validated_data
        study = studies.study_start(
            actor=request.user,
            model=model,
            config=body["resolved"].config,
            dataset=body["resolved"].dataset,
            space=body["space"],
            n_trials=body["nTrials"],
            parallelism=body["parallelism"],
            sampler=body["sampler"],
            pruning=body["pruning"],
            time_budget_s=body["timeBudgetS"],
        )
        return Response(
            StudyDetailSerializer(selectors.study_get(request.user, study.pk)).data, status=status.HTTP_202_ACCEPTED
        )

    @extend_schema(
        summary="The model's studies, newest first", responses={200: StudySerializer(many=True), **errors(404)}
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(StudySerializer(selectors.study_list(request.user, name), many=True).data)


class StudyDetailView(APIView):
    @extend_schema(
        summary="One study: trials with params, fold scores, state and duration; best CV score and holdout score",
        responses={200: StudyDetailSerializer, **errors(404)},
    )
    def get(self, request: Request, study_id: int) -> Response:
        return Response(StudyDetailSerializer(selectors.study_get(request.user, study_id)).data)


class StudyStopView(APIView):
    throttle_scope = "training"

    @extend_schema(
        summary="Stop a study: no new trial; running trials stop; the best so far is trained in full",
        request=None,
        responses={200: StudyDetailSerializer, **errors(403, 404, 409)},
    )
    def post(self, request: Request, study_id: int) -> Response:
        study = studies.study_stop(actor=request.user, study=selectors.study_get(request.user, study_id))
        return Response(StudyDetailSerializer(selectors.study_get(request.user, study.pk)).data)
