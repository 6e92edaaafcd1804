"""Where files live on disk: each version's artifact directory and each job's work directory."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from models_mgmt.models import TrainingJob


def job_work_dir(job: TrainingJob) -> Path:
    """Checkpoints and the artifact being written while the job runs."""
    return Path(settings.ARTIFACTS_DIR) / "jobs" / str(job.uid)


def model_artifacts_dir(model_name: str) -> Path:
    return Path(settings.ARTIFACTS_DIR) / "models" / model_name.replace(":", "_")


def version_dir(model_name: str, version: str) -> Path:
    return model_artifacts_dir(model_name) / version
