from django.conf import settings
from django.db import models
from django.utils import timezone

from models_mgmt.engine.metering import SAMPLES, TOKENS

UNIT_KINDS = [(SAMPLES, "samples x epochs"), (TOKENS, "tokens")]


class PriceCard(models.Model):
    """What an hour of CPU and of GPU costs from `valid_from` on. Versioned: a new price is a new
    card, never an edit, so a job keeps the price it was costed with. The newest card valid when a
    job started prices it; with no card at all, the settings' COST_* prices do."""

    cpu_hour = models.DecimalField(max_digits=12, decimal_places=4, help_text="price of one CPU-hour")
    gpu_hour = models.DecimalField(max_digits=12, decimal_places=4, help_text="price of one GPU-hour")
    currency = models.CharField(max_length=3, help_text="ISO 4217 code, e.g. USD")
    valid_from = models.DateTimeField(default=timezone.now, help_text="jobs that start at or after this use this card")
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-valid_from", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(cpu_hour__gte=0) & models.Q(gpu_hour__gte=0), name="price_card_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"price card {self.pk} ({self.currency} {self.cpu_hour}/CPU-h, {self.gpu_hour}/GPU-h)"


class JobCost(models.Model):
    """What one training job used and what that cost: written with each heartbeat while it runs,
    final once the job ended (a killed job keeps its last heartbeat's figures)."""

    job = models.OneToOneField("models_mgmt.TrainingJob", on_delete=models.CASCADE, related_name="cost")
    wall_seconds = models.FloatField(default=0.0)
    cpu_seconds = models.FloatField(default=0.0, help_text="the worker process and its children")
    gpu_seconds = models.FloatField(default=0.0)
    peak_rss_bytes = models.BigIntegerField(default=0)
    units = models.BigIntegerField(default=0, help_text="samples x epochs, or tokens (unit_kind)")
    unit_kind = models.CharField(max_length=16, choices=UNIT_KINDS, default=SAMPLES)
    price_card = models.ForeignKey(
        PriceCard, null=True, blank=True, on_delete=models.PROTECT, related_name="costs", help_text="none: settings"
    )
    cpu_hour = models.DecimalField(max_digits=12, decimal_places=4, help_text="the price applied")
    gpu_hour = models.DecimalField(max_digits=12, decimal_places=4, help_text="the price applied")
    amount = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    currency = models.CharField(max_length=3)
    final = models.BooleanField(default=False, help_text="the job has ended; the figures no longer change")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-job_id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(wall_seconds__gte=0) & models.Q(cpu_seconds__gte=0) & models.Q(gpu_seconds__gte=0),
                name="job_cost_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"cost of job {self.job_id}: {self.currency} {self.amount}"
