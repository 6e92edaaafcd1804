from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from models_mgmt.choices import DatasetSource
from models_mgmt.engine import bars as engine_bars
from models_mgmt.models import Bar, Dataset

from .audit import audit_record
from .errors import Forbidden, InvalidInput


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
    *, actor: Any, name: str, symbol: str, timeframe: str, description: str, data: bytes
) -> Dataset:
    """Validate a CSV completely, then store it in one transaction: all bars or nothing."""
    if not actor.has_perm("models_mgmt.add_dataset"):
        raise Forbidden("You may not upload datasets (the maintainer role may).")
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
                created_by=actor,
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
