"""Hyperparameter studies: start, stop, and advance (next trials, then the best trained in full).

A study's trials are training jobs (`study_role="trial"`): queued, claimed, stopped and reaped
like any job, shown in the jobs list and on the feed. A trial job registers no version: the worker
asks Optuna for values, scores them walk-forward and records the trial (training/search.py).
`study_advance` runs after every trial job ends (the worker calls it; the reaper calls it for
every live study, so a lost worker or a broker outage never leaves a study waiting): it keeps
`parallelism` trials live until `n_trials` were started, then queues the best trial's config as a
normal job on the whole window (`study_role="final"`, from scratch, as the trials were), whose
version is the study's outcome; its validation window is the holdout no trial saw.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from models_mgmt.choices import (
    LIVE_JOB_STATUSES,
    LIVE_STUDY_STATUSES,
    PERM_FINETUNE,
    JobStatus,
    StudyRole,
    StudyStatus,
    TrialState,
)
from models_mgmt.engine.config import FineTuningConfig
from models_mgmt.engine.search import CONFIG_PARAMS
from models_mgmt.errors import Conflict, Unavailable
from models_mgmt.models import AIModel, Dataset, Study, StudyTrial, TrainingJob
from models_mgmt.permissions import UserLike, require_model_perm
from models_mgmt.realtime.events import publish_job_event

from .audit import audit_record
from .training_jobs import training_job_enqueue, training_job_transition

logger = logging.getLogger(__name__)
MAX_STUDY_TRIALS = 500
MAX_STUDY_PARALLELISM = 8  # trials live at once; each takes one worker process
TERMINAL_TRIAL_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


# A study's config fields that it cannot honour: its trials train in the claiming worker's own
# process on its CPU (training/search.py scores their walk-forward folds there, never through
# torchrun), so a device or a torchrun group would be silently ignored for every trial.
STUDY_CONFIG_REFUSED = {
    "device": "a study's trials train in the claiming worker's own process on its CPU, and its final run "
    "where the server's DEFAULT_TRAINING_DEVICE says; leave device out",
    "distributed": "a study's trials train in the claiming worker's own process, never in a torchrun "
    "group; leave distributed out",
}


def study_config_refusals(fields: Mapping[str, Any]) -> dict[str, list[str]]:
    """The problems of a study's partial FineTuningConfig beyond those of any config (by wire key);
    the API and `manage.py tune` refuse them in these words. `distributed: null` is what trials do."""
    given = {key for key, value in fields.items() if value is not None or key == "device"}
    return {key: [message] for key, message in STUDY_CONFIG_REFUSED.items() if key in given}


def _require_training_enabled() -> None:
    if not settings.MODEL_TRAINING_ENABLED:
        raise Unavailable(
            "Training is disabled on this server (MODEL_TRAINING_ENABLED=false).", code="training_disabled"
        )


def _trial_job_create(study: Study) -> TrainingJob:
    job = TrainingJob.objects.create(
        model=study.model,
        created_by=study.created_by,
        dataset=study.dataset,
        base_version=None,  # every fold trains from fresh weights (engine/walk_forward.py)
        config=study.config,
        status=JobStatus.QUEUED,
        total_epochs=study.config.get("epochs", 0),
        study=study,
        study_role=StudyRole.TRIAL,
    )
    StudyTrial.objects.create(study=study, job=job)
    publish_job_event(job, "job.status")
    job_id = job.pk
    transaction.on_commit(lambda: training_job_enqueue(job_id))
    return job


@transaction.atomic
def study_start(
    *,
    actor: UserLike,
    model: AIModel,
    config: FineTuningConfig,
    dataset: Dataset,
    space: dict[str, Any],
    n_trials: int,
    parallelism: int,
    sampler: str,
    pruning: bool,
    time_budget_s: int | None = None,
) -> Study:
    """Create a running study and queue its first `parallelism` trials (one live study per model)."""
    _require_training_enabled()
    starter = require_model_perm(actor, model, PERM_FINETUNE, "start a study")
    base = dataclasses.replace(config, evaluation="walk_forward", base_model=None, activation_policy="manual")
    try:
        with transaction.atomic():
            study = Study.objects.create(
                model=model,
                created_by=starter,
                dataset=dataset,
                space=space,
                config=base.to_wire(),
                n_trials=n_trials,
                parallelism=min(parallelism, n_trials),
                sampler=sampler,
                pruning=pruning,
                time_budget_s=time_budget_s,
            )
    except IntegrityError as exc:
        live = Study.objects.filter(model=model, status__in=LIVE_STUDY_STATUSES).first()
        if live is None:
            raise
        raise Conflict(
            f"AI model '{model.name}' already has a study in progress (study {live.pk}, {live.status}).",
            code="study_in_progress",
        ) from exc
    for _ in range(study.parallelism):
        _trial_job_create(study)
    audit_record(
        actor=actor,
        action="study.started",
        obj=study,
        ai_model=model,
        after={
            "space": space,
            "nTrials": n_trials,
            "parallelism": study.parallelism,
            "sampler": sampler,
            "timeBudgetS": time_budget_s,
        },
    )
    return study


@transaction.atomic
def study_stop(*, actor: UserLike, study: Study) -> Study:
    """No new trial: queued trials stop at once, running ones are asked to stop; then the best
    trial so far is trained in full (or, with none complete, the study ends `stopped`)."""
    require_model_perm(actor, study.model, PERM_FINETUNE, "stop a study")
    study = Study.objects.select_for_update().select_related("model").get(pk=study.pk)
    if study.status != StudyStatus.RUNNING:
        if study.status in LIVE_STUDY_STATUSES:
            return study
        raise Conflict(f"Study {study.pk} is {study.status}; there is nothing to stop.", code="study_not_running")
    study.status = StudyStatus.STOPPING
    study.save(update_fields=["status"])
    for job in TrainingJob.objects.select_for_update().filter(
        study=study, study_role=StudyRole.TRIAL, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)
    ):
        training_job_transition(job, JobStatus.STOPPED if job.status == JobStatus.QUEUED else JobStatus.STOPPING)
    audit_record(
        actor=actor,
        action="study.stop_requested",
        obj=study,
        ai_model=study.model,
        before={"status": StudyStatus.RUNNING},
        after={"status": study.status},
    )
    transaction.on_commit(lambda: study_advance(study.pk))
    return study


def study_trial_record(*, job_id: int, **fields: Any) -> None:
    """The worker's record of its trial: number, params, state, fold scores, value."""
    StudyTrial.objects.filter(job_id=job_id).update(**fields)


def study_importance_record(*, study_id: int, importance: dict[str, float]) -> None:
    """The worker's latest parameter importances (a derived figure, not a state change: not audited)."""
    Study.objects.filter(pk=study_id).update(importance=importance)


def _best_of(study: Study) -> StudyTrial | None:
    return study.trials.filter(state=TrialState.COMPLETE, value__isnull=False).order_by("-value", "number").first()


def _final_config(study: Study, best: StudyTrial) -> dict[str, Any]:
    wire = dict(study.config)
    hyper = dict(wire.get("hyperparameters") or {})
    for key, value in best.params.items():
        if key in CONFIG_PARAMS:
            wire[key] = value
        else:
            hyper[key] = value
    wire["hyperparameters"] = hyper
    wire["earlyStoppingPatience"] = min(wire.get("earlyStoppingPatience", 0), wire["epochs"])
    return wire


def _end(study: Study, status: str, error: str = "") -> None:
    study.status, study.error, study.finished_at = status, error, timezone.now()
    study.save(update_fields=["status", "error", "finished_at", "best", "holdout", "final_job"])
    audit_record(actor=None, action=f"study.{status}", obj=study, ai_model=study.model, after={"status": status})


@transaction.atomic
def study_advance(study_id: int) -> Study | None:
    """Move a live study on: close trials whose job ended, keep `parallelism` trials live, queue the
    best config on the whole window once every trial ended, and finish when that job ends."""
    study = (
        Study.objects.select_for_update(of=("self",))
        .select_related("model", "final_job__version")
        .filter(pk=study_id)
        .first()
    )
    if study is None or study.status not in LIVE_STUDY_STATUSES:
        return study
    # A trial whose job ended without the worker recording it (lost worker, stop while queued) is FAIL.
    StudyTrial.objects.filter(study=study, job__status__in=(JobStatus.STOPPED, JobStatus.FAILED)).exclude(
        state__in=TERMINAL_TRIAL_STATES
    ).update(state=TrialState.FAIL, finished_at=timezone.now())

    if study.status == StudyStatus.FINALIZING:
        job = study.final_job
        if job is None or job.status in LIVE_JOB_STATUSES:
            return study
        if job.status == JobStatus.SUCCEEDED and job.version is not None:
            version = job.version
            score, baseline = version.accuracy, (version.baselines or {}).get("overallScore")
            study.holdout = {
                "version": version.version,
                "overallScore": score,
                "baseline": baseline,
                "edge": round(score - baseline, 6) if score is not None and baseline is not None else None,
                "window": (version.metadata or {}).get("validationWindow"),
            }
            _end(study, StudyStatus.FINISHED)
        else:
            _end(study, StudyStatus.FAILED, f"training the best trial's config ended {job.status}: {job.error}")
        return study

    trial_jobs = TrainingJob.objects.filter(study=study, study_role=StudyRole.TRIAL)
    live = trial_jobs.filter(status__in=LIVE_JOB_STATUSES).count()
    started = trial_jobs.count()
    over_budget = study.time_budget_s is not None and timezone.now() >= study.created_at + dt.timedelta(
        seconds=study.time_budget_s
    )
    if study.status == StudyStatus.RUNNING and not over_budget:
        while live < study.parallelism and started < study.n_trials:
            _trial_job_create(study)
            live, started = live + 1, started + 1
    if live:
        return study

    best = _best_of(study)
    if best is None:
        stopped = study.status == StudyStatus.STOPPING
        _end(study, StudyStatus.STOPPED if stopped else StudyStatus.FAILED, "" if stopped else "no trial completed")
        return study
    study.best = {"trialNumber": best.number, "params": best.params, "cvScore": best.value, "jobId": best.job_id}
    try:
        with transaction.atomic():
            final = TrainingJob.objects.create(
                model=study.model,
                created_by=study.created_by,
                dataset=study.dataset,
                base_version=None,
                config=_final_config(study, best),
                status=JobStatus.QUEUED,
                total_epochs=study.config.get("epochs", 0),
                study=study,
                study_role=StudyRole.FINAL,
            )
    except IntegrityError:
        _end(study, StudyStatus.FAILED, "another training job held the model when the best config was to be trained")
        return study
    final.total_epochs = final.config["epochs"]
    final.save(update_fields=["total_epochs"])
    study.final_job = final
    study.status = StudyStatus.FINALIZING
    study.save(update_fields=["status", "best", "final_job"])
    publish_job_event(final, "job.status")
    audit_record(actor=None, action="study.best_queued", obj=study, ai_model=study.model, after=study.best)
    final_id = final.pk
    transaction.on_commit(lambda: training_job_enqueue(final_id))
    return study


def studies_advance_live() -> list[int]:
    """Advance every live study (the reaper's pass): ids of those looked at."""
    ids = list(Study.objects.filter(status__in=LIVE_STUDY_STATUSES).values_list("pk", flat=True))
    for study_id in ids:
        try:
            study_advance(study_id)
        except Exception:
            logger.exception("advancing study %s failed", study_id)
    return ids
