from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from models_mgmt.choices import DatasetSource
from models_mgmt.engine import bars as engine_bars
from models_mgmt.engine import timeframes
from models_mgmt.errors import Conflict, InvalidInput
from models_mgmt.models import Bar, Dataset
from models_mgmt.permissions import UserLike, require_global_perm

from .audit import audit_record
from .queue import RESOLVE_PREDICTIONS, WARM_DRIFT_REPORTS, task_enqueue

logger = logging.getLogger(__name__)


def _store_bars(dataset: Dataset, frame: Any) -> None:
    """Bars of a frame indexed by bar key (a date, or a timestamp) under their UTC timestamps."""
    stamps = [timeframes.bar_timestamp(key) for key in frame.index]
    Bar.objects.bulk_create(
        [
            Bar(
                dataset=dataset,
                timestamp=stamp,
                open=row.open,
                high=row.high,
                low=row.low,
                close=row.close,
                volume=row.volume,
            )
            for stamp, row in zip(stamps, frame.itertuples(index=False), strict=True)
        ],
        batch_size=2000,
    )
    dataset.bar_count = len(frame)
    dataset.first_bar_at = stamps[0] if stamps else None
    dataset.last_bar_at = stamps[-1] if stamps else None
    dataset.save(update_fields=["bar_count", "first_bar_at", "last_bar_at"])


def _shown(dataset: Dataset, stamp: dt.datetime | None) -> str | None:
    return timeframes.format_time(timeframes.timeframe(dataset.timeframe), stamp) if stamp else None


def _snapshot(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "symbol": dataset.symbol,
        "timeframe": dataset.timeframe,
        "bars": dataset.bar_count,
        "firstDate": _shown(dataset, dataset.first_bar_at),
        "lastDate": _shown(dataset, dataset.last_bar_at),
    }


def dataset_create_from_csv(
    *, actor: UserLike, name: str, symbol: str, timeframe: str, description: str, data: bytes
) -> Dataset:
    """Validate a CSV completely, then store it in one transaction: all bars or nothing."""
    uploader = require_global_perm(actor, "add_dataset", "You may not upload datasets (the maintainer role may).")
    try:
        parsed = engine_bars.parse_csv(data, max_bytes=settings.CSV_UPLOAD_MAX_BYTES, timeframe=timeframe)
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
                columns=parsed.recognised,
            )
            _store_bars(dataset, parsed.frame)
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


def _bar_times(dataset: Dataset, bars: list[dict[str, Any]]) -> list[dt.datetime]:
    """Each bar's stored timestamp, keyed as the dataset's timeframe keys bars: a daily dataset
    takes `date` (or a timestamp at 00:00 UTC), an intraday one `timestamp`."""
    tf = timeframes.timeframe(dataset.timeframe)
    stamps: list[dt.datetime] = []
    wrong: list[str] = []
    for position, bar in enumerate(bars):
        day, stamp = bar.get("date"), bar.get("timestamp")
        if tf.intraday and stamp is None:
            wrong.append(f"bar {position}: dataset '{dataset.name}' holds {tf.name} bars; give `timestamp` (ISO 8601)")
        elif not tf.intraday and stamp is not None and stamp != timeframes.bar_timestamp(stamp.date()):
            wrong.append(
                f"bar {position}: dataset '{dataset.name}' holds {tf.name} bars keyed by date; give `date` (YYYY-MM-DD)"
            )
        else:
            stamps.append(timeframes.bar_timestamp(stamp if stamp is not None else day))
    if wrong:
        raise InvalidInput("Bars do not match the dataset's timeframe.", fields={"bars": wrong[:20]})
    return stamps


def dataset_bars_append(*, actor: UserLike, dataset: Dataset, bars: list[dict[str, Any]]) -> dict[str, Any]:
    """Append validated bars; a bar whose time exists with the same values changes nothing, with
    other values it is refused (409), and new bars must come after the dataset's last bar."""
    require_global_perm(actor, "change_dataset", "You may not change datasets (the maintainer role may).")
    stamps = _bar_times(dataset, bars)
    values = ("open", "high", "low", "close", "volume")
    with transaction.atomic():
        dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
        existing = {b.timestamp: b for b in dataset.bars.filter(timestamp__in=stamps)}
        conflicts, unchanged, new = [], 0, []
        for stamp, bar in zip(stamps, bars, strict=True):
            old = existing.get(stamp)
            if old is None:
                new.append(Bar(dataset=dataset, timestamp=stamp, **{k: bar[k] for k in values}))
            elif all(abs(getattr(old, k) - bar[k]) <= 1e-9 * max(1.0, abs(bar[k])) for k in values):
                unchanged += 1
            else:
                conflicts.append(_shown(dataset, stamp))
        if conflicts:
            raise Conflict(
                f"{len(conflicts)} bar(s) exist with other values: {', '.join(map(str, conflicts[:20]))}; "
                "nothing was stored.",
                code="bar_conflict",
            )
        last = dataset.last_bar_at
        early = [str(_shown(dataset, b.timestamp)) for b in new if last and b.timestamp <= last]
        if early:
            raise InvalidInput(
                "Bars can only be appended after the last bar.",
                fields={"bars": [f"{', '.join(early[:20])} are not after the last bar ({_shown(dataset, last)})"]},
            )
        Bar.objects.bulk_create(new)
        before = {"bars": dataset.bar_count, "lastDate": _shown(dataset, last)}
        if new:
            dataset.bar_count += len(new)
            dataset.first_bar_at = dataset.first_bar_at or min(b.timestamp for b in new)
            dataset.last_bar_at = max(b.timestamp for b in new)
            dataset.save(update_fields=["bar_count", "first_bar_at", "last_bar_at"])
            audit_record(
                actor=actor,
                action="dataset.bars_appended",
                obj=dataset,
                before=before,
                after={"bars": dataset.bar_count, "lastDate": _shown(dataset, dataset.last_bar_at), "added": len(new)},
            )
            transaction.on_commit(lambda: _enqueue_resolution(dataset.pk))
    return {
        "dataset": dataset.name,
        "added": len(new),
        "unchanged": unchanged,
        "barCount": dataset.bar_count,
        "lastDate": dataset.last_date.isoformat() if dataset.last_date else None,
        "lastTimestamp": timeframes.format_key(dataset.last_bar_at) if dataset.last_bar_at else None,
    }


def _enqueue_resolution(dataset_id: int) -> None:
    """New bars: resolve the predictions they complete, and recompute the drift reports that read them."""
    cluster = settings.MONITORING_CLUSTER
    task_enqueue(
        RESOLVE_PREDICTIONS, dataset_id, cluster=cluster, group="monitoring", why_later="the schedule resolves them"
    )
    task_enqueue(
        WARM_DRIFT_REPORTS,
        dataset_id=dataset_id,
        cluster=cluster,
        group="monitoring",
        why_later="GET drift computes the report",
    )
