"""Predictions: serve the active version on a window of bars and log it in the ledger; resolve
logged predictions once their horizon's bars have arrived."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from itertools import pairwise
from typing import Any

from django.db.models import F
from django.utils import timezone

from models_mgmt import selectors
from models_mgmt.engine import timeframes
from models_mgmt.engine.families import LLM_LORA
from models_mgmt.engine.labels import compute_labels
from models_mgmt.errors import Conflict, InvalidInput, Unavailable
from models_mgmt.models import AIModel, Dataset, Prediction

from . import ollama, serving
from .windows import OHLCV, BarWindow, frame_with_history, hyper, window_up_to

logger = logging.getLogger(__name__)
OUTPUT_LABELS = {"signal": ("down", "up"), "risk": ("normal", "high"), "pattern": ("range", "breakout")}


def _window(rows: list[dict[str, Any]]) -> BarWindow:
    """Submitted bars (validated: all keyed by `date`, or all by `timestamp`) as a BarWindow."""
    by = "timestamp" if "timestamp" in rows[0] else "date"
    keys = [timeframes.as_utc(r[by]) if by == "timestamp" else r[by] for r in rows]
    return BarWindow.of_rows(keys, [tuple(r[c] for c in OHLCV) for r in rows])


def _timeframe_of_bars(keys: list[dt.date | dt.datetime], resolve_in: Dataset | None) -> timeframes.Timeframe:
    """The timeframe submitted bars are in: the resolving dataset's (which they must match), else
    daily for dates and the most common spacing for timestamps (the shortest, on a tie)."""
    intraday = isinstance(keys[0], dt.datetime)
    if resolve_in is not None:
        tf = timeframes.timeframe(resolve_in.timeframe)
        if tf.intraday != intraday:
            give = "`timestamp` (ISO 8601)" if tf.intraday else "`date` (YYYY-MM-DD)"
            raise InvalidInput(
                "Bars do not match the dataset that resolves them.",
                fields={"bars": [f"dataset '{resolve_in.name}' holds {tf.name} bars; give each bar a {give}"]},
            )
        return tf
    if not intraday:
        return timeframes.DAILY
    gaps = Counter(later - earlier for earlier, later in pairwise(keys))
    most = max(gaps.values(), default=0)
    minutes = round(min(g for g, n in gaps.items() if n == most).total_seconds() / 60) if gaps else 60
    return next((t for t in timeframes.TIMEFRAMES.values() if t.minutes == minutes), timeframes.Timeframe("", minutes))


def prediction_make(
    *,
    model: AIModel,
    bars: list[dict[str, Any]] | None = None,
    dataset: Dataset | None = None,
    as_of: dt.date | dt.datetime | None = None,
    show_shadow: bool = False,
) -> dict[str, Any]:
    """Serve the active version on a window of bars (given, or a dataset's up to `as_of`) and log it.

    `model` is what `selectors.ai_model_to_serve(user, name)` returned: that lookup is the view
    permission check, made once (no guardian check per request here), and it brought the active
    version. `dataset` with `bars` names whose later bars resolve the prediction (default: the
    model's dataset). Raises InvalidInput for a window that cannot produce features. No pandas:
    the window is numpy arrays, the features are its last row (`serving.feature_row`).

    With a running shadow experiment (`active.shadow_*`, brought by the same lookup) the challenger
    is run on the same feature row after the champion answered; its outputs go to the same ledger
    row, and into the response only with `show_shadow`. `latencyMs` stays the champion's.
    """
    started = time.perf_counter()
    active = selectors.active_version_of(model)
    if active is None:
        raise Conflict(f"AI model '{model.name}' has no active version to serve.", code="no_active_version")
    served: serving.ServedVersion | ollama.OllamaServedVersion
    if model.family == LLM_LORA.name:
        served = ollama.served_llm(model, active)
    else:
        try:
            served = serving.serve_active(model.pk, active.version, active.checksum, active.artifact_path)
        except serving.ServingError as exc:
            raise Unavailable(str(exc), code="model_unavailable") from exc

    if bars is not None:
        window, source, field = _window(bars), "bars", "bars"
        resolve_in = dataset or model.default_dataset or active.dataset
        tf = _timeframe_of_bars(window.keys, resolve_in)
    else:
        assert dataset is not None and as_of is not None
        window, source, field = window_up_to(dataset, as_of, serving.WINDOW_BARS), "dataset", "asOf"
        resolve_in, tf = dataset, timeframes.timeframe(dataset.timeframe)
        if len(window) == 0:
            raise InvalidInput(
                "No bars up to asOf.",
                fields={"asOf": [f"dataset '{dataset.name}' has no bars on or before {timeframes.format_key(as_of)}"]},
            )
    try:
        features = serving.feature_row(window)
    except serving.WindowError as exc:
        raise InvalidInput(str(exc), fields={field: [str(exc)]}) from exc
    probabilities = served.run(features.reshape(1, -1))[0]
    latency_ms = (time.perf_counter() - started) * 1000

    horizon, breakout = hyper(active)
    last = window.keys[-1]
    due_on = timeframes.earliest_due(tf, last, horizon)
    outputs = {task: round(float(p), 6) for task, p in zip(served.tasks, probabilities, strict=True)}
    experiment_id, shadow_outputs = _shadow(model, active, features)
    # The ledger row is one INSERT, committed (autocommit: no transaction around the request)
    # before this returns, so before the 200 is sent: a 200 implies the row exists. Nothing after
    # it can fail the request, and no batching or after-response write can lose it.
    prediction = Prediction.objects.create(
        model=model,
        version=active,
        dataset=resolve_in,
        source=source,
        as_of=timeframes.bar_timestamp(last),
        horizon=horizon,
        breakout_window=breakout,
        due_on=due_on,
        features=[round(float(x), 8) for x in features],
        outputs=outputs,
        latency_ms=round(latency_ms, 4),
        experiment_id=experiment_id,
        challenger_outputs=shadow_outputs,
    )
    answer = {
        "predictionId": prediction.pk,
        "modelName": model.name,
        "version": served.version,
        "asOf": timeframes.format_key(last),
        "horizon": horizon,
        "horizonDueOn": timeframes.format_time(tf, due_on),
        "outputs": {
            task: {"probability": p, "prediction": OUTPUT_LABELS.get(task, ("no", "yes"))[int(p > 0.5)]}
            for task, p in outputs.items()
        },
        "latencyMs": round(latency_ms, 3),
        "resolvesAgainst": resolve_in.name if resolve_in else None,
    }
    if show_shadow:
        answer["shadow"] = (
            {
                "experimentId": experiment_id,
                "version": getattr(active, "shadow_version", None),
                "outputs": shadow_outputs,
            }
            if experiment_id is not None
            else None
        )
    return answer


def _shadow(model: AIModel, active: Any, features: Any) -> tuple[int | None, dict[str, float] | None]:
    """(experiment id, the challenger's {task: probability}) when an experiment runs, else Nones.
    A challenger that cannot be served logs a warning and leaves the champion's answer alone."""
    experiment_id = getattr(active, "shadow_experiment_id", None)
    if experiment_id is None or model.family == LLM_LORA.name:
        serving.release_shadow(model.pk)  # an experiment that ended: its challenger's session goes
        return None, None
    try:
        challenger = serving.serve_shadow(
            model.pk, active.shadow_version, active.shadow_checksum or "", active.shadow_artifact_path or ""
        )
        probabilities = challenger.run(features.reshape(1, -1))[0]
    except serving.ServingError as exc:
        logger.warning("experiment %s: the challenger was not scored (%s)", experiment_id, exc)
        return experiment_id, None
    return experiment_id, {task: round(float(p), 6) for task, p in zip(challenger.tasks, probabilities, strict=True)}


def predictions_resolve(*, dataset_id: int | None = None) -> int:
    """Resolve every prediction whose horizon's bars have arrived in its dataset. Returns how many.

    Labels are computed exactly as in training (`engine.labels`), on the dataset's bars: a
    prediction of bar t is resolved once bar t+H exists, H counted in bars of the dataset's
    timeframe. Until then it stays pending, however late the bars are.
    """
    import numpy as np  # heavy: only processes that resolve predictions load numpy
    import pandas as pd  # heavy: only processes that resolve predictions load pandas

    pending = Prediction.objects.filter(
        resolved_at__isnull=True, dataset__isnull=False, due_on__lte=F("dataset__last_bar_at")
    )
    if dataset_id is not None:
        pending = pending.filter(dataset_id=dataset_id)
    resolved = 0
    for ds_id in sorted(set(pending.values_list("dataset_id", flat=True))):
        rows = list(pending.filter(dataset_id=ds_id).order_by("as_of"))
        dataset = Dataset.objects.get(pk=ds_id)
        frame = frame_with_history(dataset, rows[0].as_of)
        index = timeframes.utc_index(frame.index)
        labels_by: dict[tuple[int, int], Any] = {}
        now, done = timezone.now(), []
        for prediction in rows:
            key = (prediction.horizon, prediction.breakout_window)
            if key not in labels_by:
                labels_by[key] = compute_labels(frame, horizon=key[0], breakout_window=key[1])
            labels = labels_by[key]
            position = int(index.searchsorted(pd.Timestamp(prediction.as_of), side="right")) - 1
            if position < 0 or position + prediction.horizon >= len(index):
                continue
            row = labels.iloc[position]
            truth = {task: int(row[task]) for task in prediction.outputs if task in row and np.isfinite(row[task])}
            if "signal" not in truth:
                continue
            prediction.labels = truth
            prediction.correct = {t: (prediction.outputs[t] > 0.5) == bool(v) for t, v in truth.items()}
            prediction.horizon_end = index[position + prediction.horizon].to_pydatetime()
            prediction.resolved_at = now
            done.append(prediction)
        Prediction.objects.bulk_update(done, ["labels", "correct", "horizon_end", "resolved_at"], batch_size=500)
        resolved += len(done)
    return resolved
