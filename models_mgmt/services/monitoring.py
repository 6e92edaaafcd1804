"""Monitoring writes: serving a prediction (and logging it), appending bars, resolving predictions
against the bars that arrived, recording drift reports, and opening/clearing alerts."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from models_mgmt.choices import PERM_MANAGE, PERM_VIEW, AlertKind, AlertStatus, VersionStatus
from models_mgmt.models import AIModel, Alert, Bar, Dataset, DriftReport, Prediction

from .ai_models import require_model_perm
from .audit import audit_record
from .errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable

logger = logging.getLogger(__name__)
OUTPUT_LABELS = {"signal": ("down", "up"), "risk": ("normal", "high"), "pattern": ("range", "breakout")}


def _frame(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["date", "open", "high", "low", "close", "volume"]).set_index("date")
    return frame.astype(float)


def prediction_make(
    *,
    actor: Any,
    model: AIModel,
    bars: list[dict[str, Any]] | None = None,
    dataset: Dataset | None = None,
    as_of: dt.date | None = None,
) -> dict[str, Any]:
    """Serve the active version on a window of bars (given, or a dataset's up to `as_of`) and log it.

    `dataset` with `bars` names whose later bars resolve the prediction (default: the model's
    dataset). Raises InvalidInput for a window that cannot produce features.
    """
    import numpy as np

    from models_mgmt import serving
    from models_mgmt.monitoring import bars_frame, hyper

    started = time.perf_counter()
    require_model_perm(actor, model, PERM_VIEW, "request predictions")
    active = model.versions.filter(status=VersionStatus.ACTIVE).first()
    if active is None:
        raise Conflict(f"AI model '{model.name}' has no active version to serve.", code="no_active_version")
    try:
        served = serving.serve_active(model.pk, active.version, active.checksum, active.artifact_path)
    except serving.ServingError as exc:
        raise Unavailable(str(exc), code="model_unavailable") from exc

    if bars is not None:
        frame, source, field = _frame(bars), "bars", "bars"
        resolve_in = dataset or model.default_dataset or active.dataset
    else:
        assert dataset is not None and as_of is not None
        history = dt.timedelta(days=int((serving.LOOKBACK_BARS + 200) * 1.6))
        frame, source, field = bars_frame(dataset, start=as_of - history, end=as_of), "dataset", "asOf"
        resolve_in = dataset
        if len(frame) == 0:
            raise InvalidInput(
                "No bars up to asOf.",
                fields={"asOf": [f"dataset '{dataset.name}' has no bars on or before {as_of}"]},
            )
    try:
        features = serving.feature_row(frame)
    except serving.WindowError as exc:
        raise InvalidInput(str(exc), fields={field: [str(exc)]}) from exc
    probabilities = served.run(features[np.newaxis, :])[0]
    latency_ms = (time.perf_counter() - started) * 1000

    horizon, breakout = hyper(active)
    last = frame.index[-1]
    due_on = dt.date.fromisoformat(str(np.busday_offset(np.datetime64(last, "D"), horizon, roll="forward")))
    outputs = {task: round(float(p), 6) for task, p in zip(served.tasks, probabilities, strict=True)}
    prediction = Prediction.objects.create(
        model=model,
        version=active,
        dataset=resolve_in,
        source=source,
        as_of=last,
        horizon=horizon,
        breakout_window=breakout,
        due_on=due_on,
        features=[round(float(x), 8) for x in features],
        outputs=outputs,
        latency_ms=round(latency_ms, 4),
    )
    return {
        "predictionId": prediction.pk,
        "modelName": model.name,
        "version": served.version,
        "asOf": last.isoformat(),
        "horizon": horizon,
        "horizonDueOn": due_on.isoformat(),
        "outputs": {
            task: {"probability": p, "prediction": OUTPUT_LABELS.get(task, ("no", "yes"))[int(p > 0.5)]}
            for task, p in outputs.items()
        },
        "latencyMs": round(latency_ms, 3),
        "resolvesAgainst": resolve_in.name if resolve_in else None,
    }


# --- Live bars -------------------------------------------------------------------------------


def dataset_bars_append(*, actor: Any, dataset: Dataset, bars: list[dict[str, Any]]) -> dict[str, Any]:
    """Append validated bars; a bar whose date exists with the same values changes nothing, with
    other values it is refused (409), and new dates must come after the dataset's last bar."""
    if not actor.has_perm("models_mgmt.change_dataset"):
        raise Forbidden("You may not change datasets (the maintainer role may).")
    with transaction.atomic():
        dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
        dates = [b["date"] for b in bars]
        existing = {b.date: b for b in dataset.bars.filter(date__in=dates)}
        conflicts, unchanged, new = [], 0, []
        for bar in bars:
            old = existing.get(bar["date"])
            if old is None:
                new.append(bar)
            elif all(abs(getattr(old, k) - bar[k]) <= 1e-9 * max(1.0, abs(bar[k])) for k in
                     ("open", "high", "low", "close", "volume")):  # fmt: skip
                unchanged += 1
            else:
                conflicts.append(bar["date"].isoformat())
        if conflicts:
            raise Conflict(
                f"{len(conflicts)} bar(s) exist with other values: {', '.join(conflicts[:20])}; nothing was stored.",
                code="bar_conflict",
            )
        early = [b["date"].isoformat() for b in new if dataset.last_date and b["date"] <= dataset.last_date]
        if early:
            raise InvalidInput(
                "Bars can only be appended after the last bar.",
                fields={"bars": [f"dates {', '.join(early[:20])} are not after the last bar ({dataset.last_date})"]},
            )
        Bar.objects.bulk_create([Bar(dataset=dataset, **b) for b in new])
        before = {"bars": dataset.bar_count, "lastDate": str(dataset.last_date) if dataset.last_date else None}
        if new:
            dataset.bar_count += len(new)
            dataset.first_date = dataset.first_date or min(b["date"] for b in new)
            dataset.last_date = max(b["date"] for b in new)
            dataset.save(update_fields=["bar_count", "first_date", "last_date"])
            audit_record(
                actor=actor,
                action="dataset.bars_appended",
                obj=dataset,
                before=before,
                after={"bars": dataset.bar_count, "lastDate": str(dataset.last_date), "added": len(new)},
            )
            transaction.on_commit(lambda: _enqueue_resolution(dataset.pk))
    return {
        "dataset": dataset.name,
        "added": len(new),
        "unchanged": unchanged,
        "barCount": dataset.bar_count,
        "lastDate": dataset.last_date.isoformat() if dataset.last_date else None,
    }


def _enqueue_resolution(dataset_id: int) -> None:
    try:
        from django_q.tasks import async_task

        async_task("models_mgmt.tasks.predictions_resolve", dataset_id, group="monitoring")
    except Exception:  # the schedule resolves them anyway
        logger.exception("could not enqueue prediction resolution for dataset %s", dataset_id)


# --- Resolution -------------------------------------------------------------------------------


def predictions_resolve(*, dataset_id: int | None = None) -> int:
    """Resolve every prediction whose horizon's bars have arrived in its dataset. Returns how many.

    Labels are computed exactly as in training (`engine.labels`), on the dataset's bars: a
    prediction of bar t is resolved once bar t+H exists. Until then it stays pending, however
    late the bars are.
    """
    import numpy as np
    from django.db.models import F

    from models_mgmt.engine.labels import compute_labels
    from models_mgmt.monitoring import HISTORY_DAYS, bars_frame

    pending = Prediction.objects.filter(
        resolved_at__isnull=True, dataset__isnull=False, due_on__lte=F("dataset__last_date")
    )
    if dataset_id is not None:
        pending = pending.filter(dataset_id=dataset_id)
    resolved = 0
    for ds_id in sorted(set(pending.values_list("dataset_id", flat=True))):
        rows = list(pending.filter(dataset_id=ds_id).order_by("as_of"))
        dataset = Dataset.objects.get(pk=ds_id)
        frame = bars_frame(dataset, start=rows[0].as_of - dt.timedelta(days=HISTORY_DAYS))
        index = np.asarray(frame.index)
        labels_by: dict[tuple[int, int], Any] = {}
        now, done = timezone.now(), []
        for prediction in rows:
            key = (prediction.horizon, prediction.breakout_window)
            if key not in labels_by:
                labels_by[key] = compute_labels(frame, horizon=key[0], breakout_window=key[1])
            labels = labels_by[key]
            position = int(np.searchsorted(index, prediction.as_of, side="right")) - 1
            if position < 0 or position + prediction.horizon >= len(index):
                continue
            row = labels.iloc[position]
            truth = {task: int(row[task]) for task in prediction.outputs if task in row and np.isfinite(row[task])}
            if "signal" not in truth:
                continue
            prediction.labels = truth
            prediction.correct = {t: (prediction.outputs[t] > 0.5) == bool(v) for t, v in truth.items()}
            prediction.horizon_end = index[position + prediction.horizon]
            prediction.resolved_at = now
            done.append(prediction)
        Prediction.objects.bulk_update(done, ["labels", "correct", "horizon_end", "resolved_at"], batch_size=500)
        resolved += len(done)
    return resolved


# --- Drift reports and alerts --------------------------------------------------------------------

ALERT_MESSAGES = {
    AlertKind.DATA_DRIFT: "Input data drifted away from the training distribution",
    AlertKind.PREDICTION_DRIFT: "The distribution of the model's outputs drifted",
    AlertKind.PERFORMANCE_DRIFT: "Live accuracy is significantly below validation accuracy",
}


def monitoring_check(*, model: AIModel) -> DriftReport:
    """Compute and keep a drift report; open or clear alerts with hysteresis; notify the webhook.

    An alert of a kind opens after MONITORING_ALERT_RAISE_AFTER consecutive reports with that
    condition, and resolves after MONITORING_ALERT_CLEAR_AFTER consecutive reports without it.
    """
    from models_mgmt.monitoring import drift_report_compute
    from models_mgmt.progress import publish_model_event

    active = model.versions.filter(status=VersionStatus.ACTIVE).select_related("dataset").first()
    data = drift_report_compute(model, active)
    changed: list[tuple[Alert, str]] = []
    with transaction.atomic():
        AIModel.objects.select_for_update().filter(pk=model.pk).first()  # one check per model at a time
        report = DriftReport.objects.create(
            model=model,
            version=active,
            verdict=data["verdict"],
            drift_score=data["driftScore"],
            recommendation=data["recommendation"] or "none",
            conditions=data["conditions"],
            report=data,
        )
        depth = max(settings.MONITORING_ALERT_RAISE_AFTER, settings.MONITORING_ALERT_CLEAR_AFTER)
        history = list(DriftReport.objects.filter(model=model).order_by("-created_at", "-id")[:depth])
        for kind in AlertKind.values:
            flags = [bool(r.conditions.get(kind)) for r in history]
            unresolved = Alert.objects.filter(
                model=model, kind=kind, status__in=[AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED]
            ).first()
            raise_n, clear_n = settings.MONITORING_ALERT_RAISE_AFTER, settings.MONITORING_ALERT_CLEAR_AFTER
            if unresolved is None and len(flags) >= raise_n and all(flags[:raise_n]):
                alert = Alert.objects.create(
                    model=model,
                    version=active,
                    kind=kind,
                    message=f"{ALERT_MESSAGES[kind]} ({model.name} {active.version if active else ''}).",
                    reasons=data["reasons"],
                    recommendation=data["recommendation"] or "",
                    report=report,
                )
                audit_record(actor=None, action="alert.opened", obj=alert, ai_model=model, after=alert_payload(alert))
                publish_model_event(model, "alert", alert_payload(alert))
                changed.append((alert, "opened"))
            elif unresolved is not None and len(flags) >= clear_n and not any(flags[:clear_n]):
                unresolved.status = AlertStatus.RESOLVED
                unresolved.resolved_at = timezone.now()
                unresolved.save(update_fields=["status", "resolved_at"])
                audit_record(
                    actor=None, action="alert.resolved", obj=unresolved, ai_model=model, after=alert_payload(unresolved)
                )
                publish_model_event(model, "alert", alert_payload(unresolved))
                changed.append((unresolved, "resolved"))
    for alert, _ in changed:  # outside the transaction: a slow webhook holds no lock
        from models_mgmt.webhooks import deliver

        outcome = deliver({"event": "alert", **alert_payload(alert)})
        if outcome:
            Alert.objects.filter(pk=alert.pk).update(webhook_status=outcome[:200])
    return report


def monitoring_checks_run() -> list[tuple[str, str]]:
    """The scheduled check of every model with an active version."""
    if not settings.MODEL_DRIFT_DETECTION_ENABLED:
        return []
    done = []
    for model in AIModel.objects.filter(versions__status=VersionStatus.ACTIVE).select_related("default_dataset"):
        try:
            done.append((model.name, monitoring_check(model=model).verdict))
        except Exception:
            logger.exception("monitoring check of %s failed", model.name)
    return done


def alert_payload(alert: Alert) -> dict[str, Any]:
    return {
        "alertId": alert.pk,
        "kind": alert.kind,
        "state": alert.status,
        "version": alert.version.version if alert.version_id else None,
        "message": alert.message,
        "reasons": alert.reasons,
        "recommendation": alert.recommendation,
        "openedAt": alert.opened_at.isoformat() if alert.opened_at else None,
        "resolvedAt": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }


@transaction.atomic
def alert_acknowledge(*, actor: Any, model: AIModel, alert_id: int) -> Alert:
    require_model_perm(actor, model, PERM_MANAGE, "acknowledge alerts")
    alert = Alert.objects.select_for_update().filter(model=model, pk=alert_id).first()
    if alert is None:
        raise NotFound(f"Alert {alert_id} of model '{model.name}' not found.")
    if alert.status == AlertStatus.RESOLVED:
        raise Conflict(f"Alert {alert_id} is already resolved.", code="invalid_transition")
    if alert.status == AlertStatus.OPEN:
        alert.status = AlertStatus.ACKNOWLEDGED
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = actor
        alert.save(update_fields=["status", "acknowledged_at", "acknowledged_by"])
        audit_record(
            actor=actor, action="alert.acknowledged", obj=alert, ai_model=model, before={"status": "open"},
            after={"status": alert.status},
        )  # fmt: skip
    return alert
