"""Wire format: the seed's camelCase names. Input serializers validate; output ones only format."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.utils import html

from models_mgmt.choices import ActivationPolicy, Role
from models_mgmt.engine import timeframes
from models_mgmt.engine.families import FAMILIES, MULTITASK_MLP
from models_mgmt.engine.placement import DEVICES, MAX_NPROC_PER_NODE, MAX_WORLD_SIZE
from models_mgmt.engine.search import SAMPLERS, space_check
from models_mgmt.errors import InvalidInput
from models_mgmt.models import (
    AIModel,
    AuditEvent,
    Dataset,
    ModelVersion,
    Study,
    StudyTrial,
    TrainingEpoch,
    TrainingJob,
)
from models_mgmt.models.ai_model import model_name_validator
from models_mgmt.models.base_model import base_model_name_validator, ollama_tag_validator
from models_mgmt.models.dataset import dataset_name_validator
from models_mgmt.monitoring.serving import LOOKBACK_BARS
from models_mgmt.permissions import UserLike, model_perms_of
from models_mgmt.selectors import (
    active_and_live_of,
    active_version_of,
    live_job_of,
    study_cost,
    version_lineage_cost,
)
from models_mgmt.services.studies import MAX_STUDY_PARALLELISM, MAX_STUDY_TRIALS, study_config_refusals
from models_mgmt.services.training_config import (
    BOUNDS,
    EVALUATIONS,
    TYPE_MESSAGES,
    choice_message,
    range_message,
    training_config_resolve,
)

from .cost_serializers import CostTotalSerializer, JobCostField, cost_total_data


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not know, so a typo or a read-only field is never silently dropped."""

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {key: [f"unknown or read-only field; allowed: {', '.join(self.fields)}"] for key in unknown}
                )
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.STR)
class BarTimeField(serializers.Field):
    """A bar's time: `YYYY-MM-DD` (a date: daily bars, or a whole UTC day of intraday bars) or an
    ISO 8601 timestamp (`2024-03-01T14:30:00Z`; without a zone: UTC)."""

    default_error_messages = {"invalid": "use YYYY-MM-DD or an ISO 8601 timestamp such as 2024-03-01T14:30:00Z"}

    def to_internal_value(self, data: Any) -> dt.date | dt.datetime:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            return timeframes.parse_bar_time(data)
        except ValueError:
            self.fail("invalid")

    def to_representation(self, value: Any) -> str:
        return timeframes.format_key(value)


# --- AI models ---------------------------------------------------------------------------------


class AIModelSerializer(serializers.ModelSerializer):
    baseModel = serializers.CharField(source="base_model")
    defaultDataset: serializers.SlugRelatedField = serializers.SlugRelatedField(
        source="default_dataset", slug_field="name", read_only=True, allow_null=True
    )
    owner = serializers.CharField(source="owner.username")
    status = serializers.SerializerMethodField()
    activeVersion = serializers.SerializerMethodField()
    accuracy = serializers.SerializerMethodField()
    responseTime = serializers.SerializerMethodField()
    currentJobId = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        model = AIModel
        fields = [
            "name", "family", "baseModel", "description", "defaultDataset", "owner", "status",
            "activeVersion", "accuracy", "responseTime", "currentJobId", "createdAt", "updatedAt",
        ]  # fmt: skip
        read_only_fields = fields

    def get_status(self, obj: AIModel) -> str:
        """`training` while a job is live, `active` with an active version, else `idle`."""
        if live_job_of(obj) is not None:
            return "training"
        return "active" if active_version_of(obj) is not None else "idle"

    def get_activeVersion(self, obj: AIModel) -> str | None:
        version = active_version_of(obj)
        return version.version if version else None

    def get_accuracy(self, obj: AIModel) -> float | None:
        version = active_version_of(obj)
        return version.accuracy if version else None

    def get_responseTime(self, obj: AIModel) -> float | None:
        version = active_version_of(obj)
        return version.response_time_ms if version else None

    def get_currentJobId(self, obj: AIModel) -> int | None:
        job = live_job_of(obj)
        return job.pk if job else None


class AIModelDetailSerializer(AIModelSerializer):
    permissions = serializers.SerializerMethodField()

    class Meta(AIModelSerializer.Meta):
        fields = [*AIModelSerializer.Meta.fields, "permissions"]
        read_only_fields = fields

    def get_permissions(self, obj: AIModel) -> list[str]:
        """What the caller may do on this model: view, finetune, activate, manage."""
        return [c.removesuffix("_aimodel") for c in model_perms_of(self.context["request"].user, obj)]


# The hot reads build their rows here, without a serializer per row (DRF's per-field machinery was
# most of their CPU); the serializers above and below still describe them in the schema, and
# tests/api/test_read_presenters.py holds the two to the same bytes.
_DATETIME = serializers.DateTimeField()


def _datetime(value: dt.datetime | None) -> str | None:
    return None if value is None else _DATETIME.to_representation(value)


def ai_model_row(row: dict[str, Any], active: dict[str, Any] | None, live_job_id: int | None) -> dict[str, Any]:
    """`AIModelSerializer`'s output from a `selectors.AI_MODEL_COLUMNS` row, the model's active
    version row (`selectors.ACTIVE_VERSION_COLUMNS`) and its live job's id."""
    status = "training" if live_job_id is not None else ("active" if active is not None else "idle")
    return {
        "name": str(row["name"]),
        "family": str(row["family"]),
        "baseModel": str(row["base_model"]),
        "description": str(row["description"]),
        "defaultDataset": row["default_dataset__name"],
        "owner": str(row["owner__username"]),
        "status": status,
        "activeVersion": active["version"] if active else None,
        "accuracy": active["accuracy"] if active else None,
        "responseTime": active["response_time_ms"] if active else None,
        "currentJobId": live_job_id,
        "createdAt": _datetime(row["created_at"]),
        "updatedAt": _datetime(row["updated_at"]),
    }


def ai_model_list_data(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`AIModelSerializer(many=True)`'s output for a page of `selectors.ai_model_rows`."""
    active, live = active_and_live_of([row["id"] for row in rows])
    return [ai_model_row(row, active.get(row["id"]), live.get(row["id"])) for row in rows]


def ai_model_detail_data(model: AIModel, user: UserLike) -> dict[str, Any]:
    """`AIModelDetailSerializer`'s output for a model from `selectors.ai_model_get`: its active
    version and live job come as rows (`selectors.active_and_live_of`, 2 queries, no instances)."""
    active, live = active_and_live_of([model.pk])
    row = {
        "name": model.name,
        "family": model.family,
        "base_model": model.base_model,
        "description": model.description,
        "default_dataset__name": model.default_dataset.name if model.default_dataset is not None else None,
        "owner__username": model.owner.username,
        "created_at": model.created_at,
        "updated_at": model.updated_at,
    }
    return {
        **ai_model_row(row, active.get(model.pk), live.get(model.pk)),
        "permissions": [c.removesuffix("_aimodel") for c in model_perms_of(user, model)],
    }


def _dataset_or_error(name: str) -> Dataset:
    dataset = Dataset.objects.filter(name=name).first()
    if dataset is None:
        raise serializers.ValidationError(f"unknown dataset '{name}'")
    return dataset


class AIModelCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, validators=[model_name_validator])
    family = serializers.ChoiceField(choices=sorted(FAMILIES), default="multitask-mlp")
    baseModel = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")
    defaultDataset = serializers.CharField(max_length=64, required=False, allow_null=True, default=None)

    def validate_defaultDataset(self, value: str | None) -> Dataset | None:
        return _dataset_or_error(value) if value else None


class AIModelUpdateSerializer(StrictSerializer):
    baseModel = serializers.CharField(max_length=200, required=False, allow_blank=True)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    defaultDataset = serializers.CharField(max_length=64, required=False, allow_null=True)

    def validate_defaultDataset(self, value: str | None) -> Dataset | None:
        return _dataset_or_error(value) if value else None

    def changes(self) -> dict[str, Any]:
        names = {"baseModel": "base_model", "description": "description", "defaultDataset": "default_dataset"}
        return {names[k]: v for k, v in self.validated_data.items()}


class AccessSerializer(StrictSerializer):
    user = serializers.CharField(required=False, max_length=150)
    group = serializers.CharField(required=False, max_length=150)
    role = serializers.ChoiceField(choices=Role.values, allow_null=True, help_text="null revokes all access")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if bool(attrs.get("user")) == bool(attrs.get("group")):
            raise serializers.ValidationError({"user": ["give exactly one of user or group"]})
        return attrs


class AccessResultSerializer(serializers.Serializer):
    user = serializers.CharField(required=False)
    group = serializers.CharField(required=False)
    role = serializers.CharField(allow_null=True)
    permissions = serializers.ListField(child=serializers.CharField())


# --- Versions ------------------------------------------------------------------------------------


class PerformanceMetricsSerializer(serializers.Serializer):
    patternRecognition = serializers.FloatField(allow_null=True)
    signalAccuracy = serializers.FloatField(allow_null=True)
    riskAssessment = serializers.FloatField(allow_null=True)
    overallScore = serializers.FloatField(allow_null=True)


PERFORMANCE_KEYS = ("patternRecognition", "signalAccuracy", "riskAssessment", "overallScore")
METADATA_KEYS = ("hyperparameters", "trainingDuration", "epochs", "loss", "validationAccuracy")


class ModelVersionSerializer(serializers.ModelSerializer):
    modelName = serializers.CharField(source="model.name")
    responseTime = serializers.FloatField(
        source="response_time_ms", allow_null=True, help_text="median single-sample inference latency, ms"
    )
    trainingDataSize = serializers.IntegerField(source="training_data_size")
    trainingDate = serializers.DateTimeField(source="trained_at", allow_null=True)
    performanceMetrics = serializers.SerializerMethodField()
    metadata = serializers.SerializerMethodField()
    parentVersion = serializers.CharField(source="parent.version", allow_null=True, default=None)
    dataset = serializers.CharField(source="dataset.name", allow_null=True, default=None)
    activatedAt = serializers.DateTimeField(source="activated_at", allow_null=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id", "modelName", "version", "accuracy", "responseTime", "trainingDataSize", "trainingDate",
            "status", "performanceMetrics", "baselines", "backtest", "metadata", "parentVersion", "dataset",
            "checksum", "activatedAt",
        ]  # fmt: skip
        read_only_fields = fields

    def get_performanceMetrics(self, obj: ModelVersion) -> dict[str, float | None]:
        return performance_metrics_of(obj.performance_metrics)

    def get_metadata(self, obj: ModelVersion) -> dict[str, Any]:
        return metadata_of(obj.metadata)


def performance_metrics_of(metrics: dict[str, Any]) -> dict[str, float | None]:
    return {k: metrics.get(k) for k in PERFORMANCE_KEYS}


def metadata_of(metadata: dict[str, Any]) -> dict[str, Any]:
    return {**{k: metadata.get(k) for k in METADATA_KEYS}, **metadata}


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def version_list_data(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`ModelVersionSerializer(many=True)`'s output from `selectors.model_version_rows` rows."""
    return [
        {
            "id": int(row["id"]),
            "modelName": str(row["model__name"]),
            "version": str(row["version"]),
            "accuracy": _float(row["accuracy"]),
            "responseTime": _float(row["response_time_ms"]),
            "trainingDataSize": int(row["training_data_size"]),
            "trainingDate": _datetime(row["trained_at"]),
            "status": str(row["status"]),
            "performanceMetrics": performance_metrics_of(row["performance_metrics"]),
            "baselines": row["baselines"],
            "backtest": row["backtest"],
            "metadata": metadata_of(row["metadata"]),
            "parentVersion": None if row["parent__version"] is None else str(row["parent__version"]),
            "dataset": None if row["dataset__name"] is None else str(row["dataset__name"]),
            "checksum": str(row["checksum"]),
            "activatedAt": _datetime(row["activated_at"]),
        }
        for row in rows
    ]


class ModelVersionDetailSerializer(ModelVersionSerializer):
    cost = serializers.SerializerMethodField(help_text="what training it and its ancestors cost (their jobs)")

    class Meta(ModelVersionSerializer.Meta):
        fields = [*ModelVersionSerializer.Meta.fields, "cost"]
        read_only_fields = fields

    @extend_schema_field(CostTotalSerializer)
    def get_cost(self, obj: ModelVersion) -> dict[str, Any]:
        return cost_total_data(version_lineage_cost(obj))


class ActivateResultSerializer(serializers.Serializer):
    modelName = serializers.CharField()
    activeVersion = ModelVersionSerializer()


# --- Fine-tuning -------------------------------------------------------------------------------


class ConfigIntegerField(serializers.IntegerField):
    """Refuses JSON true/false, which DRF would otherwise read as 1/0."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class ConfigFloatField(serializers.FloatField):
    """Refuses JSON true/false: DRF reads true as 1.0, so `validationSplit: true` got a range message."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


def config_number(name: str, **kwargs: Any) -> serializers.Field:
    """A FineTuningConfig number with the service's bounds and its wording for each kind of mistake."""
    kind, low, high, open_low = BOUNDS[name]
    messages: dict[str, Any] = {
        "invalid": TYPE_MESSAGES[kind],
        "min_value": range_message(name),
        "max_value": range_message(name),
    }
    limits: dict[str, Any] = {} if open_low else {"min_value": low}  # an open bound: the service checks it
    if high is not None:
        limits["max_value"] = high
    field_class = ConfigIntegerField if kind is int else ConfigFloatField
    return field_class(required=False, error_messages=messages, **limits, **kwargs)


class DistributedSettingsSerializer(serializers.Serializer):
    """The shape of `distributed` for the schema; training_config_resolve checks it (one set of messages)."""

    nprocPerNode = serializers.IntegerField(
        min_value=1, max_value=MAX_NPROC_PER_NODE, help_text="ranks (processes) on each host"
    )
    nnodes = serializers.IntegerField(min_value=1, required=False, default=1, help_text="hosts; default 1")
    rdzvEndpoint = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="host:port of the rendezvous the claiming worker hosts; required when nnodes > 1",
    )


@extend_schema_field(DistributedSettingsSerializer(allow_null=True))
class DistributedField(serializers.JSONField):
    """Passed to training_config_resolve as it came, so the API and the CLI refuse it in the same words."""


class FineTuningConfigSerializer(StrictSerializer):
    """A partial FineTuningConfig: fields left out take the configured defaults."""

    modelName = serializers.CharField(required=False, help_text="if given, must match the URL")
    baseModel = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="multitask-mlp: version to start from (default: the active version); "
        "llm-lora: registered base model (default: the model's baseModel)",
    )
    dataset = serializers.CharField(required=False, help_text="dataset name; default: the model's default")
    trainingDataSize = config_number("trainingDataSize", help_text="most recent N bars of the window; default: all")
    startDate = BarTimeField(
        required=False, help_text="first bar of the window (a date, or a timestamp for intraday); default: the first"
    )
    endDate = BarTimeField(
        required=False, help_text="last bar of the window (a date: through its end, UTC); default: the last"
    )
    epochs = config_number("epochs")
    learningRate = config_number("learningRate")
    batchSize = config_number("batchSize")
    validationSplit = config_number("validationSplit")
    earlyStoppingPatience = config_number("earlyStoppingPatience")
    activationPolicy = serializers.ChoiceField(choices=ActivationPolicy.values, required=False)
    hyperparameters = serializers.DictField(required=False)
    evaluation = serializers.ChoiceField(
        choices=EVALUATIONS,
        required=False,
        help_text="validation (default): scored on the last validationSplit window; walk_forward: also on "
        "walkForwardFolds purged chronological folds before it, reported on the version",
    )
    walkForwardFolds = config_number("walkForwardFolds", help_text="folds of a walk_forward evaluation; default 4")
    device = serializers.ChoiceField(
        choices=DEVICES,
        required=False,
        error_messages={"invalid_choice": choice_message(DEVICES), "null": choice_message(DEVICES)},
        help_text="auto: CUDA when the claiming worker has a GPU, else the CPU; cpu; cuda (a worker without a "
        "GPU fails the job with errorCode device_unavailable); default: the server's DEFAULT_TRAINING_DEVICE "
        "(auto unless set). llm-lora: auto only. Not for a study's config (its trials train on the CPU)",
    )
    distributed = DistributedField(
        required=False,
        allow_null=True,
        help_text="null (default): train in the worker's process; else the torchrun group the worker launches: "
        f"nprocPerNode x nnodes ranks (at most {MAX_WORLD_SIZE}, dividing batchSize). multitask-mlp only",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            attrs["resolved"] = training_config_resolve(model=self.context["model"], fields=attrs)
        except InvalidInput as exc:
            raise serializers.ValidationError(exc.fields) from exc
        return attrs


class TrainingEpochSerializer(serializers.ModelSerializer):
    trainLoss = serializers.FloatField(source="train_loss")
    valLoss = serializers.FloatField(source="val_loss", allow_null=True)
    durationS = serializers.FloatField(source="duration_s")

    class Meta:
        model = TrainingEpoch
        fields = ["epoch", "trainLoss", "valLoss", "metrics", "durationS"]
        read_only_fields = fields


class TrainingJobSerializer(serializers.ModelSerializer):
    modelName = serializers.CharField(source="model.name")
    dataset = serializers.CharField(source="dataset.name")
    baseVersion = serializers.CharField(source="base_version.version", allow_null=True, default=None)
    version = serializers.CharField(source="version.version", allow_null=True, default=None)
    totalEpochs = serializers.IntegerField(source="total_epochs")
    errorCode = serializers.CharField(source="error_code")
    createdBy = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    createdAt = serializers.DateTimeField(source="created_at")
    startTime = serializers.DateTimeField(source="started_at", allow_null=True)
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)
    heartbeatAt = serializers.DateTimeField(source="heartbeat_at", allow_null=True)
    study = serializers.IntegerField(source="study_id", allow_null=True, help_text="the study of a trial or final run")
    studyRole = serializers.CharField(source="study_role", help_text='"" (a fine-tune), "trial" or "final"')
    cost = JobCostField(help_text="null: the job never ran")
    device = serializers.CharField(
        help_text='where the claiming worker trains it: "cpu", "cuda:0", "cpu x2 gloo", "cuda x8 nccl (2 nodes)"; '
        '"" until a worker has claimed it'
    )

    class Meta:
        model = TrainingJob
        fields = [
            "id", "modelName", "status", "progress", "epoch", "totalEpochs", "step", "config", "dataset",
            "baseVersion", "version", "error", "errorCode", "attempts", "createdBy", "createdAt", "startTime",
            "finishedAt", "heartbeatAt", "study", "studyRole", "cost", "device",
        ]  # fmt: skip
        read_only_fields = fields


class TrainingJobDetailSerializer(TrainingJobSerializer):
    epochs = TrainingEpochSerializer(many=True, read_only=True, help_text="per-epoch history")

    class Meta(TrainingJobSerializer.Meta):
        fields = [*TrainingJobSerializer.Meta.fields, "epochs"]
        read_only_fields = fields


# --- Datasets ----------------------------------------------------------------------------------


class DatasetSerializer(serializers.ModelSerializer):
    barCount = serializers.IntegerField(source="bar_count")
    firstDate = serializers.DateField(source="first_date", allow_null=True, help_text="UTC date of the first bar")
    lastDate = serializers.DateField(source="last_date", allow_null=True, help_text="UTC date of the last bar")
    firstTimestamp = BarTimeField(source="first_bar_at", allow_null=True, help_text="first bar, ISO 8601 UTC")
    lastTimestamp = BarTimeField(source="last_bar_at", allow_null=True, help_text="last bar, ISO 8601 UTC")
    barsPerYear = serializers.SerializerMethodField(help_text="bars a year that annualise its backtests")
    columns = serializers.JSONField(
        help_text="what an uploaded file's columns were read as: used (field -> column), ignored, notes"
    )
    createdBy = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Dataset
        fields = [
            "name", "symbol", "timeframe", "source", "description", "licence", "barCount", "firstDate",
            "lastDate", "firstTimestamp", "lastTimestamp", "barsPerYear", "columns", "createdBy", "createdAt",
        ]  # fmt: skip
        read_only_fields = fields

    def get_barsPerYear(self, obj: Dataset) -> int:
        return timeframes.timeframe(obj.timeframe).bars_per_year


class DatasetUploadSerializer(StrictSerializer):
    name = serializers.CharField(max_length=64, validators=[dataset_name_validator])
    symbol = serializers.RegexField(r"^[A-Za-z0-9^._:=-]{1,32}$", help_text="ticker, e.g. AAPL or ^GSPC")
    timeframe = serializers.ChoiceField(choices=list(timeframes.TIMEFRAMES), default="1d")
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")
    file = serializers.FileField(
        help_text="CSV with a date/time column (Date, Datetime, Timestamp, Time or unnamed first) and Open, High, "
        "Low, Close, Volume (any case; others such as Adj Close are ignored)"
    )


class BarSerializer(serializers.Serializer):
    """One stored bar: `date` (YYYY-MM-DD) for daily and weekly datasets, `timestamp` (ISO 8601
    UTC) for intraday ones; pass the dataset's timeframe in the context."""

    date = serializers.DateField(required=False, help_text="daily and weekly bars")
    timestamp = serializers.CharField(required=False, help_text="intraday bars: ISO 8601, UTC")
    open = serializers.FloatField()
    high = serializers.FloatField()
    low = serializers.FloatField()
    close = serializers.FloatField()
    volume = serializers.FloatField()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        tf = timeframes.timeframe(self.context.get("timeframe"))
        key = "timestamp" if tf.intraday else "date"
        return {
            key: timeframes.format_time(tf, instance.timestamp),
            **{k: getattr(instance, k) for k in ("open", "high", "low", "close", "volume")},
        }


class DatasetDetailSerializer(DatasetSerializer):
    recentBars = serializers.SerializerMethodField()

    class Meta(DatasetSerializer.Meta):
        fields = [*DatasetSerializer.Meta.fields, "recentBars"]
        read_only_fields = fields

    def get_recentBars(self, obj: Dataset) -> list[dict[str, Any]]:
        """The last 10 bars, newest last."""
        bars = list(obj.bars.order_by("-timestamp")[:10])[::-1]
        return list(BarSerializer(bars, many=True, context={"timeframe": obj.timeframe}).data)


# --- Audit -------------------------------------------------------------------------------------


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", allow_null=True, default=None)
    objectType = serializers.CharField(source="object_type")
    objectId = serializers.CharField(source="object_id")
    objectRepr = serializers.CharField(source="object_repr")
    modelName = serializers.CharField(source="ai_model_name")
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "actor",
            "action",
            "objectType",
            "objectId",
            "objectRepr",
            "modelName",
            "before",
            "after",
            "createdAt",
        ]
        read_only_fields = fields


# --- Monitoring --------------------------------------------------------------------------------


class BarInputSerializer(StrictSerializer):
    """One OHLCV bar as a client sends it: the same rules as a CSV upload. Keyed by `date`
    (YYYY-MM-DD: daily and weekly bars) or `timestamp` (ISO 8601; without a zone: UTC)."""

    date = serializers.DateField(required=False)
    timestamp = serializers.DateTimeField(required=False, help_text="intraday bars")
    open = serializers.FloatField()
    high = serializers.FloatField()
    low = serializers.FloatField()
    close = serializers.FloatField()
    volume = serializers.FloatField(min_value=0)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        if ("date" in attrs) == ("timestamp" in attrs):
            errors["date"] = ["give `date` (YYYY-MM-DD, daily bars) or `timestamp` (ISO 8601, intraday bars): one"]
        for key in ("open", "high", "low", "close", "volume"):
            if not math.isfinite(attrs[key]):
                errors[key] = ["must be a finite number"]
            elif key != "volume" and attrs[key] <= 0:
                errors[key] = ["price must be positive"]
        if not errors:
            if attrs["high"] < attrs["low"]:
                errors["high"] = ["High is below Low"]
            elif attrs["high"] < max(attrs["open"], attrs["close"]):
                errors["high"] = ["High is below Open or Close"]
            elif attrs["low"] > min(attrs["open"], attrs["close"]):
                errors["low"] = ["Low is above Open or Close"]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


PRICES = ("open", "high", "low", "close")
BAR_KEYS = frozenset(("date", "timestamp", *PRICES, "volume"))


@extend_schema_field(BarInputSerializer(many=True))
class BarListField(serializers.Field):
    """A list of bars under `BarInputSerializer`'s rules, without running a serializer per bar.

    Predict receives hundreds of bars a request. A bar that is plainly valid (a JSON object with the
    known keys, numbers for prices and volume, a `date` string) is checked here in plain Python;
    if any bar is not, the whole list goes through `BarInputSerializer(many=True)` exactly as
    before, so every error (field names, messages, shape) is DRF's own. Both give the same values
    for a valid list (tests/api/test_bar_list_field.py).
    """

    def get_value(self, dictionary: Any) -> Any:
        if html.is_html_input(dictionary):  # a form: as ListSerializer reads it
            return html.parse_html_list(dictionary, prefix=self.field_name or "", default=empty)
        return dictionary.get(self.field_name, empty)

    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        bars = _plainly_valid_bars(data)
        if bars is None:
            bars = BarInputSerializer(many=True).run_validation(data)
        return bars


def _plainly_valid_bars(data: Any) -> list[dict[str, Any]] | None:
    """The validated bars when every one is plainly valid, else None (let DRF say what is wrong)."""
    if type(data) is not list:
        return None
    out = []
    for raw in data:
        if type(raw) is not dict or not raw.keys() <= BAR_KEYS:
            return None
        bar = _plain_bar(raw)
        if bar is None:
            return None
        out.append(bar)
    return out


def _plain_bar(raw: dict[str, Any]) -> dict[str, Any] | None:
    """BarInputSerializer's value for one bar, or None unless the bar is plainly valid."""
    bar: dict[str, Any] = {}
    if "date" in raw:
        text = raw["date"]
        if "timestamp" in raw or type(text) is not str:
            return None
        try:
            bar["date"] = dt.date.fromisoformat(text)  # what DRF's DateField tries first
        except ValueError:
            return None
    elif "timestamp" in raw:
        try:  # intraday: DRF's own field (time zones), one call, no serializer run
            bar["timestamp"] = _TIMESTAMP.run_validation(raw["timestamp"])
        except serializers.ValidationError:
            return None
    else:
        return None
    for key in (*PRICES, "volume"):
        value = raw.get(key)
        if type(value) is not float and type(value) is not int:
            return None
        try:
            value = float(value)
        except OverflowError:  # an integer too large for a float
            return None
        if not ((math.isfinite(value) and value > 0) or (key == "volume" and value == 0)):
            return None
        bar[key] = value
    if bar["high"] < bar["low"] or bar["high"] < max(bar["open"], bar["close"]):
        return None
    if bar["low"] > min(bar["open"], bar["close"]):
        return None
    return bar


_TIMESTAMP = serializers.DateTimeField()


def _check_bar_dates(bars: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kinds = {"timestamp" if "timestamp" in b else "date" for b in bars}
    if len(kinds) > 1:
        raise serializers.ValidationError("give every bar a `date` or every bar a `timestamp`, not a mix")
    kind = kinds.pop() if kinds else "date"
    dates = [b[kind] for b in bars]
    if len(set(dates)) != len(dates):
        counts = Counter(dates)
        twice = sorted(timeframes.format_key(d) for d, n in counts.items() if n > 1)
        raise serializers.ValidationError(f"duplicate {kind}(s): {', '.join(twice[:20])}")
    if dates != sorted(dates):
        raise serializers.ValidationError(f"bars must be in ascending {kind} order")
    return bars


class PredictSerializer(StrictSerializer):
    """Either `bars` (a window of recent bars, oldest first) or `dataset` + `asOf`."""

    bars = BarListField(required=False, help_text="at least the model's lookback of bars")
    dataset = serializers.CharField(
        required=False, max_length=64, help_text="with asOf: predict from its bars; with bars: whose bars resolve it"
    )
    asOf = BarTimeField(
        required=False, help_text="last bar to predict from (with dataset): a date, or a timestamp for intraday"
    )
    shadow = serializers.BooleanField(
        required=False,
        default=False,
        help_text="also answer with the shadow challenger's outputs (as ?shadow=1 does); off: the answer is as before",
    )

    def validate_bars(self, bars: list[dict[str, Any]]) -> list[dict[str, Any]]:
        limit = settings.MONITORING_PREDICT_MAX_BARS
        if len(bars) < LOOKBACK_BARS:
            raise serializers.ValidationError(
                f"{len(bars)} bars given; the model's features need at least {LOOKBACK_BARS} consecutive bars "
                f"(60-bar volatility plus warm-up), oldest first"
            )
        if len(bars) > limit:
            raise serializers.ValidationError(f"at most {limit} bars per request")
        return _check_bar_dates(bars)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "bars" in attrs and "asOf" in attrs:
            raise serializers.ValidationError({"asOf": ["give either bars or dataset + asOf, not both"]})
        if "bars" not in attrs and not ("dataset" in attrs and "asOf" in attrs):
            raise serializers.ValidationError(
                {"bars": ["give a window of bars, or dataset and asOf"]}
                if "dataset" not in attrs
                else {"asOf": ["required with dataset (YYYY-MM-DD)"]}
            )
        return attrs


class BarsAppendSerializer(StrictSerializer):
    bars = BarInputSerializer(many=True, help_text="new bars, oldest first; a date already stored must match")

    def validate_bars(self, bars: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not bars:
            raise serializers.ValidationError("give at least one bar")
        if len(bars) > 10000:
            raise serializers.ValidationError("at most 10000 bars per request")
        return _check_bar_dates(bars)


class AlertSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    modelName = serializers.CharField(source="model.name")
    version = serializers.CharField(source="version.version", allow_null=True, default=None)
    kind = serializers.CharField()
    status = serializers.CharField()
    message = serializers.CharField()
    reasons = serializers.ListField(child=serializers.CharField())
    recommendation = serializers.CharField()
    openedAt = serializers.DateTimeField(source="opened_at")
    resolvedAt = serializers.DateTimeField(source="resolved_at", allow_null=True)
    acknowledgedAt = serializers.DateTimeField(source="acknowledged_at", allow_null=True)
    acknowledgedBy = serializers.CharField(source="acknowledged_by.username", allow_null=True, default=None)
    webhookStatus = serializers.CharField(source="webhook_status")


# --- Base models (llm-lora) --------------------------------------------------------------------


class BaseModelSerializer(serializers.Serializer):
    name = serializers.CharField()
    path = serializers.CharField(help_text="directory on the server")
    ollamaTag = serializers.CharField(source="ollama_tag", help_text="the Ollama model these weights are")
    architecture = serializers.CharField()
    modelType = serializers.CharField(source="model_type")
    parameters = serializers.IntegerField(allow_null=True)
    files = serializers.DictField(child=serializers.CharField(), help_text="file -> sha256, recorded at registration")
    description = serializers.CharField()
    registeredBy = serializers.CharField(source="registered_by.username", allow_null=True, default=None)
    createdAt = serializers.DateTimeField(source="created_at")


class BaseModelRegisterSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, validators=[base_model_name_validator])
    path = serializers.CharField(max_length=500, help_text="absolute directory on the server (Hugging Face format)")
    ollamaTag = serializers.CharField(max_length=200, validators=[ollama_tag_validator])
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")


# --- Studies (hyperparameter search) -------------------------------------------------------------


class StudyStartSerializer(StrictSerializer):
    """A search space, how many trials and how, and the (partial) FineTuningConfig trials start from."""

    space = serializers.DictField(
        help_text='tunable field -> {"choices": [...]} or {"low": a, "high": b, "log": bool, "step": int}'
    )
    nTrials = ConfigIntegerField(min_value=1, max_value=MAX_STUDY_TRIALS, required=False, default=20)
    parallelism = ConfigIntegerField(min_value=1, max_value=MAX_STUDY_PARALLELISM, required=False, default=1)
    sampler = serializers.ChoiceField(choices=SAMPLERS, required=False, default="tpe")
    pruning = serializers.BooleanField(required=False, default=True)
    timeBudgetS = ConfigIntegerField(
        min_value=1,
        max_value=30 * 24 * 3600,
        required=False,
        allow_null=True,
        default=None,
        help_text="seconds; no trial starts after it, the best so far is trained",
    )
    config = serializers.DictField(required=False, default=dict, help_text="a partial FineTuningConfig")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        model = self.context["model"]
        errors: dict[str, Any] = {}
        if model.family != MULTITASK_MLP.name:
            errors["space"] = [f"studies are offered for the {MULTITASK_MLP.name} family only"]
        else:
            space_errors = space_check(attrs["space"], model.family)
            if space_errors:
                errors["space"] = space_errors
        config = FineTuningConfigSerializer(data=attrs.get("config") or {}, context={"model": model})
        refused = study_config_refusals(attrs.get("config") or {})
        if not config.is_valid() or refused:
            errors["config"] = {**config.errors, **refused}
        if errors:
            raise serializers.ValidationError(errors)
        attrs["resolved"] = config.validated_data["resolved"]
        return attrs


class StudyTrialSerializer(serializers.ModelSerializer):
    jobId = serializers.IntegerField(source="job_id")
    jobStatus = serializers.CharField(source="job.status")
    foldScores = serializers.JSONField(source="fold_scores")
    startedAt = serializers.DateTimeField(source="started_at", allow_null=True)
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)
    durationS = serializers.SerializerMethodField()
    cost = JobCostField(source="job", help_text="the trial job's cost; null: it never ran")

    class Meta:
        model = StudyTrial
        fields = [
            "number", "state", "params", "foldScores", "value", "jobId", "jobStatus", "startedAt", "finishedAt",
            "durationS", "cost",
        ]  # fmt: skip
        read_only_fields = fields

    def get_durationS(self, trial: StudyTrial) -> float | None:
        if trial.started_at is None or trial.finished_at is None:
            return None
        return round((trial.finished_at - trial.started_at).total_seconds(), 3)


class StudySerializer(serializers.ModelSerializer):
    modelName = serializers.CharField(source="model.name")
    dataset = serializers.CharField(source="dataset.name")
    nTrials = serializers.IntegerField(source="n_trials")
    timeBudgetS = serializers.IntegerField(source="time_budget_s", allow_null=True)
    finalJob = serializers.IntegerField(source="final_job_id", allow_null=True)
    createdBy = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    createdAt = serializers.DateTimeField(source="created_at")
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)

    class Meta:
        model = Study
        fields = [
            "id", "modelName", "dataset", "status", "space", "config", "nTrials", "parallelism", "sampler",
            "pruning", "timeBudgetS", "best", "holdout", "importance", "finalJob", "error", "createdBy", "createdAt",
            "finishedAt",
        ]  # fmt: skip
        read_only_fields = fields


class StudyDetailSerializer(StudySerializer):
    trials = StudyTrialSerializer(many=True, read_only=True)
    cost = serializers.SerializerMethodField(help_text="what its trials cost, failed and pruned ones included")

    class Meta(StudySerializer.Meta):
        fields = [*StudySerializer.Meta.fields, "trials", "cost"]
        read_only_fields = fields

    @extend_schema_field(CostTotalSerializer)
    def get_cost(self, obj: Study) -> dict[str, Any]:
        return cost_total_data(study_cost(obj))
