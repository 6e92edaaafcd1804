from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """Who changed what, when, with the state before and after. Append-only."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    # Kept as a plain name as well so the trail outlives a deleted model.
    ai_model = models.ForeignKey(
        "models_mgmt.AIModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    ai_model_name = models.CharField(max_length=100, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"
