from django.db import models


class ProgressEvent(models.Model):
    """One event of a job's or a model's feed, persisted so that no subscriber ever misses one.

    `seq` counts per stream, without gaps: a job's events (job set) or a model's own events such
    as activations and alerts (job null). It is allocated under a lock on the job or model row,
    so seq order is commit order.
    """

    model = models.ForeignKey("models_mgmt.AIModel", on_delete=models.CASCADE, related_name="events")
    job = models.ForeignKey(
        "models_mgmt.TrainingJob", null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=40)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "seq"], condition=models.Q(job__isnull=False), name="event_seq_unique_per_job"
            ),
            models.UniqueConstraint(
                fields=["model", "seq"], condition=models.Q(job__isnull=True), name="event_seq_unique_per_model"
            ),
        ]
        indexes = [models.Index(fields=["model", "created_at"]), models.Index(fields=["job", "seq"])]

    def __str__(self) -> str:
        return (
            f"{self.type} #{self.seq} ({'job ' + str(self.job_id) if self.job_id else 'model ' + str(self.model_id)})"
        )
