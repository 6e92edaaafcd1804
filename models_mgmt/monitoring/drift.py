"""Drift of the active version: its training window's features against a recent window (PSI,
KS, Wasserstein per feature), its outputs on both, its live accuracy against validation, and a
verdict with a recommendation and reasons.

The statistics live in `engine.drift` (Django-free); this module picks the windows and reads.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import caches

from models_mgmt import selectors
from models_mgmt.choices import VersionStatus
from models_mgmt.engine import drift, timeframes
from models_mgmt.engine.features import FEATURE_NAMES, compute_features
from models_mgmt.engine.labels import METRIC_OF_TASK, TASKS
from models_mgmt.models import AIModel, Dataset, DriftReport, ModelVersion, Prediction
from models_mgmt.permissions import UserLike

from . import serving
from .scoring import score_on_window
from .windows import (
    DAYS_PER_BAR,
    HISTORY_BARS,
    BarTime,
    counts_days,
    frame_up_to,
    frame_with_history,
    iso_day,
    timeframe_of,
)

logger = logging.getLogger(__name__)


def thresholds() -> drift.Thresholds:
    return drift.Thresholds(
        psi_warn=settings.MONITORING_PSI_WARN,
        psi_alert=settings.MONITORING_PSI_ALERT,
        ks_pvalue=settings.MONITORING_KS_PVALUE,
        feature_share=settings.MONITORING_DRIFT_FEATURE_SHARE,
        performance_alpha=settings.MONITORING_PERFORMANCE_ALPHA,
        min_samples=settings.MONITORING_MIN_SAMPLES,
    )


def _feature_matrix(frame: Any, start: BarTime | None, end: BarTime | None) -> tuple[Any, list[Any]]:
    """Finite feature rows of `frame` with bar times in [start, end], and their bar keys."""
    import numpy as np  # heavy: stays out of processes that never compute drift

    features = compute_features(frame)
    keep = features.notna().all(axis=1).to_numpy() & timeframes.within(features.index, start, end)
    return features.to_numpy(dtype=np.float64)[keep], list(features.index[keep])


def reference_features(version: ModelVersion) -> tuple[Any, dict[str, Any]] | None:
    """The version's training-window features, recomputed from its dataset's bars."""
    window = (version.metadata or {}).get("trainWindow")
    dataset = version.dataset
    if not window or dataset is None:
        return None
    start, end = (timeframes.parse_bar_time(d) for d in window)
    frame = frame_with_history(dataset, start, end)
    matrix, dates = _feature_matrix(frame, start, end)
    if not len(matrix):
        return None
    return matrix, {
        "dataset": dataset.name,
        "start": iso_day(dates[0]),
        "end": iso_day(dates[-1]),
        "samples": len(dates),
    }


def _stored_histograms(version: ModelVersion) -> dict[str, tuple[Sequence[float], Sequence[int]]]:
    try:
        summary = json.loads((Path(version.artifact_path) / "feature_summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return {
        name: (column["histogram"]["edges"], column["histogram"]["counts"])
        for name, column in summary.get("features", {}).items()
    }


def current_window(
    model: AIModel, version: ModelVersion, dataset: Dataset | None, start: BarTime | None, end: BarTime | None
) -> tuple[Dataset | None, Any, Any, list[Any]]:
    """(dataset, bars frame with history, feature rows, their bar keys) of the recent window: the
    last MONITORING_DRIFT_WINDOW_BARS bars of the dataset's timeframe, or [start, end]."""
    dataset = dataset or model.default_dataset or version.dataset
    end = end or (dataset.last_bar_at if dataset is not None else None)
    if dataset is None or end is None:
        return None, None, None, []
    size = settings.MONITORING_DRIFT_WINDOW_BARS
    if start is not None:
        frame = frame_with_history(dataset, start, end)
    elif counts_days(dataset):
        frame = frame_with_history(dataset, end - dt.timedelta(days=int(size * DAYS_PER_BAR)), end)
    else:
        frame = frame_up_to(dataset, end, size + HISTORY_BARS)
    matrix, dates = _feature_matrix(frame, start, end)
    if start is None:
        matrix, dates = matrix[-size:], dates[-size:]
    return dataset, frame, matrix, dates


def _performance(version: ModelVersion, limits: drift.Thresholds) -> dict[str, Any]:
    """Live accuracy of the predictions this version served vs its validation accuracy."""
    rows = list(
        Prediction.objects.filter(version=version, resolved_at__isnull=False)
        .order_by("-created_at")
        .values_list("correct", flat=True)[:5000]
    )
    reference_count = int((version.metadata or {}).get("validationSamples") or 0)
    if len(rows) < limits.min_samples or not reference_count:
        return {
            "status": "insufficient_data",
            "resolved": len(rows),
            "detail": f"{len(rows)} resolved prediction(s) of {version.version}; at least {limits.min_samples} "
            "are needed to compare live with validation accuracy",
            "tasks": {},
            "degraded": False,
        }
    # Bonferroni over the three tasks: one alarm level for "any task got worse".
    alpha = limits.performance_alpha / len(TASKS)
    tasks = {}
    for task in TASKS:
        marks = [bool(r[task]) for r in rows if r and r.get(task) is not None]
        reference = version.performance_metrics.get(METRIC_OF_TASK[task])
        if not marks or reference is None:
            continue
        test = drift.accuracy_drop_test(sum(marks), len(marks), float(reference), reference_count, alpha)
        tasks[METRIC_OF_TASK[task]] = test.as_dict()
    degraded = [name for name, t in tasks.items() if t["significant"]]
    return {
        "status": "degraded" if degraded else "ok",
        "resolved": len(rows),
        "alpha": limits.performance_alpha,
        "test": "one-sided two-proportion z-test per task (Bonferroni over the tasks)",
        "tasks": tasks,
        "degraded": bool(degraded),
        "degradedTasks": degraded,
    }


def _probabilities(version: ModelVersion, matrix: Any) -> Any:
    served = serving.session_for(version.model_id, version.version, version.checksum, version.artifact_path)
    return served.run(matrix)


def _rollback_candidate(model: AIModel, active: ModelVersion) -> ModelVersion | None:
    return (
        model.versions.filter(status=VersionStatus.DEPRECATED)
        .exclude(artifact_path="")
        .order_by("-activated_at", "-created_at")
        .first()
    )


def _sections_key(active: ModelVersion, dataset: Dataset, start: BarTime | None, end: BarTime | None) -> str:
    """Everything the data and prediction sections depend on: the version's weights, the dataset's
    bars (appending bars changes count and last bar), the window and the thresholds."""
    limits = thresholds()
    # Bar times as ISO 8601 without spaces: the key stays valid for memcached too.
    times = (timeframes.format_key(t) if t else None for t in (dataset.last_bar_at, start, end))
    parts = (
        active.pk, active.checksum[:16], dataset.pk, dataset.bar_count, *times,
        settings.MONITORING_DRIFT_WINDOW_BARS, limits.psi_warn, limits.psi_alert, limits.ks_pvalue,
        limits.feature_share, limits.min_samples,
    )  # fmt: skip
    return "drift-sections:v1:" + ":".join(str(part) for part in parts)


def _cache_call(method: str, *args: Any) -> Any:
    """The cache is a speed-up: an unreachable Redis or a missing cache table (`createcachetable`
    not run) costs a recomputation, never the report."""
    try:
        return getattr(caches["monitoring"], method)(*args)
    except Exception:
        logger.warning("monitoring cache unavailable (%s); computing without it", method, exc_info=True)
        return None


def _window_sections(
    model: AIModel, active: ModelVersion, dataset: Dataset | None, start: BarTime | None, end: BarTime | None
) -> dict[str, Any]:
    """The data and prediction drift of `active` on the window: the expensive part of a report
    (features over the training and recent windows, ONNX outputs, the statistics), cached in the
    shared `monitoring` cache so a report computed by a worker is served at once."""
    limits = thresholds()
    dataset = dataset or model.default_dataset or active.dataset
    key = _sections_key(active, dataset, start, end) if dataset is not None else None
    if key is not None:
        cached = _cache_call("get", key)
        if cached is not None:
            return {**cached, "cache": "hit"}
    reference = reference_features(active)
    if reference is None:
        return {"status": "insufficient_data",
                "detail": f"{active.version} records no training window or dataset, so it has no reference "
                "distribution to compare with."}  # fmt: skip
    ref_matrix, ref_info = reference
    dataset, _, cur_matrix, dates = current_window(model, active, dataset, start, end)
    if dataset is None or len(dates) < limits.min_samples:
        return {"status": "insufficient_data", "reference": ref_info,
                "detail": f"The recent window holds {len(dates)} usable bar(s); at least {limits.min_samples} "
                "are needed."}  # fmt: skip
    window = {"dataset": dataset.name, "start": iso_day(dates[0]), "end": iso_day(dates[-1]), "bars": len(dates)}
    columns = drift.matrix_drift(ref_matrix, cur_matrix, FEATURE_NAMES, limits, _stored_histograms(active))
    data_verdict = drift.verdict(columns, limits)
    prediction: dict[str, Any]
    try:
        ref_out, cur_out = _probabilities(active, ref_matrix), _probabilities(active, cur_matrix)
        outputs = drift.matrix_drift(ref_out, cur_out, TASKS, limits)
        prediction = {"verdict": drift.verdict(outputs, limits).level, "outputs": [o.as_dict() for o in outputs],
                      "source": "the active version run on the window's bars vs on its training window"}  # fmt: skip
    except Exception as exc:  # an unreadable artifact must not hide the data drift
        prediction = {"verdict": "unavailable", "outputs": [], "source": f"artifact unreadable: {exc}"}
    sections = {
        "status": "computed",
        "reference": ref_info,
        "window": window,
        "features": [c.as_dict() for c in columns],
        "dataDrift": {
            "verdict": data_verdict.level,
            "score": data_verdict.score,
            "drifted": data_verdict.drifted,
            "warned": data_verdict.warned,
            "shifted": data_verdict.shifted,
        },
        "predictionDrift": prediction,
    }
    if key is not None:
        _cache_call("set", key, sections, settings.MONITORING_CACHE_SECONDS)
    return {**sections, "cache": "miss"}


def drift_report_compute(
    model: AIModel,
    active: ModelVersion | None,
    *,
    dataset: Dataset | None = None,
    start: BarTime | None = None,
    end: BarTime | None = None,
) -> dict[str, Any]:
    """Data, prediction and performance drift of the active version, a verdict and a recommendation."""
    limits = thresholds()
    base: dict[str, Any] = {
        "modelName": model.name,
        "activeVersion": active.version if active else None,
        "thresholds": {
            "psiWarn": limits.psi_warn,
            "psiAlert": limits.psi_alert,
            "ksPValue": limits.ks_pvalue,
            "featureShare": limits.feature_share,
            "performanceAlpha": limits.performance_alpha,
            "minSamples": limits.min_samples,
        },
        "features": [],
        "driftScore": None,
        "recommendation": None,
        "reasons": [],
        "conditions": {"data_drift": False, "prediction_drift": False, "performance_drift": False},
    }
    if active is None:
        return {**base, "status": "no_active_version", "verdict": "insufficient_data",
                "detail": "The model has no active version to watch."}  # fmt: skip
    sections = _window_sections(model, active, dataset, start, end)
    if sections["status"] != "computed":
        return {**base, **sections, "verdict": "insufficient_data"}
    columns, data_drift, prediction = sections["features"], sections["dataDrift"], sections["predictionDrift"]
    window = sections["window"]
    performance = _performance(active, limits)

    reasons: list[str] = []
    for column in sorted(columns, key=lambda c: -c["psi"]):
        if column["level"] in ("drift", "shifted"):
            reasons.append(
                f"feature {column['name']} {'drifted' if column['level'] == 'drift' else 'shifted'}: "
                f"{column['detail']}; mean {column['referenceMean']:.4g} in training vs {column['currentMean']:.4g} now"
            )
    reasons.insert(0, f"data drift: {len(data_drift['drifted'])} of {len(columns)} features drifted "
                   f"(drift at >= {limits.feature_share:.0%}), {len(data_drift['warned'])} warn, "
                   f"{len(data_drift['shifted'])} shifted (PSI >= {limits.psi_alert} but neither significant "
                   "nor beyond the training history)")  # fmt: skip
    if prediction["verdict"] in ("warning", "drift"):
        moved = ", ".join(f"{o['name']} mean {o['referenceMean']:.3f} -> {o['currentMean']:.3f}"
                          for o in prediction["outputs"] if o["level"] != "stable")  # fmt: skip
        reasons.append(f"prediction drift ({prediction['verdict']}): {moved}")
    if performance["status"] == "degraded":
        for name in performance["degradedTasks"]:
            t = performance["tasks"][name]
            reasons.append(
                f"performance drift: live {name} {t['liveAccuracy']:.3f} over {t['liveCount']} resolved predictions "
                f"vs validation {t['validationAccuracy']:.3f} (one-sided p={t['pValue']:.2g})"
            )
    elif performance["status"] == "insufficient_data":
        reasons.append(performance["detail"])

    data_level = data_drift["verdict"]
    recommendation = "none"
    if performance["degraded"]:
        recommendation = "retrain"
        previous = _rollback_candidate(model, active)
        used = Dataset.objects.filter(name=window["dataset"]).first()
        if previous is not None and used is not None:
            first, last = (timeframes.parse_bar_time(str(window[k])) for k in ("start", "end"))
            # Labels of the window's last bars read up to 60 bars (the longest horizon) past its end.
            frame = frame_with_history(used, first, last, lookahead_days=120, lookahead_bars=61)
            per_year = timeframe_of(used).bars_per_year
            mine = score_on_window(active, frame, first, last, bars_per_year=per_year)
            theirs = score_on_window(previous, frame, first, last, bars_per_year=per_year)
            if mine and theirs:
                a, b = mine["performanceMetrics"]["overallScore"], theirs["performanceMetrics"]["overallScore"]
                if b > a:
                    recommendation = f"rollback to {previous.version}"
                    reasons.append(f"{previous.version} scores {b:.3f} on the window's labelled bars vs {a:.3f} "
                                   f"for {active.version}")  # fmt: skip
    elif data_level == "drift":
        recommendation = "retrain"
    elif data_level == "warning" or prediction["verdict"] in ("warning", "drift"):
        recommendation = "monitor"

    if performance["degraded"] or data_level == "drift":
        overall = "drift"
    elif data_level == "warning" or prediction["verdict"] in ("warning", "drift"):
        overall = "warning"
    else:
        overall = "stable"
    return {
        **base,
        **sections,
        "verdict": overall,
        "driftScore": data_drift["score"],
        "recommendation": recommendation,
        "reasons": reasons,
        "performanceDrift": performance,
        "conditions": {
            "data_drift": data_level == "drift",
            "prediction_drift": prediction["verdict"] == "drift",
            "performance_drift": bool(performance["degraded"]),
        },
        "detail": f"{active.version}: {overall}; recommendation: {recommendation}.",
    }


def drift_reports_warm(*, model_id: int | None = None, dataset_id: int | None = None) -> list[str]:
    """Compute (and so cache) the default-window drift report of each model with an active version:
    of one model, or of the models whose window reads `dataset_id`. Run by a worker after an
    activation or new bars, so the web process serves the report at once."""
    if not settings.MODEL_DRIFT_DETECTION_ENABLED:
        return []
    models = AIModel.objects.filter(versions__status=VersionStatus.ACTIVE).select_related("default_dataset")
    if model_id is not None:
        models = models.filter(pk=model_id)
    warmed = []
    for model in models.distinct():
        active = model.versions.filter(status=VersionStatus.ACTIVE).select_related("dataset").first()
        if active is None:
            continue
        used = model.default_dataset or active.dataset
        if dataset_id is not None and (used is None or used.pk != dataset_id):
            continue
        drift_report_compute(model, active)
        warmed.append(model.name)
    return warmed


def model_drift_report(
    user: UserLike,
    model_name: str,
    *,
    dataset_name: str | None = None,
    start: BarTime | None = None,
    end: BarTime | None = None,
) -> dict[str, Any]:
    """A drift report computed now (nothing stored), with the history the schedule kept."""
    model = selectors.ai_model_get(user, model_name)
    dataset = selectors.dataset_get(user, dataset_name) if dataset_name else None
    report = drift_report_compute(model, selectors.active_version_of(model), dataset=dataset, start=start, end=end)
    report["history"] = [
        {"id": r.pk, "createdAt": r.created_at.isoformat(), "verdict": r.verdict, "driftScore": r.drift_score,
         "recommendation": r.recommendation, "version": r.report.get("activeVersion")}
        for r in DriftReport.objects.filter(model=model).order_by("-created_at", "-id")[:20]
    ]  # fmt: skip
    return report
