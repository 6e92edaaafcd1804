from __future__ import annotations

import logging
import re
import shutil

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from models_mgmt.artifacts import version_dir
from models_mgmt.choices import PERM_ACTIVATE, VERSION_TRANSITIONS, ActivationPolicy, JobStatus, VersionStatus
from models_mgmt.engine.config import FineTuningConfig
from models_mgmt.engine.training import TrainingResult
from models_mgmt.errors import Conflict, NotFound, Unavailable
from models_mgmt.models import AIModel, ModelVersion, TrainingJob
from models_mgmt.permissions import UserLike, require_model_perm
from models_mgmt.realtime.events import publish_model_event
from models_mgmt.selectors import automatic_change_blocked

from .audit import audit_record
from .experiment_lifecycle import experiments_stop_for_new_champion
from .queue import WARM_DRIFT_REPORTS, task_enqueue
from .training_jobs import training_epochs_save, training_job_transition

logger = logging.getLogger(__name__)
VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


def _transition(version: ModelVersion, to: str) -> None:
    if to not in VERSION_TRANSITIONS[version.status]:
        raise Conflict(
            f"Version {version.version} is {version.status}; it cannot become {to}.", code="invalid_transition"
        )
    version.status = to


@transaction.atomic
def model_version_activate(
    *, actor: UserLike, model: AIModel, version: str, delivery: dict | None = None
) -> ModelVersion:
    """Make `version` the active one; the previously active version becomes deprecated.

    Also the rollback path: a deprecated version can be activated again. `delivery` is what the
    edge did before (an llm-lora adapter pushed to Ollama, see monitoring/ollama.py); it is
    recorded in the activation's audit event.
    """
    require_model_perm(actor, model, PERM_ACTIVATE, "activate versions")
    return _activate(model=model, version=version, actor=actor, reason="manual", delivery=delivery)


@transaction.atomic
def model_version_activate_system(*, model: AIModel, version: ModelVersion, reason: str) -> ModelVersion:
    """Activation decided by the pipeline itself (activationPolicy=if_better), audited as such."""
    return _activate(model=model, version=version.version, actor=None, reason=reason)


def _activate(
    *, model: AIModel, version: str, actor: UserLike | None, reason: str, delivery: dict | None = None
) -> ModelVersion:
    # The model row is locked so concurrent activations are serialised; the partial unique index
    # guarantees one active version even if something bypasses this function.
    if not settings.MODEL_VERSIONING_ENABLED:
        raise Unavailable("Model versioning is disabled (MODEL_VERSIONING_ENABLED=false).", code="versioning_disabled")
    AIModel.objects.select_for_update().filter(pk=model.pk).first()
    target = (
        ModelVersion.objects.select_for_update(of=("self",))
        .select_related("model", "parent", "dataset")  # what the answer shows: no read after the change
        .filter(model=model, version=version)
        .first()
    )
    if target is None:
        raise NotFound(f"Version '{version}' of model '{model.name}' not found.")
    if target.status == VersionStatus.ACTIVE:
        if delivery:  # delivered again (e.g. to a new Ollama server): the trail keeps what was sent
            audit_record(
                actor=actor, action="version.delivered", obj=target, ai_model=model, after={"delivery": delivery}
            )
        return target
    _transition(target, VersionStatus.ACTIVE)  # validates before anything is written
    previous = ModelVersion.objects.select_for_update().filter(model=model, status=VersionStatus.ACTIVE).first()
    if previous is not None:
        _transition(previous, VersionStatus.DEPRECATED)
        previous.save(update_fields=["status"])
    target.activated_at = timezone.now()
    target.save(update_fields=["status", "activated_at"])
    audit_record(
        actor=actor,
        action="version.activated",
        obj=target,
        ai_model=model,
        before={"active": previous.version if previous else None},
        after={"active": target.version, "reason": reason, **({"delivery": delivery} if delivery else {})},
    )
    experiments_stop_for_new_champion(model=model, active=target, actor=actor)
    transaction.on_commit(lambda: _enqueue_drift_warmup(model.pk))
    publish_model_event(
        model,
        "version.activated",
        {"version": target.version, "previousVersion": previous.version if previous else None, "reason": reason},
    )
    return target


def _enqueue_drift_warmup(model_id: int) -> None:
    """A worker computes the new active version's drift report, so GET drift answers at once."""
    task_enqueue(
        WARM_DRIFT_REPORTS,
        model_id=model_id,
        cluster=settings.MONITORING_CLUSTER,
        group="monitoring",
        why_later="the scheduled check will",
    )


def next_version_number(model_id: int) -> str:
    """The next minor version: v1.0.0 first, then v1.1.0, v1.2.0, ... above the highest so far."""
    highest = (0, -1, 0)
    for name in ModelVersion.objects.filter(model_id=model_id).values_list("version", flat=True):
        match = VERSION_RE.match(name)
        if match:
            major, minor, patch = (int(g) for g in match.groups())
            highest = max(highest, (major, minor, patch))
    if highest == (0, -1, 0):
        return "v1.0.0"
    return f"v{highest[0]}.{highest[1] + 1}.0"


@transaction.atomic
def model_version_register(
    *,
    job_id: int,
    result: TrainingResult,
    config: FineTuningConfig,
    rival: dict | None,
    worker: str,
    code_revision: str,
) -> ModelVersion | None:
    """Register the version; None when this worker no longer owns the job (it was reaped)."""
    job = (
        TrainingJob.objects.select_for_update(of=("self",))
        .select_related("model", "base_version", "dataset", "study")
        .get(pk=job_id)
    )
    if job.status not in (JobStatus.RUNNING, JobStatus.STOPPING) or job.worker != worker:
        logger.warning("job %s is no longer %s's to finish (%s, %s)", job_id, worker, job.status, job.worker)
        return None
    model = job.model
    number = next_version_number(model.pk)
    target = version_dir(model.name, number)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # left over from a run that died between the move and the commit
        shutil.rmtree(target)
    if result.artifact_dir is None:
        raise ValueError("the run finished without writing an artifact")
    shutil.copytree(result.artifact_dir, target)
    version = ModelVersion.objects.create(
        model=model,
        version=number,
        status=VersionStatus.READY,
        parent=job.base_version,
        dataset=job.dataset,
        accuracy=result.accuracy,
        response_time_ms=result.response_time_ms,
        training_data_size=result.train_samples,
        trained_at=timezone.now(),
        performance_metrics=result.metrics,
        baselines=result.baselines,
        backtest=result.backtest,
        metadata={
            "hyperparameters": result.hyperparameters,
            "trainingDuration": result.training_duration_s,
            "epochs": result.epochs_run,
            "bestEpoch": result.best_epoch,
            # Every loss recorded here was measured by this job: validation loss and training loss at
            # bestEpoch (a trained epoch, whose weights this version holds), and the starting weights'
            # validation loss on the same window.
            "loss": result.best_val_loss,
            "lossKind": "validation",
            "lossEpoch": result.best_epoch,
            "trainLoss": result.best_train_loss,
            "finalTrainLoss": result.final_train_loss,
            "startValLoss": result.start_val_loss,
            "improvedOnStart": result.improved_on_start,
            "validationAccuracy": result.accuracy,
            "trainWindow": list(result.train_window),
            "validationWindow": list(result.validation_window),
            "trainSamples": result.train_samples,
            "validationSamples": result.validation_samples,
            "embargoSamples": result.embargo_samples,
            "lineage": {
                "parentVersion": job.base_version.version if job.base_version else None,
                "dataset": job.dataset.name,
                "jobId": job.pk,
                "seed": result.hyperparameters.get("seed"),
                "codeRevision": code_revision,
                "config": job.config,
                **getattr(result, "lineage", {}),  # llm-lora: base model, its checksums, data window
                # a study's best config trained on the whole window: which study and trial it came from
                **(
                    {"study": job.study_id, "trial": (job.study.best or {}).get("trialNumber")}
                    if job.study is not None
                    else {}
                ),
            },
            **({"activeVersionOnWindow": rival} if rival else {}),
            **getattr(result, "extra_metadata", {}),
            # evaluation "walk_forward": the purged folds' report (engine/walk_forward.py)
            **({"walkForward": result.walk_forward} if getattr(result, "walk_forward", None) else {}),
        },
        artifact_path=str(target),
        checksum=result.checksum or "",
    )
    training_epochs_save(job.pk, result.history)  # complete even across a resume after a crash
    training_job_transition(
        job, JobStatus.SUCCEEDED, version=version, progress=100.0, epoch=max(job.epoch, result.epochs_run)
    )
    audit_record(
        actor=None, action="version.created", obj=version, ai_model=model, after={"version": number, "job": job.pk}
    )
    if config.activation_policy == ActivationPolicy.IF_BETTER:
        _activate_if_better(job, version, rival)
    return version


def _activate_if_better(job: TrainingJob, version: ModelVersion, rival: dict | None) -> None:
    """Activate the new version when its overallScore beats the active one's on the same window."""
    if automatic_change_blocked(job.model, version):  # a guardrail cooldown, or a version a guardrail rolled back
        logger.info("%s of %s not activated automatically: guardrails block it", version.version, job.model.name)
        return
    active = ModelVersion.objects.filter(model=job.model, status=VersionStatus.ACTIVE).first()
    if active is not None:
        if rival is None or rival["version"] != active.version:
            return  # no like-for-like comparison possible: leave the choice to a person
        if version.performance_metrics["overallScore"] <= rival["performanceMetrics"]["overallScore"]:
            return
    model_version_activate_system(model=job.model, version=version, reason="activationPolicy=if_better")
