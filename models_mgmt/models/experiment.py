from django.conf import settings
from django.db import models

from models_mgmt.choices import ExperimentState


class Experiment(models.Model):
    """A shadow experiment: the champion keeps answering predict, the challenger is scored on the
    same features of every request, and the resolved pairs are compared with an anytime-valid
    confidence sequence (engine/sequential.py; monitoring/experiments.py runs it)."""

    model = models.ForeignKey("models_mgmt.AIModel", on_delete=models.CASCADE, related_name="experiments")
    # Versions go only with their model (which takes its experiments along): CASCADE, not PROTECT,
    # which would refuse to delete a model that ever ran an experiment.
    champion = models.ForeignKey("models_mgmt.ModelVersion", on_delete=models.CASCADE, related_name="+")
    challenger = models.ForeignKey("models_mgmt.ModelVersion", on_delete=models.CASCADE, related_name="+")
    alpha = models.FloatField(default=0.05, help_text="false-win probability, split over the tasks")
    max_days = models.PositiveIntegerField(default=250, help_text="budget: resolved days before inconclusive")
    max_predictions = models.PositiveIntegerField(
        null=True, blank=True, help_text="budget: resolved predictions before inconclusive"
    )
    auto_promote = models.BooleanField(default=False, help_text="promote on challenger_better (guardrails permitting)")
    state = models.CharField(max_length=24, choices=ExperimentState.choices, default=ExperimentState.RUNNING)
    stats = models.JSONField(default=dict, blank=True, help_text="the last comparison: per task CS and history")
    reason = models.TextField(blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model"],
                condition=models.Q(state=ExperimentState.RUNNING),
                name="one_running_experiment_per_model",
            ),
        ]

    def __str__(self) -> str:
        return f"experiment {self.pk} ({self.state})"
