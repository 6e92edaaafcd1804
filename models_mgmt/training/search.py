"""A study's trial as a worker runs it: ask Optuna, score walk-forward, tell Optuna, record it.

Optuna's storage (`optuna_storage`) is Optuna's RDB storage on the product's own PostgreSQL
database, in a schema of its own (`optuna`: Optuna creates and migrates its tables there, apart from
the product's) when the product runs on PostgreSQL, and a
journal file under `OPTUNA_JOURNAL_PATH` on the embedded SQLite default (Optuna advises against
SQLite for parallel trials; the journal file is safe for several worker processes on one machine).

A trial whose worker dies is recovered by the product's own reaper (job heartbeats): the job is
requeued, and the worker that claims it again tells Optuna that the lost trial FAILed, fails the
job, and the study moves on to its next trial (`study_advance`). Every trial start also fails, in
Optuna, any trial of the study that the product already recorded as FAIL, so no stale RUNNING trial
stays behind in either storage.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from models_mgmt import selectors
from models_mgmt.choices import JobStatus, TrialState
from models_mgmt.engine import timeframes
from models_mgmt.engine.config import FineTuningConfig
from models_mgmt.engine.spec import TrainingSpec
from models_mgmt.models import StudyTrial, TrainingJob
from models_mgmt.services.studies import study_importance_record, study_trial_record
from models_mgmt.services.training_jobs import training_job_finish

from .progress import JobProgress

logger = logging.getLogger(__name__)


OPTUNA_SETUP_LOCK = 0x7EC4A4A1  # pg_advisory_lock key: "TechAnal's Optuna set-up"


def _rdb_storage(optuna: Any, url: str) -> Any:
    from sqlalchemy.pool import NullPool  # heavy: the search runs in the training worker only

    # NullPool: no connection outlives a storage call, so a long-lived worker keeps none open
    # between trials (and a test database can be dropped).
    return optuna.storages.RDBStorage(
        url, engine_kwargs={"poolclass": NullPool, "connect_args": {"options": "-c search_path=optuna"}}
    )


def optuna_storage() -> Any:
    """PostgreSQL: Optuna's RDB storage on the product's database; SQLite: a journal file."""
    import optuna  # heavy: the search runs in the training worker only
    from optuna.storages.journal import JournalFileBackend  # heavy: the search runs in the worker only

    db = connection.settings_dict  # the database this process really uses (a test database in tests)
    if "postgresql" in db["ENGINE"]:
        from sqlalchemy.engine import URL  # heavy: the search runs in the training worker only

        url = URL.create(
            "postgresql+psycopg",
            username=db.get("USER") or None,
            password=db.get("PASSWORD") or None,
            host=db.get("HOST") or None,
            port=int(db["PORT"]) if db.get("PORT") else None,
            database=db["NAME"],
        )
        with connection.cursor() as cursor:
            # Two workers starting their first trials at once would race to create the schema and
            # Optuna's tables (CREATE ... IF NOT EXISTS is not safe under concurrency in PostgreSQL):
            # a session-level advisory lock makes the set-up one at a time.
            cursor.execute("SELECT pg_advisory_lock(%s)", [OPTUNA_SETUP_LOCK])
            try:
                cursor.execute("CREATE SCHEMA IF NOT EXISTS optuna")
                return _rdb_storage(optuna, url.render_as_string(hide_password=False))
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [OPTUNA_SETUP_LOCK])
    path = Path(settings.OPTUNA_JOURNAL_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _load(study_row: Any, seed: int) -> Any:
    import optuna  # heavy: the search runs in the training worker only

    from models_mgmt.engine.search import pruner, sampler  # heavy: its functions import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=study_row.optuna_name,
        storage=optuna_storage(),
        direction="maximize",
        sampler=sampler(study_row.sampler, seed=seed),
        pruner=pruner(study_row.pruning),
        load_if_exists=True,
    )


def _fail_recorded_losses(study: Any, study_row: Any) -> None:
    """Tell Optuna FAIL for every trial the product recorded as FAIL but Optuna still runs."""
    import optuna  # heavy: the search runs in the training worker only

    running = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    lost = StudyTrial.objects.filter(study=study_row, state=TrialState.FAIL, number__in=running)
    for number in lost.values_list("number", flat=True):
        study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


MIN_TRIALS_FOR_IMPORTANCE = 5


def _record_importance(study: Any, study_id: int) -> None:
    """Each parameter's share of the objective's variation, once enough trials completed.

    PED-ANOVA (Optuna's own, no scikit-learn) compares the best quantile of trials with all of them."""
    import optuna  # heavy: the search runs in the training worker only

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return
    try:
        importance = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
        )
    except Exception:  # too little variation, or a single value: no importance to show
        logger.info("no parameter importance for study %s yet", study_id, exc_info=True)
        return
    study_importance_record(study_id=study_id, importance={k: round(float(v), 6) for k, v in importance.items()})


def trial_run(job: TrainingJob, progress: JobProgress) -> str:
    """Run the trial of a claimed trial job to one outcome; the job's final status."""
    import optuna  # heavy: the search runs in the training worker only

    from models_mgmt.engine.search import decode_params, trial_evaluate  # heavy: trains networks (torch)

    study_row = job.study
    assert study_row is not None
    trial_row = StudyTrial.objects.get(job=job)
    try:
        study = _load(study_row, seed=job.pk)
    except Exception as exc:  # the storage cannot be reached or set up: this trial fails, the study goes on
        logger.exception("trial job %s could not open the study's storage", job.pk)
        study_trial_record(job_id=job.pk, state=TrialState.FAIL, finished_at=timezone.now())
        progress.close()
        reason = f"the study's Optuna storage failed: {type(exc).__name__}: {exc}"[:2000]
        training_job_finish(job.pk, JobStatus.FAILED, job.worker, error_code="training_error", error=reason)
        return JobStatus.FAILED
    if trial_row.number is not None:
        # Asked before by a worker that was lost mid-trial: that trial ends FAIL, the study goes on.
        study.tell(trial_row.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        study_trial_record(job_id=job.pk, state=TrialState.FAIL, finished_at=timezone.now())
        progress.close()
        training_job_finish(
            job.pk, JobStatus.FAILED, job.worker, error_code="worker_lost", error="the worker was lost mid-trial"
        )
        return JobStatus.FAILED
    _fail_recorded_losses(study, study_row)

    trial = study.ask()
    study_trial_record(job_id=job.pk, number=trial.number, state=TrialState.RUNNING, started_at=timezone.now())
    config = FineTuningConfig.from_wire(job.config)
    folds: list[float] = []

    def on_fold(fold: dict[str, Any]) -> None:
        folds.append(fold["edge"]["overallScore"])
        if progress.meter is not None:
            progress.meter.add_units(int(fold.get("trainSamples", 0)) * int(fold.get("epochsRun", 0)))
        study_trial_record(job_id=job.pk, fold_scores=list(folds), params=decode_params(trial.params, study_row.space))
        progress.on_phase("evaluating")

    state, value, report, status, error = TrialState.FAIL, None, None, JobStatus.FAILED, ""
    try:
        progress.on_phase("loading_data")
        spec = TrainingSpec.from_config(
            config, family=job.model.family, bars_per_year=timeframes.timeframe(job.dataset.timeframe).bars_per_year
        )
        bars = selectors.dataset_bars_frame(
            job.dataset,
            start=timeframes.parse_bar_time(config.start_date) if config.start_date else None,
            end=timeframes.parse_bar_time(config.end_date) if config.end_date else None,
        )
        progress.on_phase("training")
        report = trial_evaluate(
            trial,
            spec,
            bars,
            space=study_row.space,
            family_name=job.model.family,
            should_stop=progress.should_stop,
            on_fold=on_fold,
        )
        if report is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            status = JobStatus.STOPPED
        else:
            value = report["objective"]
            study.tell(trial, value)
            state, status = TrialState.COMPLETE, JobStatus.SUCCEEDED
    except optuna.TrialPruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        state, status = TrialState.PRUNED, JobStatus.SUCCEEDED
    except Exception as exc:
        if not isinstance(exc, ValueError):
            logger.exception("trial job %s failed", job.pk)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        error = f"{type(exc).__name__}: {exc}"[:2000]
    study_trial_record(
        job_id=job.pk,
        state=state,
        value=value,
        params=decode_params(trial.params, study_row.space),
        fold_scores=folds,
        report={k: v for k, v in (report or {}).items() if k != "params"},
        finished_at=timezone.now(),
    )
    if state == TrialState.COMPLETE:
        _record_importance(study, study_row.pk)
    progress.close()  # the last progress event goes out before the terminal status
    if progress.taken_over.is_set():
        return "abandoned"
    fields: dict[str, Any] = {"progress": 100.0} if status == JobStatus.SUCCEEDED else {}
    if error:
        fields.update(error_code="training_error", error=error)
    training_job_finish(job.pk, status, job.worker, **fields)
    return status
