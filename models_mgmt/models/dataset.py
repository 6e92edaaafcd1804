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
    first_date = models.DateField(null=True, blank=True)
    last_date = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Bar(models.Model):
    """One OHLCV bar. Integrity lives in the database: one bar per date, High >= Low."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="bars")
    date = models.DateField()
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.FloatField()

    class Meta:
        ordering = ["dataset", "date"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "date"], name="bar_unique_date_per_dataset"),
            models.CheckConstraint(condition=models.Q(high__gte=models.F("low")), name="bar_high_gte_low"),
            models.CheckConstraint(condition=models.Q(volume__gte=0), name="bar_volume_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset_id}@{self.date}"
