"""Predictions: serve the active version on a window of bars and log it in the ledger; resolve
logged predictions once their horizon's bars have arrived."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from django.db.models import F
from django.utils import timezone

from models_mgmt import selectors
from models_mgmt.choices import PERM_VIEW, VersionStatus
from models_mgmt.engine.families import LLM_LORA
from models_mgmt.engine.labels import compute_labels
from models_mgmt.errors import Conflict, InvalidInput, Unavailable
from models_mgmt.models import AIModel, Dataset, Prediction
from models_mgmt.permissions import UserLike, require_model_perm

from . import ollama, serving
from .windows import HISTORY_DAYS, hyper

logger = logging.getLogger(__name__)
OUTPUT_LABELS = {"signal": ("down", "up"), "risk": ("normal", "high"), "pattern": ("range", "breakout")}


def _frame(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd  # heavy: only processes that serve predictions load pandas

    frame = pd.DataFrame(rows, columns=["date", "open", "high", "low", "close", "volume"]).set_index("date")
    return frame.astype(float)


def prediction_make(
    *,
    actor: UserLike,
    model: AIModel,
    bars: list[dict[str, Any]] | None = None,
    dataset: Dataset | None = None,
    as_of: dt.date | None = None,
) -> dict[str, Any]:
    """Serve the active version on a window of bars (given, or a dataset's up to `as_of`) and log it.

    `dataset` with `bars` names whose later bars resolve the prediction (default: the model's
    dataset). Raises InvalidInput for a window that cannot produce features.
    """
    import numpy as np  # heavy: only processes that serve predictions load numpy

    started = time.perf_counter()
    require_model_perm(actor, model, PERM_VIEW, "request predictions")
    active = model.versions.filter(status=VersionStatus.ACTIVE).first()
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
        frame, source, field = _frame(bars), "bars", "bars"
        resolve_in = dataset or model.default_dataset or active.dataset
    else:
        assert dataset is not None and as_of is not None
        history = dt.timedelta(days=int((serving.LOOKBACK_BARS + 200) * 1.6))
        frame, source, field = (
            selectors.dataset_bars_frame(dataset, start=as_of - history, end=as_of),
            "dataset",
            "asOf",
        )
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


def predictions_resolve(*, dataset_id: int | None = None) -> int:
    """Resolve every prediction whose horizon's bars have arrived in its dataset. Returns how many.

    Labels are computed exactly as in training (`engine.labels`), on the dataset's bars: a
    prediction of bar t is resolved once bar t+H exists. Until then it stays pending, however
    late the bars are.
    """
    import numpy as np  # heavy: only processes that resolve predictions load numpy

    pending = Prediction.objects.filter(
        resolved_at__isnull=True, dataset__isnull=False, due_on__lte=F("dataset__last_date")
    )
    if dataset_id is not None:
        pending = pending.filter(dataset_id=dataset_id)
    resolved = 0
    for ds_id in sorted(set(pending.values_list("dataset_id", flat=True))):
        rows = list(pending.filter(dataset_id=ds_id).order_by("as_of"))
        dataset = Dataset.objects.get(pk=ds_id)
        frame = selectors.dataset_bars_frame(dataset, start=rows[0].as_of - dt.timedelta(days=HISTORY_DAYS))
        index = np.asarray(frame.index)
        labels_by: dict[tuple[int, int], Any] = {}
        now, done = timezone.now(), []
        for prediction in rows:
            key = (prediction.horizon, prediction.breakout_window)
            if key not in labels_by:
                labels_by[key] = compute_labels(frame, horizon=key[0], breakout_window=key[1])
            labels = labels_by[key]
            position = int(np.searchsorted(index, np.asarray(prediction.as_of), side="right")) - 1
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
