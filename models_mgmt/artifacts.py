"""Where files live on disk (each version's artifact directory, each job's work directory) and which
revision of the code wrote them."""

from __future__ import annotations

import os
import subprocess
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


def code_revision() -> str:
    """The revision recorded with a version or a backup: CODE_REVISION, else git's short HEAD, else "unknown"."""
    revision = os.environ.get("CODE_REVISION")
    if revision:
        return revision
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
