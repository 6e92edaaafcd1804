"""Monitoring reads: live accuracy and response times from the prediction ledger, drift reports,
and re-evaluation of versions on one held-out window.

These functions take a model the caller was already allowed to see (through `selectors`) and
compute; they never write. The statistics themselves live in `engine.drift` (Django-free).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from models_mgmt.choices import VersionStatus
from models_mgmt.engine import drift
from models_mgmt.engine.features import FEATURE_NAMES
from models_mgmt.engine.labels import METRIC_OF_TASK, TASKS
from models_mgmt.models import AIModel, Dataset, ModelVersion, Prediction

HISTORY_DAYS = 400  # calendar days of bars loaded before a window: features and risk labels need ~1 year


def thresholds() -> drift.Thresholds:
    return drift.Thresholds(
        psi_warn=settings.MONITORING_PSI_WARN,
        psi_alert=settings.MONITORING_PSI_ALERT,
        ks_pvalue=settings.MONITORING_KS_PVALUE,
        feature_share=settings.MONITORING_DRIFT_FEATURE_SHARE,
        performance_alpha=settings.MONITORING_PERFORMANCE_ALPHA,
        min_samples=settings.MONITORING_MIN_SAMPLES,
    )


def bars_frame(dataset: Dataset, *, start: dt.date | None = None, end: dt.date | None = None) -> Any:
    import pandas as pd

    bars = dataset.bars.order_by("date")
    if start:
        bars = bars.filter(date__gte=start)
    if end:
        bars = bars.filter(date__lte=end)
    rows = list(bars.values_list("date", "open", "high", "low", "close", "volume"))
    return pd.DataFrame(rows, columns=["date", "open", "high", "low", "close", "volume"]).set_index("date")


def hyper(version: ModelVersion) -> tuple[int, int]:
    """(horizon, breakoutWindow) the version was trained with."""
    params = (version.metadata or {}).get("hyperparameters") or {}
    return int(params.get("horizon", 5)), int(params.get("breakoutWindow", 20))


def _iso(day: Any) -> str | None:
    return day.isoformat()[:10] if day is not None else None


# --- Live accuracy and response times ---------------------------------------------------------


def accuracy_summary(correct_rows: list[dict[str, bool]]) -> dict[str, Any]:
    """Per task: accuracy, correct, count and a 95% Wilson interval; plus their mean (overall)."""
    tasks: dict[str, Any] = {}
    for task in TASKS:
        marks = [bool(row[task]) for row in correct_rows if row and row.get(task) is not None]
        count, hits = len(marks), sum(marks)
        interval = drift.wilson_interval(hits, count)
        tasks[METRIC_OF_TASK[task]] = {
            "accuracy": round(hits / count, 6) if count else None,
            "correct": hits,
            "count": count,
            "ci95": [round(interval[0], 6), round(interval[1], 6)] if interval else None,
        }
    values = [t["accuracy"] for t in tasks.values() if t["accuracy"] is not None]
    overall = round(sum(values) / len(values), 6) if len(values) == len(TASKS) else None
    return {"tasks": tasks, "overallScore": overall, "resolved": len(correct_rows)}


def live_metrics(model: AIModel, active: ModelVersion | None, since: dt.datetime) -> dict[str, Any]:
    """The ledger over [since, now]: live accuracy per version and task, latency percentiles, rate."""
    import numpy as np

    window = Prediction.objects.filter(model=model, created_at__gte=since)
    latencies = np.asarray(list(window.values_list("latency_ms", flat=True)), dtype=np.float64)
    minutes = max((timezone.now() - since).total_seconds() / 60.0, 1e-9)
    rows = list(
        window.filter(resolved_at__isnull=False).values_list("version__version", "correct").order_by("created_at")
    )
    by_version: dict[str, list[dict[str, bool]]] = {}
    for version, correct in rows:
        by_version.setdefault(version, []).append(correct or {})
    pending = window.filter(resolved_at__isnull=True).count()
    active_rows = by_version.get(active.version, []) if active else []
    active_live = accuracy_summary(active_rows)
    reason = None
    if not latencies.size:
        reason = "no predictions were served in this window"
    elif not active_rows:
        reason = (
            f"none of the {pending} prediction(s) of this window is resolved yet: a prediction is resolved "
            "once its horizon's bars have been appended to its dataset"
        )
    return {
        "version": active.version if active else None,
        **active_live,
        "pending": pending,
        "reason": reason,
        "byVersion": {v: accuracy_summary(r) for v, r in sorted(by_version.items())},
        "responseTime": {
            "p50": round(float(np.percentile(latencies, 50)), 3) if latencies.size else None,
            "p95": round(float(np.percentile(latencies, 95)), 3) if latencies.size else None,
            "p99": round(float(np.percentile(latencies, 99)), 3) if latencies.size else None,
            "unit": "ms",
        },
        "requests": int(latencies.size),
        "requestsPerMinute": round(latencies.size / minutes, 4),
        "windowMinutes": round(minutes),
    }


# --- Drift ----------------------------------------------------------------------------------


def _feature_matrix(frame: Any, start: dt.date | None, end: dt.date | None) -> tuple[Any, list[Any]]:
    """Finite feature rows of `frame` with dates in [start, end], and their dates."""
    import numpy as np

    from models_mgmt.engine.features import compute_features

    features = compute_features(frame)
    keep = features.notna().all(axis=1).to_numpy().copy()
    index = np.asarray(features.index)
    if start:
        keep &= index >= start
    if end:
        keep &= index <= end
    return features.to_numpy(dtype=np.float64)[keep], list(index[keep])


def reference_features(version: ModelVersion) -> tuple[Any, dict[str, Any]] | None:
    """The version's training-window features, recomputed from its dataset's bars."""
    window = (version.metadata or {}).get("trainWindow")
    dataset = version.dataset
    if not window or dataset is None:
        return None
    start, end = (dt.date.fromisoformat(d) for d in window)
    frame = bars_frame(dataset, start=start - dt.timedelta(days=HISTORY_DAYS), end=end)
    matrix, dates = _feature_matrix(frame, start, end)
    if not len(matrix):
        return None
    return matrix, {"dataset": dataset.name, "start": _iso(dates[0]), "end": _iso(dates[-1]), "samples": len(dates)}


def _stored_histograms(version: ModelVersion) -> dict[str, tuple[list[float], list[int]]]:
    try:
        summary = json.loads((Path(version.artifact_path) / "feature_summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return {
        name: (column["histogram"]["edges"], column["histogram"]["counts"])
        for name, column in summary.get("features", {}).items()
    }


def current_window(
    model: AIModel, version: ModelVersion, dataset: Dataset | None, start: dt.date | None, end: dt.date | None
) -> tuple[Dataset | None, Any, Any, list[Any]]:
    """(dataset, bars frame with history, feature rows, their dates) of the recent window."""
    dataset = dataset or model.default_dataset or version.dataset
    if dataset is None:
        return None, None, None, []
    end = end or dataset.last_date
    load_from = (start or (end - dt.timedelta(days=int(settings.MONITORING_DRIFT_WINDOW_BARS * 1.6)))) - dt.timedelta(
        days=HISTORY_DAYS
    )
    frame = bars_frame(dataset, start=load_from, end=end)
    matrix, dates = _feature_matrix(frame, start, end)
    if start is None:
        size = settings.MONITORING_DRIFT_WINDOW_BARS
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
    from models_mgmt import serving

    served = serving.session_for(version.model_id, version.version, version.checksum, version.artifact_path)
    return served.run(matrix)


def score_on_window(version: ModelVersion, frame: Any, start: dt.date, end: dt.date) -> dict[str, Any] | None:
    """The version's task accuracies and backtest on the labelled bars of [start, end] of `frame`."""
    import numpy as np

    from models_mgmt import serving
    from models_mgmt.engine.evaluation import backtest, task_metrics
    from models_mgmt.engine.features import compute_features
    from models_mgmt.engine.labels import compute_labels

    horizon, breakout = hyper(version)
    features = compute_features(frame)
    labels = compute_labels(frame, horizon=horizon, breakout_window=breakout)
    index = np.asarray(frame.index)
    usable = (
        features.notna().all(axis=1).to_numpy()
        & labels[list(TASKS)].notna().all(axis=1).to_numpy()
        & labels["next_return"].notna().to_numpy()
        & (index >= start)
        & (index <= end)
    )
    if usable.sum() < 1:
        return None
    try:
        served = serving._load(version.model_id, version.version, version.checksum, version.artifact_path)
    except serving.ServingError:
        return None
    probabilities = served.run(features.to_numpy(dtype=np.float64)[usable])
    truth = labels[list(TASKS)].to_numpy(dtype=np.float64)[usable]
    fee = float(((version.metadata or {}).get("hyperparameters") or {}).get("feePerTrade", 0.0005))
    return {
        "performanceMetrics": task_metrics(probabilities, truth),
        "backtest": backtest(
            probabilities[:, TASKS.index("signal")], labels["next_return"].to_numpy()[usable], fee=fee
        ),
        "samples": int(usable.sum()),
        "start": _iso(index[usable][0]),
        "end": _iso(index[usable][-1]),
    }


def _rollback_candidate(model: AIModel, active: ModelVersion) -> ModelVersion | None:
    return (
        model.versions.filter(status=VersionStatus.DEPRECATED)
        .exclude(artifact_path="")
        .order_by("-activated_at", "-created_at")
        .first()
    )


def drift_report_compute(
    model: AIModel,
    active: ModelVersion | None,
    *,
    dataset: Dataset | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
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
    reference = reference_features(active)
    if reference is None:
        return {**base, "status": "insufficient_data", "verdict": "insufficient_data",
                "detail": f"{active.version} records no training window or dataset, so it has no reference "
                "distribution to compare with."}  # fmt: skip
    ref_matrix, ref_info = reference
    dataset, frame, cur_matrix, dates = current_window(model, active, dataset, start, end)
    if dataset is None or len(dates) < limits.min_samples:
        return {**base, "status": "insufficient_data", "verdict": "insufficient_data", "reference": ref_info,
                "detail": f"The recent window holds {len(dates)} usable bar(s); at least {limits.min_samples} "
                "are needed."}  # fmt: skip
    window = {"dataset": dataset.name, "start": _iso(dates[0]), "end": _iso(dates[-1]), "bars": len(dates)}

    columns = drift.matrix_drift(ref_matrix, cur_matrix, FEATURE_NAMES, limits, _stored_histograms(active))
    data_verdict = drift.verdict(columns, limits)
    prediction: dict[str, Any]
    try:
        ref_out, cur_out = _probabilities(active, ref_matrix), _probabilities(active, cur_matrix)
        outputs = drift.matrix_drift(ref_out, cur_out, TASKS, limits)
        prediction_verdict = drift.verdict(outputs, limits)
        prediction = {"verdict": prediction_verdict.level, "outputs": [o.as_dict() for o in outputs],
                      "source": "the active version run on the window's bars vs on its training window"}  # fmt: skip
    except Exception as exc:  # an unreadable artifact must not hide the data drift
        prediction_verdict = drift.Verdict("stable", 0.0)
        prediction = {"verdict": "unavailable", "outputs": [], "source": f"artifact unreadable: {exc}"}
    performance = _performance(active, limits)

    reasons: list[str] = []
    for column in sorted(columns, key=lambda c: -c.psi):
        if column.level == "drift":
            reasons.append(
                f"feature {column.name} drifted: PSI {column.psi:.2f} >= {limits.psi_alert}, "
                f"KS p={column.ks_pvalue:.1e}, "
                f"mean {column.reference_mean:.4g} in training vs {column.current_mean:.4g} now"
            )
    reasons.insert(0, f"data drift: {len(data_verdict.drifted)} of {len(columns)} features drifted "
                   f"(drift at >= {limits.feature_share:.0%}), {len(data_verdict.warned)} warn")  # fmt: skip
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

    recommendation = "none"
    if performance["degraded"]:
        recommendation = "retrain"
        previous = _rollback_candidate(model, active)
        if previous is not None and frame is not None:
            start_day, end_day = dt.date.fromisoformat(window["start"]), dt.date.fromisoformat(window["end"])
            mine = score_on_window(active, frame, start_day, end_day)
            theirs = score_on_window(previous, frame, start_day, end_day)
            if mine and theirs:
                a, b = mine["performanceMetrics"]["overallScore"], theirs["performanceMetrics"]["overallScore"]
                if b > a:
                    recommendation = f"rollback to {previous.version}"
                    reasons.append(f"{previous.version} scores {b:.3f} on the window's labelled bars vs {a:.3f} "
                                   f"for {active.version}")  # fmt: skip
    elif data_verdict.level == "drift":
        recommendation = "retrain"
    elif data_verdict.level == "warning" or prediction["verdict"] in ("warning", "drift"):
        recommendation = "monitor"

    if performance["degraded"] or data_verdict.level == "drift":
        overall = "drift"
    elif data_verdict.level == "warning" or prediction["verdict"] in ("warning", "drift"):
        overall = "warning"
    else:
        overall = "stable"
    return {
        **base,
        "status": "computed",
        "verdict": overall,
        "driftScore": data_verdict.score,
        "recommendation": recommendation,
        "reasons": reasons,
        "reference": ref_info,
        "window": window,
        "features": [c.as_dict() for c in columns],
        "dataDrift": {"verdict": data_verdict.level, "drifted": data_verdict.drifted, "warned": data_verdict.warned},
        "predictionDrift": prediction,
        "performanceDrift": performance,
        "conditions": {
            "data_drift": data_verdict.level == "drift",
            "prediction_drift": prediction["verdict"] == "drift",
            "performance_drift": bool(performance["degraded"]),
        },
        "detail": f"{active.version}: {overall}; recommendation: {recommendation}.",
    }


# --- Held-out comparison -----------------------------------------------------------------------


def _train_end(version: ModelVersion) -> dt.date | None:
    window = (version.metadata or {}).get("trainWindow")
    return dt.date.fromisoformat(window[1]) if window else None


def held_out_comparison(
    model: AIModel, versions: list[ModelVersion], *, start: dt.date | None = None, end: dt.date | None = None
) -> dict[str, Any]:
    """Every chosen version scored on ONE window of the model's dataset.

    Default window: the bars after the latest training window among the chosen versions (plus the
    horizon, so no training label reaches in) -- unseen by all of them. When the dataset ends too
    soon for that, the latest validation window among them is used and each version says whether
    its training saw those bars (`seenInTraining`).
    """
    limits = thresholds()
    dataset = model.default_dataset or next((v.dataset for v in versions if v.dataset), None)
    scored = [v for v in versions if v.artifact_path and (Path(v.artifact_path) / "model.onnx").is_file()]
    if dataset is None or not scored or dataset.last_date is None:
        return {"status": "unavailable", "detail": "no dataset or no version with an artifact to evaluate",
                "window": None, "results": {}, "deltas": {}}  # fmt: skip
    chosen_by = "request"
    if start is None and end is None:
        ends = [e for e in (_train_end(v) for v in scored) if e is not None]
        horizon = max(hyper(v)[0] for v in scored)
        start = (max(ends) + dt.timedelta(days=int(horizon * 1.6) + 2)) if ends else None
        chosen_by = "after the latest training window"
        labelled = dataset.bars.filter(date__gte=start).count() - horizon if start else 0
        if start is None or labelled < limits.min_samples:
            validation = [(v.metadata or {}).get("validationWindow") for v in scored]
            validation = [w for w in validation if w]
            if not validation:
                return {"status": "unavailable", "detail": "the versions record no training or validation window",
                        "window": None, "results": {}, "deltas": {}}  # fmt: skip
            latest = max(validation, key=lambda w: w[1])
            start, end = dt.date.fromisoformat(latest[0]), dt.date.fromisoformat(latest[1])
            chosen_by = "the latest validation window (no unseen bars after the training windows)"
    if start is None:  # only `end` requested: the window runs from the dataset's first bar
        start = dataset.first_date or end
    end = end or dataset.last_date
    frame = bars_frame(dataset, start=start - dt.timedelta(days=HISTORY_DAYS), end=end + dt.timedelta(days=120))
    results: dict[str, Any] = {}
    for version in scored:
        score = score_on_window(version, frame, start, end)
        if score is None:
            continue
        train_end = _train_end(version)
        results[version.version] = {**score, "seenInTraining": bool(train_end and train_end >= start)}
    reference = next((v.version for v in versions if v.status == VersionStatus.ACTIVE and v.version in results), None)
    reference = reference or next((v.version for v in versions if v.version in results), None)
    deltas: dict[str, Any] = {}
    if reference:
        base = results[reference]
        for name, result in results.items():
            row = {k: _delta(v, base["performanceMetrics"].get(k)) for k, v in result["performanceMetrics"].items()}
            for key in ("cumulativeReturn", "sharpe", "maxDrawdown", "hitRate"):
                row[f"backtest.{key}"] = _delta(result["backtest"].get(key), base["backtest"].get(key))
            deltas[name] = row
    first = next(iter(results.values()), None)
    return {
        "status": "computed" if results else "unavailable",
        "window": {
            "dataset": dataset.name,
            "start": first["start"] if first else _iso(start),
            "end": first["end"] if first else _iso(end),
            "samples": first["samples"] if first else 0,
            "chosenBy": chosen_by,
        },
        "reference": reference,
        "results": results,
        "deltas": deltas,
        "detail": "every version scored on the same bars; deltas are against the reference version",
    }


def _delta(value: Any, base: Any) -> float | None:
    if not isinstance(value, (int, float)) or not isinstance(base, (int, float)):
        return None
    result = float(value) - float(base)
    return round(result, 6) if math.isfinite(result) else None
