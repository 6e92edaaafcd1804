from django.db import models

from models_mgmt.choices import VersionStatus


class ModelVersion(models.Model):
    """The immutable result of one training run. Only its status changes after creation."""

    model = models.ForeignKey("models_mgmt.AIModel", on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=VersionStatus.choices, default=VersionStatus.TRAINING)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    dataset = models.ForeignKey(
        "models_mgmt.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    accuracy = models.FloatField(null=True, blank=True)
    response_time_ms = models.FloatField(null=True, blank=True)
    training_data_size = models.PositiveIntegerField(default=0)
    trained_at = models.DateTimeField(null=True, blank=True)
    performance_metrics = models.JSONField(default=dict, blank=True)
    baselines = models.JSONField(default=dict, blank=True)
    backtest = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    artifact_path = models.CharField(max_length=500, blank=True)
    checksum = models.CharField(max_length=128, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="version_unique_per_model"),
            models.UniqueConstraint(
                fields=["model"],
                condition=models.Q(status=VersionStatus.ACTIVE),
                name="one_active_version_per_model",
            ),
            models.CheckConstraint(condition=models.Q(status__in=VersionStatus.values), name="version_status_valid"),
        ]
        indexes = [models.Index(fields=["model", "status"])]

    def __str__(self) -> str:
        return f"{self.model_id}:{self.version}"
