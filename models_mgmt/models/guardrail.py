from django.conf import settings
from django.db import models

from models_mgmt.choices import GuardrailAction, GuardrailTrigger, GuardrailVerdict


def all_tasks() -> list[str]:
    return ["signal", "risk", "pattern"]


class GuardrailPolicy(models.Model):
    """When the active version is judged unhealthy and rolled back (monitoring/guardrails.py).

    One per model; a model without one has no guardrails. `cooldown_until` is set by a rollback:
    until then no automatic change (rollback or automatic promotion) touches the model.
    """

    model = models.OneToOneField("models_mgmt.AIModel", on_delete=models.CASCADE, related_name="guardrail_policy")
    enabled = models.BooleanField(default=False)
    accuracy_tasks = models.JSONField(default=all_tasks, help_text="tasks whose live accuracy is checked")
    accuracy_margin = models.FloatField(default=0.05, help_text="allowed drop below validation accuracy")
    accuracy_min_resolved = models.PositiveIntegerField(
        default=50, help_text="fewer resolved predictions are inconclusive, never a breach"
    )
    accuracy_alpha = models.FloatField(default=0.05, help_text="significance, split over the tasks (Bonferroni)")
    latency_p95_ms = models.FloatField(default=250.0, help_text="p95 serving latency above this breaches a window")
    latency_window_minutes = models.PositiveIntegerField(default=15)
    latency_min_requests = models.PositiveIntegerField(
        default=20, help_text="a window with fewer requests is not counted"
    )
    latency_m = models.PositiveIntegerField(default=3, help_text="breached windows (M) ...")
    latency_n = models.PositiveIntegerField(default=5, help_text="... of the last N counted windows")
    cooldown_hours = models.FloatField(default=24.0, help_text="no automatic change for this long after a rollback")
    cooldown_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "guardrail policy"
        verbose_name_plural = "guardrail policies"

    def __str__(self) -> str:
        return f"guardrails of {self.model_id} ({'on' if self.enabled else 'off'})"


class GuardrailEvaluation(models.Model):
    """One evaluation of a model's policy: per check the measured value, bound, count, windows and
    verdict, and what was done. A row with action `rolled_back` also marks `version` as rolled
    back by a guardrail: it is never promoted automatically again."""

    model = models.ForeignKey("models_mgmt.AIModel", on_delete=models.CASCADE, related_name="guardrail_evaluations")
    version = models.ForeignKey(
        "models_mgmt.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    trigger = models.CharField(max_length=16, choices=GuardrailTrigger.choices)
    verdict = models.CharField(max_length=16, choices=GuardrailVerdict.choices)
    action = models.CharField(max_length=16, choices=GuardrailAction.choices, default=GuardrailAction.NONE)
    checks = models.JSONField(default=dict, help_text="{accuracy: {...}, latency: {...}}: the evidence")
    detail = models.TextField(blank=True)
    rolled_back_to = models.ForeignKey(
        "models_mgmt.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    alert = models.ForeignKey("models_mgmt.Alert", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["model", "-created_at"]),
            models.Index(fields=["version", "action"]),
        ]

    def __str__(self) -> str:
        return f"guardrails {self.model_id} {self.verdict}/{self.action} @ {self.created_at:%Y-%m-%d %H:%M}"
