"""Shadow experiments: starting, stopping and promoting one, and evaluating a running one on the
resolved predictions of its ledger (engine/sequential.py does the statistics)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from models_mgmt.choices import PERM_ACTIVATE, AlertKind, AlertStatus, ExperimentState, VersionStatus
from models_mgmt.engine.families import LLM_LORA
from models_mgmt.errors import Conflict, InvalidInput, NotFound
from models_mgmt.models import AIModel, Alert, Experiment, ModelVersion, Prediction
from models_mgmt.permissions import UserLike, require_model_perm
from models_mgmt.realtime.events import publish_model_event
from models_mgmt.selectors import automatic_change_blocked

from .audit import audit_record
from .experiment_lifecycle import experiment_summary, experiment_transition
from .versions import model_version_activate, model_version_activate_system

logger = logging.getLogger(__name__)
ONNX = "model.onnx"
EXPERIMENT_FIELDS = ("challenger", "alpha", "maxDays", "maxPredictions", "autoPromote")


def _validate(model: AIModel, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInput("Send a JSON object.", fields={"non_field_errors": ["expected an object"]})
    errors: dict[str, list[str]] = {}
    for name in data:
        if name not in EXPERIMENT_FIELDS:
            errors[name] = [f"unknown field; allowed: {', '.join(EXPERIMENT_FIELDS)}"]
    values: dict[str, Any] = {}
    challenger = data.get("challenger")
    if not isinstance(challenger, str) or not challenger:
        errors["challenger"] = ["the version to run in shadow, e.g. v1.3.0"]
    alpha = data.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha <= 0.5:
        errors["alpha"] = ["a number in (0, 0.5]"]
    else:
        values["alpha"] = float(alpha)
    for name, field, high in (("maxDays", "max_days", 100_000), ("maxPredictions", "max_predictions", 100_000_000)):
        value = data.get(name, 250 if name == "maxDays" else None)
        if value is None and name == "maxPredictions":
            values[field] = None
        elif isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            errors[name] = [f"a whole number from 1 to {high}" + (" or null" if name == "maxPredictions" else "")]
        else:
            values[field] = value
    auto = data.get("autoPromote", False)
    if not isinstance(auto, bool):
        errors["autoPromote"] = ["true or false"]
    values["auto_promote"] = auto
    if model.family == LLM_LORA.name:
        errors["challenger"] = ["shadow experiments need ONNX versions; llm-lora models are served by Ollama"]
    if errors:
        raise InvalidInput("Invalid experiment.", fields=errors)
    version = ModelVersion.objects.filter(model=model, version=challenger).first()
    if version is None:
        raise InvalidInput("Invalid experiment.", fields={"challenger": [f"no version '{challenger}' of this model"]})
    if not version.artifact_path or not (Path(version.artifact_path) / ONNX).is_file():
        raise InvalidInput("Invalid experiment.", fields={"challenger": [f"{challenger} has no ONNX artifact"]})
    if version.status in (VersionStatus.TRAINING, VersionStatus.FAILED):
        raise InvalidInput("Invalid experiment.", fields={"challenger": [f"{challenger} is {version.status}"]})
    values["challenger"] = version
    return values


@transaction.atomic
def experiment_start(*, actor: UserLike, model: AIModel, data: Any) -> Experiment:
    """Start shadowing `challenger` behind the active version. The challenger may be the champion
    itself (an A/A experiment checks the machinery: it must declare nothing)."""
    user = require_model_perm(actor, model, PERM_ACTIVATE, "start experiments")
    AIModel.objects.select_for_update().filter(pk=model.pk).first()  # serialised with activations
    values = _validate(model, data)
    champion = ModelVersion.objects.filter(model=model, status=VersionStatus.ACTIVE).first()
    if champion is None:
        raise Conflict(f"AI model '{model.name}' has no active version to compare with.", code="no_active_version")
    if Experiment.objects.filter(model=model, state=ExperimentState.RUNNING).exists():
        raise Conflict(f"AI model '{model.name}' already runs an experiment; stop it first.", code="experiment_running")
    experiment = Experiment.objects.create(model=model, champion=champion, started_by=user, **values)
    audit_record(
        actor=actor, action="experiment.started", obj=experiment, ai_model=model, after=experiment_payload(experiment)
    )
    publish_model_event(model, "experiment", experiment_summary(experiment))
    return experiment


def _locked(model: AIModel, experiment_id: int) -> Experiment:
    AIModel.objects.select_for_update().filter(pk=model.pk).first()
    experiment = (
        Experiment.objects.select_for_update(of=("self",))
        .select_related("model", "champion", "challenger", "started_by")
        .filter(model=model, pk=experiment_id)
        .first()
    )
    if experiment is None:
        raise NotFound(f"Experiment {experiment_id} not found.")
    return experiment


@transaction.atomic
def experiment_stop(*, actor: UserLike, model: AIModel, experiment_id: int, reason: str = "") -> Experiment:
    require_model_perm(actor, model, PERM_ACTIVATE, "stop experiments")
    experiment = _locked(model, experiment_id)
    return experiment_transition(
        experiment,
        ExperimentState.STOPPED,
        actor=actor,
        reason=reason or "stopped by a person",
        action="experiment.stopped",
    )


@transaction.atomic
def experiment_promote(*, actor: UserLike, model: AIModel, experiment_id: int) -> Experiment:
    """Activate the challenger of an experiment that found it better (a maintainer's click)."""
    require_model_perm(actor, model, PERM_ACTIVATE, "promote challengers")
    experiment = _locked(model, experiment_id)
    return _promote(experiment, actor=actor, reason=f"experiment {experiment.pk}: promoted by a person")


def _promote(experiment: Experiment, *, actor: UserLike | None, reason: str) -> Experiment:
    if experiment.state != ExperimentState.CHALLENGER_BETTER:
        raise Conflict(
            f"Experiment {experiment.pk} is {experiment.state}; only a challenger found better is promoted.",
            code="invalid_transition",
        )
    if experiment.champion.status != VersionStatus.ACTIVE:  # activated since by hand: that change wins
        raise Conflict(f"{experiment.champion.version} is no longer active.", code="champion_replaced")
    experiment_transition(
        experiment, ExperimentState.PROMOTED, actor=actor, reason=reason, action="experiment.promoted"
    )
    if actor is None:
        model_version_activate_system(model=experiment.model, version=experiment.challenger, reason=reason)
    else:
        model_version_activate(actor=actor, model=experiment.model, version=experiment.challenger.version)
    return experiment


def _day(as_of: dt.datetime) -> str:
    return as_of.astimezone(dt.UTC).date().isoformat()


def experiment_compare(experiment: Experiment) -> dict[str, Any]:
    """The paired comparison on the experiment's resolved predictions (read only)."""
    from models_mgmt.engine import sequential  # numpy: loaded by the processes that evaluate

    rows = (
        Prediction.objects.filter(experiment=experiment, version=experiment.champion, resolved_at__isnull=False)
        .exclude(challenger_outputs__isnull=True)
        .order_by("as_of", "id")
        .values_list("as_of", "outputs", "challenger_outputs", "labels")
    )
    by_task: dict[str, list[tuple[str, float]]] = {}
    for as_of, champion, challenger, labels in rows.iterator(chunk_size=2000):
        challenger = challenger or {}
        for task, label in (labels or {}).items():
            if task in champion and task in challenger:
                by_task.setdefault(task, []).append(
                    (_day(as_of), sequential.brier_difference(champion[task], challenger[task], int(label)))
                )
    return sequential.compare(
        by_task, experiment.alpha, max_days=experiment.max_days, max_predictions=experiment.max_predictions
    )


@transaction.atomic
def experiment_evaluate(*, experiment_id: int) -> tuple[Experiment, Alert | None]:
    """Recompute a running experiment's confidence sequences; on a verdict end it (audited, on the
    feed, with an alert) and promote when it says so and the guardrails allow. Returns the alert
    opened, for the caller to deliver to the webhook outside the transaction."""
    experiment = Experiment.objects.select_related("model").get(pk=experiment_id)
    experiment = _locked(experiment.model, experiment_id)
    if experiment.state != ExperimentState.RUNNING:
        return experiment, None
    stats = experiment_compare(experiment)
    experiment.stats = stats
    experiment.evaluated_at = timezone.now()
    experiment.save(update_fields=["stats", "evaluated_at"])
    if stats["state"] == ExperimentState.RUNNING:
        return experiment, None
    experiment_transition(experiment, stats["state"], actor=None, reason=stats["reason"], action="experiment.decided")
    alert = Alert.objects.filter(
        model=experiment.model,
        kind=AlertKind.EXPERIMENT_DECIDED,
        status__in=[AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED],
    ).first()
    if alert is not None:  # one unresolved alert per kind: the older decision's is superseded
        alert.status, alert.resolved_at = AlertStatus.RESOLVED, timezone.now()
        alert.save(update_fields=["status", "resolved_at"])
    label = ExperimentState(experiment.state).label.lower()
    alert = Alert.objects.create(
        model=experiment.model,
        version=experiment.challenger,
        kind=AlertKind.EXPERIMENT_DECIDED,
        message=f"Shadow experiment {experiment.pk}: {experiment.challenger.version} vs "
        f"{experiment.champion.version}: {label} ({experiment.reason}).",
        reasons=[experiment.reason],
        recommendation="promote" if experiment.state == ExperimentState.CHALLENGER_BETTER else "",
    )
    audit_record(
        actor=None, action="alert.opened", obj=alert, ai_model=experiment.model, after={"message": alert.message}
    )
    if experiment.state == ExperimentState.CHALLENGER_BETTER and experiment.auto_promote:
        if automatic_change_blocked(experiment.model, experiment.challenger):
            experiment.reason += "; not promoted automatically: a guardrail cooldown or rollback blocks it"
            experiment.save(update_fields=["reason"])
            logger.info("experiment %s: automatic promotion blocked by guardrails", experiment.pk)
        elif experiment.champion.status == VersionStatus.ACTIVE:
            _promote(experiment, actor=None, reason=f"experiment {experiment.pk}: challenger better (autoPromote)")
    return experiment, alert


def experiment_payload(experiment: Experiment, *, history: bool = True) -> dict[str, Any]:
    stats = experiment.stats or {}
    tasks = stats.get("tasks", [])
    if not history:
        tasks = [{k: v for k, v in t.items() if k != "history"} for t in tasks]
    return {
        "id": experiment.pk,
        "modelName": experiment.model.name,
        "champion": experiment.champion.version,
        "challenger": experiment.challenger.version,
        "alpha": experiment.alpha,
        "maxDays": experiment.max_days,
        "maxPredictions": experiment.max_predictions,
        "autoPromote": experiment.auto_promote,
        "state": experiment.state,
        "reason": experiment.reason,
        "startedBy": experiment.started_by.username if experiment.started_by_id and experiment.started_by else None,
        "startedAt": experiment.started_at.isoformat() if experiment.started_at else None,
        "evaluatedAt": experiment.evaluated_at.isoformat() if experiment.evaluated_at else None,
        "endedAt": experiment.ended_at.isoformat() if experiment.ended_at else None,
        "method": stats.get("method"),
        "alphaPerTask": stats.get("alphaPerTask"),
        "tasks": tasks,
    }
