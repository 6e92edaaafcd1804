import uuid

from django.conf import settings
from django.db import models

from models_mgmt.choices import LIVE_JOB_STATUSES, JobStatus, StudyRole


class TrainingJob(models.Model):
    """One fine-tuning run of one model with one config; a row with explicit states."""

    model = models.ForeignKey("models_mgmt.AIModel", on_delete=models.CASCADE, related_name="jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    dataset = models.ForeignKey("models_mgmt.Dataset", on_delete=models.PROTECT, related_name="jobs")
    base_version = models.ForeignKey(
        "models_mgmt.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    config = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.FloatField(default=0.0)
    epoch = models.PositiveIntegerField(default=0)
    total_epochs = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    version = models.OneToOneField(
        "models_mgmt.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="job"
    )
    attempts = models.PositiveIntegerField(default=0)
    # Names the job's working directory (checkpoints): unique even if ids are reused after a reset.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker running it")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # db_default: a web process of the previous release, which knows no such column, can still
    # insert jobs while a rolling upgrade runs both.
    device = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",
        help_text='where the claiming worker trains: "cpu", "cuda:0", "cpu x2 gloo", ...',
    )
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="when the broker accepted its task")
    event_seq = models.PositiveIntegerField(default=0, help_text="seq of the job's last feed event")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A hyperparameter study's trial (scored walk-forward, no version) or its final run.
    study = models.ForeignKey(
        "models_mgmt.Study", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    study_role = models.CharField(max_length=8, choices=StudyRole.choices, default=StudyRole.NONE, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A study's trials run side by side (its `parallelism`); every other job holds the model alone.
            models.UniqueConstraint(
                fields=["model"],
                condition=models.Q(status__in=LIVE_JOB_STATUSES) & ~models.Q(study_role=StudyRole.TRIAL),
                name="one_live_job_per_model",
            ),
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=100), name="job_progress_0_100"
            ),
            models.CheckConstraint(condition=models.Q(status__in=JobStatus.values), name="job_status_valid"),
        ]
        indexes = [models.Index(fields=["model", "-created_at"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.model_id}, {self.status})"


class TrainingEpoch(models.Model):
    """Per-epoch history of a job: losses and validation metrics, as measured."""

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="epochs")
    epoch = models.PositiveIntegerField()
    train_loss = models.FloatField()
    val_loss = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    duration_s = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "epoch"]
        constraints = [models.UniqueConstraint(fields=["job", "epoch"], name="epoch_unique_per_job")]

    def __str__(self) -> str:
        return f"job {self.job_id} epoch {self.epoch}"
