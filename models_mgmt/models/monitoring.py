from django.conf import settings
from django.db import models

from models_mgmt.choices import AlertKind, AlertStatus


class Prediction(models.Model):
    """One served prediction: the ledger that live accuracy and response times are computed from.

    Its labels are known only once `horizon` bars after `as_of` have arrived in `dataset`; the
    resolver fills `labels`/`correct` then (labels in trading come late).
    """

    model = models.ForeignKey("models_mgmt.AIModel", on_delete=models.CASCADE, related_name="predictions")
    version = models.ForeignKey("models_mgmt.ModelVersion", on_delete=models.CASCADE, related_name="predictions")
    dataset = models.ForeignKey(
        "models_mgmt.Dataset",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="whose later bars resolve it",
    )
    source = models.CharField(max_length=16, help_text="bars | dataset")
    as_of = models.DateTimeField(help_text="timestamp of the last bar the prediction saw (a daily bar: 00:00 UTC)")
    horizon = models.PositiveIntegerField()
    breakout_window = models.PositiveIntegerField()
    due_on = models.DateTimeField(
        help_text="earliest time the horizon's last bar can carry (daily: business days; intraday: bar lengths)"
    )
    features = models.JSONField()
    outputs = models.JSONField(help_text="{task: probability}")
    latency_ms = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    horizon_end = models.DateTimeField(null=True, blank=True, help_text="timestamp of the bar that resolved it")
    labels = models.JSONField(null=True, blank=True, help_text="{task: 0|1}")
    correct = models.JSONField(null=True, blank=True, help_text="{task: bool}")
    experiment = models.ForeignKey(
        "models_mgmt.Experiment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="predictions",
        help_text="the shadow experiment that also scored this request",
    )
    challenger_outputs = models.JSONField(null=True, blank=True, help_text="{task: probability} of the challenger")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["model", "created_at"]),
            models.Index(fields=["dataset", "resolved_at", "due_on"]),
            models.Index(fields=["version", "resolved_at"]),
        ]

    def __str__(self) -> str:
        return f"prediction {self.pk} ({self.version_id} @ {self.as_of})"


class DriftReport(models.Model):
    """One drift check of a model's active version, kept as history."""

    model = models.ForeignKey("models_mgmt.AIModel", on_delete=models.CASCADE, related_name="drift_reports")
    version = models.ForeignKey(
        "models_mgmt.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    verdict = models.CharField(max_length=16, help_text="stable | warning | drift | insufficient_data")
    drift_score = models.FloatField(null=True, blank=True)
    recommendation = models.CharField(max_length=64)
    conditions = models.JSONField(default=dict, help_text="{alert kind: bool} for the hysteresis")
    report = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["model", "-created_at"])]

    def __str__(self) -> str:
        return f"drift {self.model_id} {self.verdict} @ {self.created_at:%Y-%m-%d %H:%M}"


class Alert(models.Model):
    """A threshold crossed for long enough (hysteresis); open until the condition clears."""

    model = models.ForeignKey("models_mgmt.AIModel", on_delete=models.CASCADE, related_name="alerts")
    version = models.ForeignKey(
        "models_mgmt.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    message = models.TextField()
    reasons = models.JSONField(default=list)
    recommendation = models.CharField(max_length=64, blank=True)
    report = models.ForeignKey(DriftReport, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    opened_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    webhook_status = models.CharField(max_length=200, blank=True, help_text="last webhook delivery outcome")

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "kind"],
                condition=models.Q(status__in=["open", "acknowledged"]),
                name="one_unresolved_alert_per_model_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"alert {self.kind} {self.model_id} ({self.status})"
