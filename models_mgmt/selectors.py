"""Reads. Every read takes the user and returns only rows the user may see.

A model the user may not view does not exist for them: `ai_model_get` raises NotFound, so an
endpoint cannot forget the object check.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import OuterRef, Prefetch, Q, QuerySet, Subquery, prefetch_related_objects
from django.utils import timezone
from guardian.shortcuts import get_objects_for_user

from models_mgmt.choices import LIVE_JOB_STATUSES, PERM_VIEW, ExperimentState, GuardrailAction, VersionStatus
from models_mgmt.engine import timeframes
from models_mgmt.errors import NotFound
from models_mgmt.models import (
    AIModel,
    Alert,
    AuditEvent,
    Bar,
    BaseModel,
    Dataset,
    Experiment,
    GuardrailEvaluation,
    GuardrailPolicy,
    JobCost,
    ModelVersion,
    Study,
    TrainingJob,
)
from models_mgmt.permissions import UserLike, can_view_model, has_global_perm

if TYPE_CHECKING:
    import pandas as pd

BAR_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


def ai_models_visible(user: UserLike, codename: str = PERM_VIEW) -> QuerySet[AIModel]:
    if not (getattr(user, "is_authenticated", False) and getattr(user, "is_active", False)):
        return AIModel.objects.none()
    return get_objects_for_user(user, f"models_mgmt.{codename}", klass=AIModel, accept_global_perms=True)


_ACTIVE_AND_LIVE = (
    Prefetch("versions", queryset=ModelVersion.objects.filter(status=VersionStatus.ACTIVE), to_attr="active_versions"),
    Prefetch("jobs", queryset=TrainingJob.objects.filter(status__in=LIVE_JOB_STATUSES), to_attr="live_jobs"),
)


def ai_model_list(user: UserLike) -> QuerySet[AIModel]:
    """Visible models with their active version and live job prefetched (constant query count)."""
    return (
        ai_models_visible(user)
        .select_related("owner", "default_dataset")
        .prefetch_related(*_ACTIVE_AND_LIVE)
        .order_by("name")
    )


AI_MODEL_COLUMNS = (
    "id", "name", "family", "base_model", "description", "default_dataset__name", "owner__username",
    "created_at", "updated_at",
)  # fmt: skip
ACTIVE_VERSION_COLUMNS = ("model_id", "version", "accuracy", "response_time_ms")


def ai_model_rows(user: UserLike) -> QuerySet[AIModel, dict[str, Any]]:
    """`ai_model_list` as plain rows (`AI_MODEL_COLUMNS`, the related names joined): the list's
    page without model instances; `active_and_live_of` brings the page's active versions and jobs."""
    return ai_models_visible(user).order_by("name").values(*AI_MODEL_COLUMNS)


def active_and_live_of(model_ids: list[int]) -> tuple[dict[int, dict[str, Any]], dict[int, int]]:
    """For these models: model id -> its active version's row (`ACTIVE_VERSION_COLUMNS`), and
    model id -> its live job's id; the same first row as `active_version_of` / `live_job_of` pick
    from the prefetch (2 queries whatever the number of models)."""
    if not model_ids:
        return {}, {}
    active: dict[int, dict[str, Any]] = {}
    versions = ModelVersion.objects.filter(model_id__in=model_ids, status=VersionStatus.ACTIVE)
    # Within a model, the prefetch's order (its default ordering's first key, the model, only groups).
    for row in versions.order_by("-created_at", "-id").values(*ACTIVE_VERSION_COLUMNS):
        active.setdefault(row["model_id"], row)
    live: dict[int, int] = {}
    jobs = TrainingJob.objects.filter(model_id__in=model_ids, status__in=LIVE_JOB_STATUSES)
    for model_id, job_id in jobs.order_by("-created_at", "-id").values_list("model_id", "id"):
        live.setdefault(model_id, job_id)
    return active, live


def ai_model_get(user: UserLike, name: str) -> AIModel:
    """The model by name if the user may view it, else NotFound (never Forbidden: it does not exist
    for them). One query for the row; the permission check is the request's checker's (2 queries,
    which the service's guard then reuses), so a write makes no second permission round trip."""
    model = AIModel.objects.select_related("owner", "default_dataset").filter(name=name).first()
    if model is None or not can_view_model(user, model):
        raise NotFound(f"AI model '{name}' not found.")
    return model


def ai_model_detail(user: UserLike, name: str) -> AIModel:
    """`ai_model_get` with the active version and live job loaded (the detail shows both, often)."""
    model = ai_model_get(user, name)
    prefetch_related_objects([model], *_ACTIVE_AND_LIVE)
    return model


SHADOW_COLUMNS = {
    "shadow_experiment_id": "id",
    "shadow_version": "challenger__version",
    "shadow_checksum": "challenger__checksum",
    "shadow_artifact_path": "challenger__artifact_path",
}


def ai_model_to_serve(user: UserLike, name: str) -> AIModel:
    """A model the user may view, for serving a prediction, with its active version (and that
    version's dataset) loaded: one query when the model has an active version (the version row
    brings its model and, as `shadow_*` attributes, the challenger of a running experiment), then
    the permission check (the only one predict makes)."""
    running = Experiment.objects.filter(model_id=OuterRef("model_id"), state=ExperimentState.RUNNING)
    active = (
        ModelVersion.objects.select_related("model__owner", "model__default_dataset", "dataset")
        .filter(model__name=name, status=VersionStatus.ACTIVE)
        # The running shadow experiment's challenger, in the same query (predict's count stays constant).
        .annotate(**{key: Subquery(running.values(column)[:1]) for key, column in SHADOW_COLUMNS.items()})
        .first()
    )
    if active is None:  # no active version (409), or no such model (404): the plain lookup says which
        model = ai_model_get(user, name)
        model.active_versions = []  # type: ignore[attr-defined]
        return model
    model = active.model
    if not can_view_model(user, model):
        raise NotFound(f"AI model '{name}' not found.")
    model.active_versions = [active]  # type: ignore[attr-defined]
    return model


def model_version_list(user: UserLike, model_name: str) -> QuerySet[ModelVersion]:
    model = ai_model_get(user, model_name)
    return model.versions.select_related("model", "parent", "dataset").order_by("-created_at", "-id")


VERSION_COLUMNS = (
    "id", "model__name", "version", "accuracy", "response_time_ms", "training_data_size", "trained_at",
    "status", "performance_metrics", "baselines", "backtest", "metadata", "parent__version", "dataset__name",
    "checksum", "activated_at",
)  # fmt: skip


def model_version_rows(user: UserLike, model_name: str) -> QuerySet[ModelVersion, dict[str, Any]]:
    """`model_version_list` as plain rows (`VERSION_COLUMNS`, the related names joined in the same
    query): NotFound unless the user may view the model, as there."""
    return model_version_list(user, model_name).values(*VERSION_COLUMNS)


def model_version_get(user: UserLike, model_name: str, version: str) -> ModelVersion:
    found = model_version_list(user, model_name).filter(version=version).first()
    if found is None:
        raise NotFound(f"Version '{version}' of model '{model_name}' not found.")
    return found


def active_version_of(model: AIModel) -> ModelVersion | None:
    prefetched = getattr(model, "active_versions", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return model.versions.filter(status=VersionStatus.ACTIVE).first()


def live_job_of(model: AIModel) -> TrainingJob | None:
    prefetched = getattr(model, "live_jobs", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return model.jobs.filter(status__in=LIVE_JOB_STATUSES).first()


def training_job_list(user: UserLike) -> QuerySet[TrainingJob]:
    return (
        TrainingJob.objects.filter(model__in=ai_models_visible(user))
        .select_related("model", "dataset", "version", "base_version", "created_by", "cost")
        .order_by("-created_at", "-id")
    )


def training_job_get(user: UserLike, job_id: int) -> TrainingJob:
    job = training_job_list(user).prefetch_related("epochs").filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"Training job {job_id} not found.")
    return job


def training_job_latest(user: UserLike, model_name: str) -> TrainingJob:
    model = ai_model_get(user, model_name)
    job = training_job_list(user).prefetch_related("epochs").filter(model=model).first()
    if job is None:
        raise NotFound(f"AI model '{model_name}' has no training job yet.")
    return job


def study_list(user: UserLike, model_name: str) -> QuerySet[Study]:
    model = ai_model_get(user, model_name)
    return Study.objects.filter(model=model).select_related("model", "dataset", "created_by", "final_job")


def study_get(user: UserLike, study_id: int) -> Study:
    """A study of a model the user may view, with its trials (and their jobs)."""
    study = (
        Study.objects.filter(pk=study_id, model__in=ai_models_visible(user))
        .select_related("model", "dataset", "created_by", "final_job__version")
        .prefetch_related("trials__job__cost")
        .first()
    )
    if study is None:
        raise NotFound(f"Study {study_id} not found.")
    return study


# --- Cost -----------------------------------------------------------------------------------------
# Sums over jobs the caller already holds (a visible version or study) or that the read filters.


@dataclass(frozen=True)
class CostTotal:
    """The sum of some jobs' costs; amounts per currency (price cards may change the currency)."""

    jobs: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    amounts: dict[str, Decimal] = field(default_factory=dict)


COST_COLUMNS = ("wall_seconds", "cpu_seconds", "gpu_seconds", "amount", "currency")


def _cost_sum(rows: Iterable[tuple[float, float, float, Decimal, str]]) -> CostTotal:
    jobs, wall, cpu, gpu, amounts = 0, 0.0, 0.0, 0.0, dict[str, Decimal]()
    for row_wall, row_cpu, row_gpu, amount, currency in rows:
        jobs, wall, cpu, gpu = jobs + 1, wall + row_wall, cpu + row_cpu, gpu + row_gpu
        amounts[currency] = amounts.get(currency, Decimal(0)) + amount
    return CostTotal(jobs, wall, cpu, gpu, amounts)


def cost_total(costs: QuerySet[JobCost]) -> CostTotal:
    """Summed here, not in SQL: SQLite would add the amounts as floats; these are exact Decimals."""
    return _cost_sum(costs.values_list(*COST_COLUMNS))


def job_cost_of(job: TrainingJob) -> JobCost | None:
    """The job's cost row (None: it never ran); loaded with the job by `training_job_list`."""
    try:
        return job.cost
    except JobCost.DoesNotExist:
        return None


def version_lineage_costs(model: AIModel) -> dict[int, CostTotal]:
    """Version id -> what the version and its ancestors (`parent`, back to the first) cost to train,
    for every version of the model (2 queries)."""
    parents = dict(ModelVersion.objects.filter(model=model).values_list("id", "parent_id"))
    rows: dict[int, list[tuple[float, float, float, Decimal, str]]] = {}
    costs = JobCost.objects.filter(job__model=model, job__version__isnull=False)
    for version_id, *row in costs.values_list("job__version_id", *COST_COLUMNS):
        rows.setdefault(version_id, []).append(tuple(row))
    totals = {}
    for version_id in parents:
        lineage: list[int] = []
        current: int | None = version_id
        while current is not None and current not in lineage:  # a cycle cannot be stored, but never loop
            lineage.append(current)
            current = parents.get(current)
        totals[version_id] = _cost_sum(row for v in lineage for row in rows.get(v, []))
    return totals


def version_lineage_cost(version: ModelVersion) -> CostTotal:
    """What the version and its ancestors cost to train (their jobs)."""
    return version_lineage_costs(version.model).get(version.pk, CostTotal())


def study_cost(study: Study) -> CostTotal:
    """What the study's trials cost, failed and pruned ones included (its final job is a version's)."""
    return cost_total(JobCost.objects.filter(job__trial__study=study))


def ai_model_cost(user: UserLike, model_name: str, start: dt.datetime, end: dt.datetime) -> CostTotal:
    """What the model's jobs that started in [start, end) cost (NotFound unless the user may view it)."""
    model = ai_model_get(user, model_name)
    return cost_total(JobCost.objects.filter(job__model=model, job__started_at__gte=start, job__started_at__lt=end))


def dataset_list(user: UserLike) -> QuerySet[Dataset]:
    if not has_global_perm(user, "view_dataset"):
        return Dataset.objects.none()
    return Dataset.objects.select_related("created_by").order_by("name")


def dataset_get(user: UserLike, name: str) -> Dataset:
    dataset = dataset_list(user).filter(name=name).first()
    if dataset is None:
        raise NotFound(f"Dataset '{name}' not found.")
    return dataset


def audit_event_list(user: UserLike) -> QuerySet[AuditEvent]:
    """Events of models the user may view; events not tied to a model need the audit permission."""
    if not has_global_perm(user, "view_auditevent"):
        return AuditEvent.objects.none()
    if getattr(user, "is_superuser", False):
        return AuditEvent.objects.select_related("actor").order_by("-created_at", "-id")
    return (
        AuditEvent.objects.filter(Q(ai_model__in=ai_models_visible(user)) | Q(ai_model_name=""))
        .select_related("actor")
        .order_by("-created_at", "-id")
    )


def base_model_list(user: UserLike) -> QuerySet[BaseModel]:
    """Registered base models (llm-lora): every role may see them; they are server files, not a user's."""
    if not has_global_perm(user, "view_basemodel"):
        return BaseModel.objects.none()
    return BaseModel.objects.select_related("registered_by").order_by("name")


def base_model_get(user: UserLike, name: str) -> BaseModel:
    base = base_model_list(user).filter(name=name).first()
    if base is None:
        raise NotFound(f"Base model '{name}' not found.")
    return base


def guardrail_policy_of(model: AIModel) -> GuardrailPolicy | None:
    """The model's stored policy (None: no guardrails); the caller already holds the model."""
    return GuardrailPolicy.objects.filter(model=model).first()


def guardrail_evaluation_list(user: UserLike, model_name: str) -> QuerySet[GuardrailEvaluation]:
    model = ai_model_get(user, model_name)
    return GuardrailEvaluation.objects.filter(model=model).select_related("version", "rolled_back_to", "model")


def rolled_back_by_guardrail(version: ModelVersion) -> bool:
    """True when a guardrail rolled back from this version: it is never promoted automatically again."""
    return GuardrailEvaluation.objects.filter(version=version, action=GuardrailAction.ROLLED_BACK).exists()


def automatic_change_blocked(model: AIModel, version: ModelVersion | None = None) -> bool:
    """Whether an automatic change (a guardrail rollback, an automatic promotion) may not touch
    `model` now: its guardrail cooldown runs, or `version` (the one to be promoted) was rolled back
    by a guardrail. A person activating a version is never blocked by this."""
    until = GuardrailPolicy.objects.filter(model=model).values_list("cooldown_until", flat=True).first()
    if until is not None and until > timezone.now():
        return True
    return version is not None and rolled_back_by_guardrail(version)


def last_healthy_version(model: AIModel, active: ModelVersion) -> ModelVersion | None:
    """What a guardrail rolls back to: the version most recently active before `active` (each
    activation stamps `activated_at`) that a guardrail did not roll back from and that still has
    its artifact."""
    rolled_back = GuardrailEvaluation.objects.filter(
        model=model, action=GuardrailAction.ROLLED_BACK, version__isnull=False
    )
    return (
        model.versions.filter(status=VersionStatus.DEPRECATED, activated_at__isnull=False)
        .exclude(pk=active.pk)
        .exclude(artifact_path="")
        .exclude(pk__in=rolled_back.values("version_id"))
        .order_by("-activated_at", "-created_at")
        .first()
    )


def experiment_list(user: UserLike, model_name: str) -> QuerySet[Experiment]:
    model = ai_model_get(user, model_name)
    return Experiment.objects.filter(model=model).select_related("model", "champion", "challenger", "started_by")


def experiment_get(user: UserLike, experiment_id: int) -> Experiment:
    """An experiment of a model the user may view (else NotFound)."""
    experiment = (
        Experiment.objects.filter(pk=experiment_id, model__in=ai_models_visible(user))
        .select_related("model", "champion", "challenger", "started_by")
        .first()
    )
    if experiment is None:
        raise NotFound(f"Experiment {experiment_id} not found.")
    return experiment


def alert_list(user: UserLike, model_name: str, status: str | None = None) -> QuerySet[Alert]:
    model = ai_model_get(user, model_name)
    alerts = Alert.objects.filter(model=model).select_related("version", "acknowledged_by", "model")
    return alerts.filter(status=status) if status else alerts


# --- Bars -----------------------------------------------------------------------------------------
# Bars are market data, not a user's object: these reads take a dataset the caller already holds
# (from `dataset_get`, or from a job or version it may see).


def dataset_bars(
    dataset: Dataset, *, start: dt.date | dt.datetime | None = None, end: dt.date | dt.datetime | None = None
) -> QuerySet[Bar]:
    """The dataset's bars in [start, end] (either end open), oldest first. A date bound means its
    whole UTC day, so a date window selects the same daily bars as before, and whole days of
    intraday bars."""
    bars = dataset.bars.order_by("timestamp")
    if start is not None:
        bars = bars.filter(timestamp__gte=timeframes.window_start(start))
    if end is not None:
        bars = bars.filter(timestamp__lte=timeframes.window_end(end))
    return bars


def dataset_bars_frame(
    dataset: Dataset,
    *,
    start: dt.date | dt.datetime | None = None,
    end: dt.date | dt.datetime | None = None,
    history_bars: int = 0,
    lookahead_bars: int = 0,
) -> pd.DataFrame:
    """The same bars as an OHLCV frame indexed by bar key, the shape the engine takes: dates for
    daily and weekly datasets, a UTC DatetimeIndex for intraday ones (see `engine.timeframes`).

    `history_bars` also loads that many bars before `start` (with no start: the last that many up
    to `end`), `lookahead_bars` that many after `end`: windows counted in bars, whatever their
    length.
    """
    import pandas as pd  # heavy: only the processes that compute features load pandas

    stamps = dataset.bars.values_list("timestamp", flat=True)
    if history_bars and (start is not None or end is not None):
        earlier = (
            stamps.filter(timestamp__lt=timeframes.window_start(start))
            if start is not None
            else stamps.filter(timestamp__lte=timeframes.window_end(end))  # type: ignore[arg-type]
        )
        found = list(earlier.order_by("-timestamp")[history_bars - 1 : history_bars])
        start = found[0] if found else None  # fewer bars than that: from the first
    if lookahead_bars and end is not None:
        later = list(
            stamps.filter(timestamp__gt=timeframes.window_end(end)).order_by("timestamp")[
                lookahead_bars - 1 : lookahead_bars
            ]
        )
        end = later[0] if later else None
    rows = list(dataset_bars(dataset, start=start, end=end).values_list(*BAR_COLUMNS))
    frame = pd.DataFrame(rows, columns=list(BAR_COLUMNS))
    times = frame.pop("timestamp")
    if timeframes.timeframe(dataset.timeframe).intraday:
        frame.index = pd.DatetimeIndex(pd.to_datetime(times, utc=True), name="timestamp")
    else:
        frame.index = pd.Index([stamp.astimezone(dt.UTC).date() for stamp in times], dtype=object, name="date")
    return frame
