from __future__ import annotations

import logging
from typing import Any

import django_q.tasks
from django.conf import settings
from django.db import IntegrityError, transaction

from models_mgmt.choices import DatasetSource
from models_mgmt.engine import bars as engine_bars
from models_mgmt.errors import Conflict, InvalidInput
from models_mgmt.models import Bar, Dataset
from models_mgmt.permissions import UserLike, require_global_perm

from .audit import audit_record

logger = logging.getLogger(__name__)
RESOLVE_TASK = "models_mgmt.tasks.predictions_resolve"
WARM_TASK = "models_mgmt.tasks.drift_reports_warm"  # new bars: a new drift report, computed by a worker


def _store_bars(dataset: Dataset, frame: Any) -> None:
    Bar.objects.bulk_create(
        [
            Bar(
                dataset=dataset, date=day, open=row.open, high=row.high, low=row.low, close=row.close, volume=row.volume
            )
            for day, row in zip(frame.index, frame.itertuples(index=False), strict=True)
        ],
        batch_size=2000,
    )
    dataset.bar_count = len(frame)
    dataset.first_date = frame.index[0] if len(frame) else None
    dataset.last_date = frame.index[-1] if len(frame) else None
    dataset.save(update_fields=["bar_count", "first_date", "last_date"])


def _snapshot(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "symbol": dataset.symbol,
        "bars": dataset.bar_count,
        "firstDate": str(dataset.first_date) if dataset.first_date else None,
        "lastDate": str(dataset.last_date) if dataset.last_date else None,
    }


def dataset_create_from_csv(
    *, actor: UserLike, name: str, symbol: str, timeframe: str, description: str, data: bytes
) -> Dataset:
    """Validate a CSV completely, then store it in one transaction: all bars or nothing."""
    uploader = require_global_perm(actor, "add_dataset", "You may not upload datasets (the maintainer role may).")
    try:
        frame = engine_bars.parse_csv(data, max_bytes=settings.CSV_UPLOAD_MAX_BYTES)
    except engine_bars.BarsError as exc:
        raise InvalidInput(
            exc.message,
            fields={"file": {"message": exc.message, "total": exc.total, "errors": [e.as_dict() for e in exc.errors]}},
        ) from exc
    try:
        with transaction.atomic():
            dataset = Dataset.objects.create(
                name=name,
                symbol=symbol,
                timeframe=timeframe,
                description=description,
                source=DatasetSource.UPLOAD,
                created_by=uploader,
            )
            _store_bars(dataset, frame)
            audit_record(actor=actor, action="dataset.created", obj=dataset, after=_snapshot(dataset))
    except IntegrityError as exc:
        raise InvalidInput("Name taken.", fields={"name": ["a dataset with this name already exists"]}) from exc
    return dataset


@transaction.atomic
def dataset_import_builtin(*, name: str) -> Dataset:
    """Load a built-in data set from the `arch` package; a second call changes nothing."""
    existing = Dataset.objects.filter(name=name).first()
    if existing is not None:
        return existing
    spec = engine_bars.BUILTIN_DATASETS[name]
    dataset = Dataset.objects.create(
        name=name,
        symbol=spec.symbol,
        timeframe="1d",
        description=spec.description,
        licence=engine_bars.BUILTIN_LICENCE,
        source=DatasetSource.BUILTIN,
    )
    _store_bars(dataset, engine_bars.load_builtin(name))
    audit_record(actor=None, action="dataset.imported", obj=dataset, after=_snapshot(dataset))
    return dataset


def dataset_bars_append(*, actor: UserLike, dataset: Dataset, bars: list[dict[str, Any]]) -> dict[str, Any]:
    """Append validated bars; a bar whose date exists with the same values changes nothing, with
    other values it is refused (409), and new dates must come after the dataset's last bar."""
    require_global_perm(actor, "change_dataset", "You may not change datasets (the maintainer role may).")
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
        django_q.tasks.async_task(RESOLVE_TASK, dataset_id, group="monitoring")
        django_q.tasks.async_task(WARM_TASK, dataset_id=dataset_id, group="monitoring")
    except Exception:  # the schedules resolve and check them anyway
        logger.exception("could not enqueue prediction resolution for dataset %s", dataset_id)
