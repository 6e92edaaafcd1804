import datetime as dt

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from models_mgmt.choices import DatasetSource

dataset_name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", "Use 1-64 letters, digits, '.', '-' or '_'."
)


class Dataset(models.Model):
    """Market bars of one symbol and timeframe."""

    name = models.CharField(max_length=64, unique=True, validators=[dataset_name_validator])
    symbol = models.CharField(max_length=32)
    timeframe = models.CharField(max_length=8, default="1d")
    source = models.CharField(max_length=16, choices=DatasetSource.choices)
    description = models.TextField(blank=True)
    licence = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Denormalised from the bars at each write, so lists need no aggregate query.
    bar_count = models.PositiveIntegerField(default=0)
    first_bar_at = models.DateTimeField(null=True, blank=True, help_text="timestamp of the first bar (UTC)")
    last_bar_at = models.DateTimeField(null=True, blank=True, help_text="timestamp of the last bar (UTC)")
    columns = models.JSONField(
        default=dict, blank=True, help_text="what an upload's columns were read as (used, ignored, notes)"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def first_date(self) -> dt.date | None:
        """The UTC date of the first bar (a daily bar's date)."""
        return self.first_bar_at.astimezone(dt.UTC).date() if self.first_bar_at else None

    @property
    def last_date(self) -> dt.date | None:
        return self.last_bar_at.astimezone(dt.UTC).date() if self.last_bar_at else None


class Bar(models.Model):
    """One OHLCV bar. Integrity lives in the database: one bar per timestamp, High >= Low.

    A daily (or weekly) bar is stored at 00:00 UTC of its date; see `engine.timeframes`.
    """

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="bars")
    timestamp = models.DateTimeField()
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.FloatField()

    class Meta:
        ordering = ["dataset", "timestamp"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "timestamp"], name="bar_unique_timestamp_per_dataset"),
            models.CheckConstraint(condition=models.Q(high__gte=models.F("low")), name="bar_high_gte_low"),
            models.CheckConstraint(condition=models.Q(volume__gte=0), name="bar_volume_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset_id}@{self.timestamp:%Y-%m-%dT%H:%M}"
