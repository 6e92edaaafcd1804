import uuid

from django.conf import settings
from django.db import models

from models_mgmt.choices import LIVE_STUDY_STATUSES, StudyStatus, TrialState


class Study(models.Model):
    """A hyperparameter search on one model: trials are training jobs judged walk-forward; when it
    ends, the best trial's config is trained on the whole window as a normal job (`final_job`)."""

    model = models.ForeignKey("models_mgmt.AIModel", on_delete=models.CASCADE, related_name="studies")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    dataset = models.ForeignKey("models_mgmt.Dataset", on_delete=models.PROTECT, related_name="studies")
    status = models.CharField(max_length=16, choices=StudyStatus.choices, default=StudyStatus.RUNNING)
    space = models.JSONField(help_text="wire name -> {choices} or {low, high, log, step}")
    config = models.JSONField(help_text="the FineTuningConfig every trial starts from (wire form)")
    n_trials = models.PositiveIntegerField()
    parallelism = models.PositiveIntegerField(default=1)
    sampler = models.CharField(max_length=16, default="tpe")
    pruning = models.BooleanField(default=True)
    time_budget_s = models.PositiveIntegerField(
        null=True, blank=True, help_text="no new trial starts after this many seconds; the best so far is trained"
    )
    # Names the study in Optuna's storage: unique even if ids are reused after a reset.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    best = models.JSONField(default=dict, blank=True, help_text="trialNumber, params, cvScore (walk-forward objective)")
    holdout = models.JSONField(default=dict, blank=True, help_text="the final version's scores on the holdout")
    importance = models.JSONField(
        default=dict, blank=True, help_text="parameter -> importance (Optuna's PED-ANOVA), once enough trials completed"
    )
    final_job = models.OneToOneField(
        "models_mgmt.TrainingJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model"], condition=models.Q(status__in=LIVE_STUDY_STATUSES), name="one_live_study_per_model"
            ),
        ]

    def __str__(self) -> str:
        return f"study {self.pk} ({self.model_id}, {self.status})"

    @property
    def optuna_name(self) -> str:
        return f"techanal-study-{self.uid}"


class StudyTrial(models.Model):
    """One trial as the product records it (Optuna's storage is the worker's; the web reads this)."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="trials")
    job = models.OneToOneField("models_mgmt.TrainingJob", on_delete=models.CASCADE, related_name="trial")
    number = models.IntegerField(null=True, blank=True, help_text="Optuna's trial number, once asked")
    state = models.CharField(max_length=16, choices=TrialState.choices, default=TrialState.WAITING)
    params = models.JSONField(default=dict, blank=True)
    fold_scores = models.JSONField(default=list, blank=True, help_text="each fold's overallScore edge")
    value = models.FloatField(null=True, blank=True, help_text="the walk-forward objective")
    report = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["study", "id"]

    def __str__(self) -> str:
        return f"study {self.study_id} trial {self.number}"
