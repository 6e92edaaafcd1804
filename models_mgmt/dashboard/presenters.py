"""What the dashboard pages show, formatted: numbers beside their baselines, versions, model rows,
live jobs. Built from models and selectors (never from API output) so templates stay dumb and
nothing is invented: a missing value is shown as missing."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from models_mgmt import selectors
from models_mgmt.choices import LIVE_JOB_STATUSES, LIVE_STUDY_STATUSES, VersionStatus
from models_mgmt.engine.families import FAMILIES, MULTITASK_MLP
from models_mgmt.engine.search import DEFAULT_SPACE, SAMPLERS, tunable
from models_mgmt.models import AIModel, JobCost, ModelVersion
from models_mgmt.monitoring.live import serving_latency
from models_mgmt.permissions import UserLike, model_perms_of

RESPONSE_TIME_WINDOW = dt.timedelta(days=7)

TASK_METRICS = (
    ("accuracy", "Accuracy"),
    ("patternRecognition", "Pattern recognition"),
    ("signalAccuracy", "Signal accuracy"),
    ("riskAssessment", "Risk assessment"),
    ("overallScore", "Overall score"),
)
BACKTEST_ROWS = (
    ("cumulativeReturn", "buyHoldReturn", "Cumulative return", "pct"),
    ("sharpe", "buyHoldSharpe", "Sharpe (annualised)", "num"),
    ("maxDrawdown", "buyHoldMaxDrawdown", "Max drawdown", "pct"),
)
ACTIVATABLE = (VersionStatus.READY, VersionStatus.DEPRECATED)


# --- formatting -----------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def pct(value: Any, digits: int = 1) -> str:
    number = _number(value)
    return "—" if number is None else f"{number * 100:.{digits}f} %"


def num(value: Any, digits: int = 3) -> str:
    number = _number(value)
    return "—" if number is None else f"{number:.{digits}f}"


def ms(value: Any) -> str:
    number = _number(value)
    return "—" if number is None else f"{number:.2f} ms"


def seconds(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "—"
    return f"{number:.1f} s" if number < 120 else f"{number / 60:.1f} min"


def money(amounts: dict[str, Any]) -> str:
    """Amounts per currency (a sum over price cards may hold several): `0.0123 USD`."""
    return " + ".join(f"{amount:.4f} {currency}" for currency, amount in sorted(amounts.items())) or "—"


def job_cost_text(cost: JobCost | None) -> str:
    """A job's cost line: money, then what it is made of."""
    if cost is None:
        return "—"
    gpu = f" · GPU {seconds(cost.gpu_seconds)}" if cost.gpu_seconds else ""
    return (
        f"{money({cost.currency: cost.amount})} · CPU {seconds(cost.cpu_seconds)} in {seconds(cost.wall_seconds)}"
        f"{gpu}{'' if cost.final else ' (so far)'}"
    )


def cost_total_text(total: selectors.CostTotal | None) -> str:
    if total is None or not total.jobs:
        return "—"
    return f"{money(total.amounts)} over {total.jobs} job{'s' if total.jobs != 1 else ''}"


MODEL_COST_DAYS = 30


def model_cost_text(user: UserLike, model: AIModel | None) -> str:
    """What the model's jobs (trials included) that started in the last 30 days cost."""
    if model is None:
        return "—"
    now = timezone.now()
    total = selectors.ai_model_cost(user, model.name, now - dt.timedelta(days=MODEL_COST_DAYS), now)
    return cost_total_text(total) if total.jobs else "nothing yet"


def _trend(delta: float | None) -> str:
    return "" if delta is None else ("up" if delta > 0.0005 else "down" if delta < -0.0005 else "flat")


def versus(value: Any, baseline: Any) -> dict[str, Any]:
    """A metric beside its baseline, with the difference in percentage points."""
    v, b = _number(value), _number(baseline)
    delta = None if v is None or b is None else (v - b) * 100
    return {
        "value": pct(v),
        "baseline": pct(b) if b is not None else "no baseline",
        "delta": "" if delta is None else f"{delta:+.1f} pt",
        "trend": "" if delta is None else ("up" if delta > 0.05 else "down" if delta < -0.05 else "flat"),
    }


# --- context builders -----------------------------------------------------------------------------


def edge(version: ModelVersion | None, metric: str) -> float | None:
    """The version's validation `metric` minus its majority-class baseline (the model's edge)."""
    if version is None:
        return None
    value = version.accuracy if metric == "accuracy" else (version.performance_metrics or {}).get(metric)
    baseline = (version.baselines or {}).get("overallScore" if metric == "accuracy" else metric)
    v, b = _number(value), _number(baseline)
    return None if v is None or b is None else v - b


def points(delta: float | None) -> str:
    return "" if delta is None else f"{delta * 100:+.1f} pt vs baseline"


def response_time(model: AIModel, active: ModelVersion | None) -> dict[str, str]:
    """Serving latency on real requests when there was traffic; else the engine's inference time,
    labelled as such (it leaves out features, the database and the HTTP stack)."""
    served = serving_latency(model, timezone.now() - RESPONSE_TIME_WINDOW)
    if served["p50"] is not None:
        return {"value": ms(served["p50"]), "basis": f"serving p50 of {served['requests']} requests in 7 days"}
    if active is not None and active.response_time_ms is not None:
        return {"value": ms(active.response_time_ms), "basis": "engine inference only (no requests in 7 days)"}
    return {"value": "—", "basis": ""}


def model_rows(user: UserLike) -> list[dict[str, Any]]:
    rows = []
    for model in selectors.ai_model_list(user):
        active = selectors.active_version_of(model)
        job = selectors.live_job_of(model)
        rows.append(
            {
                "name": model.name,
                "family": model.family,
                "base_model": model.base_model,
                "description": model.description,
                "status": "training" if job else ("active" if active else "idle"),
                "active_version": active.version if active else None,
                "accuracy": pct(active.accuracy) if active else "—",
                "accuracy_value": active.accuracy if active else None,
                "accuracy_edge": points(edge(active, "accuracy")),
                "accuracy_edge_value": edge(active, "accuracy"),
                "signal": pct((active.performance_metrics or {}).get("signalAccuracy")) if active else "—",
                "signal_edge": points(edge(active, "signalAccuracy")),
                "signal_trend": _trend(edge(active, "signalAccuracy")),
                "response_time": response_time(model, active),
                "job": job,
                "perms": [c.removesuffix("_aimodel") for c in model_perms_of(user, model)],
            }
        )
    return rows


def average(values: list[Any]) -> float | None:
    numbers = [n for n in (_number(v) for v in values) if n is not None]
    return sum(numbers) / len(numbers) if numbers else None


def selected_row(request: HttpRequest, rows: list[dict[str, Any]], prefer: str | None = None) -> dict[str, Any] | None:
    wanted = request.GET.get("model")
    for row in rows:
        if row["name"] == wanted:
            return row
    if prefer:
        for row in rows:
            if prefer in row["perms"]:
                return row
    return rows[0] if rows else None


def live_jobs(user: UserLike) -> list[dict[str, Any]]:
    jobs = selectors.training_job_list(user).filter(status__in=LIVE_JOB_STATUSES)[:50]
    return [
        {
            "id": job.pk,
            "model": job.model.name,
            "status": job.status,
            "progress": round(job.progress or 0),
            "epoch": job.epoch,
            "total_epochs": job.total_epochs,
            "created_by": job.created_by.username if job.created_by else "—",
        }
        for job in jobs
    ]


def version_view(
    version: ModelVersion, can_activate: bool, lineage_cost: selectors.CostTotal | None = None
) -> dict[str, Any]:
    """One version as the Versions tab shows it: each metric beside its baseline."""
    perf = version.performance_metrics or {}
    baselines = version.baselines or {}
    metadata = version.metadata or {}
    backtest = version.backtest or {}
    metrics = []
    for key, label in TASK_METRICS:
        value = version.accuracy if key == "accuracy" else perf.get(key)
        # accuracy is defined as overallScore, so its naive baseline is overallScore's.
        baseline = baselines.get("overallScore" if key == "accuracy" else key)
        metrics.append({"key": key, "label": label, **versus(value, baseline)})
    backtest_rows = [
        {
            "label": label,
            "value": (pct if kind == "pct" else num)(backtest.get(key)),
            "baseline": (pct if kind == "pct" else num)(backtest.get(base)),
        }
        for key, base, label, kind in BACKTEST_ROWS
    ]
    lineage = metadata.get("lineage") or {}
    return {
        "version": version.version,
        "status": version.status,
        "trained": version.trained_at.isoformat() if version.trained_at else None,
        "metrics": metrics,
        "response_time": ms(version.response_time_ms),
        "backtest": backtest_rows,
        "hit_rate": pct(backtest.get("hitRate")),
        "trades": backtest.get("trades", "—"),
        "has_backtest": bool(backtest),
        "epochs": metadata.get("epochs", "—"),
        "best_epoch": metadata.get("bestEpoch", "—"),
        "loss": num(metadata.get("loss"), 4),
        "validation_accuracy": pct(metadata.get("validationAccuracy")),
        "duration": seconds(metadata.get("trainingDuration")),
        "training_data_size": version.training_data_size,
        "hyperparameters": sorted((metadata.get("hyperparameters") or {}).items()),
        "parent": version.parent.version if version.parent else "— (from scratch)",
        "dataset": version.dataset.name if version.dataset else "—",
        "train_window": " to ".join(metadata.get("trainWindow") or []) or "—",
        "validation_window": " to ".join(metadata.get("validationWindow") or []) or "—",
        "job_id": lineage.get("jobId"),
        "code_revision": lineage.get("codeRevision"),
        "checksum": (version.checksum or "")[:12],
        "walk_forward": walk_forward_view(metadata.get("walkForward")),
        "can_activate": can_activate and version.status in ACTIVATABLE,
        "lineage_cost": cost_total_text(lineage_cost),
    }


def _mean_sd(mean: Any, sd: Any) -> str:
    m, s = _number(mean), _number(sd)
    return "—" if m is None else f"{m * 100:.1f} % ± {(s or 0.0) * 100:.1f} pt"


def walk_forward_view(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """A walk-forward report (engine/walk_forward.py) as the Versions tab shows it: per metric the
    folds' mean ± sd beside the mean baseline and the edge; per fold its test window and scores."""
    if not report:
        return None
    rows = []
    for key, label in TASK_METRICS[1:]:
        edge_value = _number((report.get("edge") or {}).get(key))
        rows.append(
            {
                "label": label,
                "mean": _mean_sd((report.get("mean") or {}).get(key), (report.get("sd") or {}).get(key)),
                "baseline": pct((report.get("baselineMean") or {}).get(key)),
                "edge": "" if edge_value is None else f"{edge_value * 100:+.1f} pt",
                "trend": _trend(edge_value),
            }
        )
    folds = [
        {
            "fold": fold.get("fold"),
            "test_window": " to ".join(fold.get("testWindow") or []),
            "train_samples": fold.get("trainSamples"),
            **versus(
                (fold.get("metrics") or {}).get("overallScore"), (fold.get("baselines") or {}).get("overallScore")
            ),
        }
        for fold in report.get("folds") or []
    ]
    return {
        "count": report.get("foldCount", len(folds)),
        "purge": report.get("purgeBars"),
        "holdout": " to ".join(report.get("holdoutWindow") or []) or "—",
        "rows": rows,
        "folds": folds,
    }


def search_view(user: UserLike, model: AIModel | None) -> dict[str, Any] | None:
    """The Search section: the default space to start from and the model's latest study (if any)."""
    if model is None or model.family != MULTITASK_MLP.name:
        return None
    latest = selectors.study_list(user, model.name).first()
    return {
        "default_space": json.dumps(DEFAULT_SPACE, indent=2),
        "tunable": ", ".join(tunable(model.family)),
        "samplers": SAMPLERS,
        "study_id": latest.pk if latest else "",
        "study_live": bool(latest and latest.status in LIVE_STUDY_STATUSES),
    }


def chart_series(versions: list[ModelVersion]) -> dict[str, Any]:
    """Metrics across versions, oldest first, as plain numbers for the chart (null stays null)."""
    ordered = list(reversed(versions))
    series: dict[str, list[float | None]] = {}
    for key, label in TASK_METRICS:
        values = [_number(v.accuracy if key == "accuracy" else (v.performance_metrics or {}).get(key)) for v in ordered]
        series[label] = values
    return {"labels": [v.version for v in ordered], "series": series}


def finetune_defaults(model: AIModel | None) -> dict[str, Any]:
    family = FAMILIES.get(model.family) if model else None
    own = family.config_defaults if family else {}  # llm-lora: a few epochs, a LoRA learning rate
    epochs = own.get("epochs", settings.DEFAULT_TRAINING_EPOCHS)
    return {
        "epochs": epochs,
        "learningRate": own.get("learningRate", settings.DEFAULT_LEARNING_RATE),
        "batchSize": own.get("batchSize", settings.DEFAULT_BATCH_SIZE),
        "validationSplit": settings.DEFAULT_VALIDATION_SPLIT,
        "earlyStoppingPatience": min(settings.DEFAULT_EARLY_STOPPING_PATIENCE, epochs),
        "dataset": (model.default_dataset.name if model and model.default_dataset else settings.DEFAULT_DATASET),
    }


def hyperparameter_fields(family_name: str) -> list[dict[str, Any]]:
    family = FAMILIES.get(family_name)
    if family is None:
        return []
    fields = []
    for key, param in family.params.items():
        if param.kind is list:
            kind, value = "list", ", ".join(str(v) for v in param.default)
        elif param.kind is bool:
            kind, value = "bool", param.default
        else:
            kind, value = ("int" if param.kind is int else "float"), param.default
        fields.append(
            {
                "key": key,
                "kind": kind,
                "value": value,
                "help": param.help,
                "min": param.minimum,
                "max": param.maximum,
                "step": "1" if kind == "int" else "any",
            }
        )
    return fields


def component(label: str, state: dict[str, Any]) -> dict[str, Any]:
    detail = ", ".join(f"{k}: {v}" for k, v in state.items() if k not in ("status", "latencyMs"))
    latency = _number(state.get("latencyMs"))
    return {"name": label, "status": state.get("status", "unknown"), "detail": detail,
            "latency": "—" if latency is None else f"{latency:.1f} ms"}  # fmt: skip
