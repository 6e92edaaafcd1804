"""Bars keyed by a timezone-aware timestamp, so intraday timeframes (1m .. 4h) can be stored.

Forward: every existing bar (all daily until now) moves from its `date` to `timestamp` = 00:00 UTC
of that date; a dataset's first/last dates and a prediction's `as_of`, `due_on` and `horizon_end`
move the same way (through the ORM, so each database gets its own datetime format).

Reverse: each timestamp goes back to its UTC date. That is lossless for daily and weekly datasets;
a dataset with intraday bars cannot be keyed by date, so reversing refuses (delete those datasets
first) rather than dropping bars.
"""

import datetime as dt

from django.db import migrations, models

INTRADAY = ("1m", "5m", "15m", "1h", "4h")
MOVED = {  # model -> (old date column, new timestamp column)
    "bar": (("date", "timestamp"),),
    "dataset": (("first_date", "first_bar_at"), ("last_date", "last_bar_at")),
    "prediction": (("as_of", "as_of_at"), ("due_on", "due_on_at"), ("horizon_end", "horizon_end_at")),
}


def _move(apps, convert, *, forward: bool) -> None:
    # Row by row through the ORM, so each database stores the value in its own datetime format
    # (a SQL CAST on SQLite writes '... 00:00:00.000', which no longer equals Django's text).
    for model_name, columns in MOVED.items():
        model = apps.get_model("models_mgmt", model_name)
        pairs = [(old, new) if forward else (new, old) for old, new in columns]
        batch = []
        for row in model.objects.only("pk", *(source for source, _ in pairs)).iterator(chunk_size=2000):
            for source, target in pairs:
                value = getattr(row, source)
                setattr(row, target, None if value is None else convert(value))
            batch.append(row)
            if len(batch) == 2000:
                model.objects.bulk_update(batch, [target for _, target in pairs])
                batch = []
        if batch:
            model.objects.bulk_update(batch, [target for _, target in pairs])


def dates_to_timestamps(apps, schema_editor):
    _move(apps, lambda day: dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC), forward=True)


def timestamps_to_dates(apps, schema_editor):
    Dataset = apps.get_model("models_mgmt", "Dataset")
    intraday = list(Dataset.objects.filter(timeframe__in=INTRADAY, bar_count__gt=0).values_list("name", flat=True))
    if intraday:
        raise RuntimeError(
            f"cannot key intraday bars by date; delete these datasets before reversing: {', '.join(intraday)}"
        )
    _move(apps, lambda stamp: stamp.astimezone(dt.UTC).date(), forward=False)


class Migration(migrations.Migration):
    dependencies = [("models_mgmt", "0008_job_enqueued_at")]

    operations = [
        # The old columns become nullable so a reverse can re-add them to tables that hold rows.
        migrations.AlterField(model_name="bar", name="date", field=models.DateField(null=True)),
        migrations.AlterField(model_name="prediction", name="as_of", field=models.DateField(null=True)),
        migrations.AlterField(model_name="prediction", name="due_on", field=models.DateField(null=True)),
        migrations.AddField(model_name="bar", name="timestamp", field=models.DateTimeField(null=True)),
        migrations.AddField(
            model_name="dataset",
            name="first_bar_at",
            field=models.DateTimeField(blank=True, help_text="timestamp of the first bar (UTC)", null=True),
        ),
        migrations.AddField(
            model_name="dataset",
            name="last_bar_at",
            field=models.DateTimeField(blank=True, help_text="timestamp of the last bar (UTC)", null=True),
        ),
        migrations.AddField(
            model_name="dataset",
            name="columns",
            field=models.JSONField(
                blank=True, default=dict, help_text="what an upload's columns were read as (used, ignored, notes)"
            ),
        ),
        migrations.AddField(model_name="prediction", name="as_of_at", field=models.DateTimeField(null=True)),
        migrations.AddField(model_name="prediction", name="due_on_at", field=models.DateTimeField(null=True)),
        migrations.AddField(model_name="prediction", name="horizon_end_at", field=models.DateTimeField(null=True)),
        migrations.RunPython(dates_to_timestamps, timestamps_to_dates),
        # Bar: keyed by timestamp.
        migrations.RemoveConstraint(model_name="bar", name="bar_unique_date_per_dataset"),
        migrations.RemoveField(model_name="bar", name="date"),
        migrations.AlterField(model_name="bar", name="timestamp", field=models.DateTimeField()),
        migrations.AddConstraint(
            model_name="bar",
            constraint=models.UniqueConstraint(
                fields=("dataset", "timestamp"), name="bar_unique_timestamp_per_dataset"
            ),
        ),
        migrations.AlterModelOptions(name="bar", options={"ordering": ["dataset", "timestamp"]}),
        # Dataset: first/last bar timestamps.
        migrations.RemoveField(model_name="dataset", name="first_date"),
        migrations.RemoveField(model_name="dataset", name="last_date"),
        # Prediction: the same names, now timestamps.
        migrations.RemoveIndex(model_name="prediction", name="models_mgmt_dataset_321655_idx"),
        migrations.RemoveField(model_name="prediction", name="as_of"),
        migrations.RemoveField(model_name="prediction", name="due_on"),
        migrations.RemoveField(model_name="prediction", name="horizon_end"),
        migrations.RenameField(model_name="prediction", old_name="as_of_at", new_name="as_of"),
        migrations.RenameField(model_name="prediction", old_name="due_on_at", new_name="due_on"),
        migrations.RenameField(model_name="prediction", old_name="horizon_end_at", new_name="horizon_end"),
        migrations.AlterField(
            model_name="prediction",
            name="as_of",
            field=models.DateTimeField(
                help_text="timestamp of the last bar the prediction saw (a daily bar: 00:00 UTC)"
            ),
        ),
        migrations.AlterField(
            model_name="prediction",
            name="due_on",
            field=models.DateTimeField(
                help_text="earliest time the horizon's last bar can carry (daily: business days; intraday: bar lengths)"
            ),
        ),
        migrations.AlterField(
            model_name="prediction",
            name="horizon_end",
            field=models.DateTimeField(blank=True, help_text="timestamp of the bar that resolved it", null=True),
        ),
        migrations.AddIndex(
            model_name="prediction",
            index=models.Index(fields=["dataset", "resolved_at", "due_on"], name="models_mgmt_dataset_321655_idx"),
        ),
    ]
