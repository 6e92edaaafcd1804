"""Statuses and the transitions the services allow between them."""

from django.db import models


class VersionStatus(models.TextChoices):
    TRAINING = "training", "Training"
    READY = "ready", "Ready"
    ACTIVE = "active", "Active"
    DEPRECATED = "deprecated", "Deprecated"
    FAILED = "failed", "Failed"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class StudyStatus(models.TextChoices):
    RUNNING = "running", "Running"  # trials are queued or running
    STOPPING = "stopping", "Stopping"  # no new trial; the ones running finish, then the best is trained
    FINALIZING = "finalizing", "Training the best"  # the best trial's config trains on the whole window
    FINISHED = "finished", "Finished"
    STOPPED = "stopped", "Stopped"  # stopped before any trial completed
    FAILED = "failed", "Failed"


LIVE_STUDY_STATUSES = (StudyStatus.RUNNING, StudyStatus.STOPPING, StudyStatus.FINALIZING)


class TrialState(models.TextChoices):
    """Optuna's trial states, as the study's page shows them."""

    WAITING = "waiting", "Waiting"  # its job is queued; Optuna has not been asked yet
    RUNNING = "running", "Running"
    COMPLETE = "complete", "Complete"
    PRUNED = "pruned", "Pruned"
    FAIL = "fail", "Failed"


class StudyRole(models.TextChoices):
    NONE = "", "Fine-tune"
    TRIAL = "trial", "Study trial"  # scored walk-forward; registers no version
    FINAL = "final", "Study's best, on the whole window"


class DatasetSource(models.TextChoices):
    BUILTIN = "builtin", "Built-in"
    UPLOAD = "upload", "Uploaded CSV"


class ActivationPolicy(models.TextChoices):
    MANUAL = "manual", "Manual"
    IF_BETTER = "if_better", "Activate if better"


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    TRAINER = "trainer", "Trainer"
    MAINTAINER = "maintainer", "Maintainer"


LIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.STOPPING)
TERMINAL_JOB_STATUSES = (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)

# A job never leaves a terminal state. `running -> queued` is a requeue after a lost worker.
JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.STOPPED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.QUEUED, JobStatus.STOPPING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    ),
    JobStatus.STOPPING: frozenset({JobStatus.STOPPED, JobStatus.FAILED, JobStatus.SUCCEEDED}),
    JobStatus.STOPPED: frozenset(),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
}

# `failed` is terminal; `deprecated` may come back (rollback) through activation.
VERSION_TRANSITIONS: dict[str, frozenset[str]] = {
    VersionStatus.TRAINING: frozenset({VersionStatus.READY, VersionStatus.FAILED}),
    VersionStatus.READY: frozenset({VersionStatus.ACTIVE}),
    VersionStatus.ACTIVE: frozenset({VersionStatus.DEPRECATED}),
    VersionStatus.DEPRECATED: frozenset({VersionStatus.ACTIVE}),
    VersionStatus.FAILED: frozenset(),
}

# Object permissions on an AI model (django-guardian codenames) and what each role grants.
PERM_VIEW = "view_aimodel"
PERM_FINETUNE = "finetune_aimodel"
PERM_ACTIVATE = "activate_aimodel"
PERM_MANAGE = "manage_aimodel"
ROLE_OBJECT_PERMS: dict[str, tuple[str, ...]] = {
    Role.VIEWER: (PERM_VIEW,),
    Role.TRAINER: (PERM_VIEW, PERM_FINETUNE),
    Role.MAINTAINER: (PERM_VIEW, PERM_FINETUNE, PERM_ACTIVATE, PERM_MANAGE),
}
# Global (model-level) permissions each role group holds: what is not tied to one AI model.
ROLE_GLOBAL_PERMS: dict[str, tuple[str, ...]] = {
    Role.VIEWER: ("view_dataset", "view_basemodel"),
    Role.TRAINER: ("view_dataset", "view_basemodel"),
    Role.MAINTAINER: (
        "view_dataset", "add_dataset", "change_dataset", "add_aimodel", "view_auditevent",
        "view_basemodel", "add_basemodel",
    ),
}  # fmt: skip


class AlertKind(models.TextChoices):
    DATA_DRIFT = "data_drift", "Data drift"
    PREDICTION_DRIFT = "prediction_drift", "Prediction drift"
    PERFORMANCE_DRIFT = "performance_drift", "Performance drift"
    GUARDRAIL_BREACH = "guardrail_breach", "Guardrail breach"
    EXPERIMENT_DECIDED = "experiment_decided", "Shadow experiment decided"


# The kinds the scheduled drift check opens and clears with hysteresis; a guardrail breach is
# opened by the guardrail evaluation and cleared by it (monitoring/guardrails.py).
DRIFT_ALERT_KINDS = (AlertKind.DATA_DRIFT, AlertKind.PREDICTION_DRIFT, AlertKind.PERFORMANCE_DRIFT)


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class GuardrailVerdict(models.TextChoices):
    OK = "ok", "OK"
    BREACH = "breach", "Breach"
    INCONCLUSIVE = "inconclusive", "Inconclusive"  # too little evidence: never acts


class GuardrailAction(models.TextChoices):
    NONE = "none", "None"
    ROLLED_BACK = "rolled_back", "Rolled back"
    ALERT_ONLY = "alert_only", "Alert only (nothing to roll back to)"
    COOLDOWN = "cooldown", "Breach during the cooldown: no automatic change"


class GuardrailTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    BARS = "bars", "After a bar append"
    MANUAL = "manual", "Run by a person"


class ExperimentState(models.TextChoices):
    RUNNING = "running", "Running"
    CHALLENGER_BETTER = "challenger_better", "Challenger better"
    CHALLENGER_WORSE = "challenger_worse", "Challenger worse"
    INCONCLUSIVE = "inconclusive", "Inconclusive at budget"
    STOPPED = "stopped", "Stopped"
    PROMOTED = "promoted", "Challenger promoted"


# running -> a verdict, or stopped (by a person, or because the champion was replaced);
# challenger_better -> promoted (a maintainer's click, or auto_promote). Nothing leaves the others.
EXPERIMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    ExperimentState.RUNNING: frozenset(
        {
            ExperimentState.CHALLENGER_BETTER,
            ExperimentState.CHALLENGER_WORSE,
            ExperimentState.INCONCLUSIVE,
            ExperimentState.STOPPED,
        }
    ),
    ExperimentState.CHALLENGER_BETTER: frozenset({ExperimentState.PROMOTED}),
    ExperimentState.CHALLENGER_WORSE: frozenset(),
    ExperimentState.INCONCLUSIVE: frozenset(),
    ExperimentState.STOPPED: frozenset(),
    ExperimentState.PROMOTED: frozenset(),
}
