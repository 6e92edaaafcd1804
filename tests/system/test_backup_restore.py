"""Backup and restore (docs/operations.md#backup-and-restore): a restore into a new empty database and
ARTIFACTS_DIR serves the same versions, and predicts the same from the restored artifacts.

The backup is taken of the test database in this process; the restore and every check of the
restored installation run in fresh processes whose DATABASE_URL names a new database (a new file
on SQLite, a new database on the same PostgreSQL server), as a second installation would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import environ
import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken

from models_mgmt.choices import Role
from models_mgmt.models import TrainingJob
from models_mgmt.services import dataset_import_builtin
from models_mgmt.training.worker import training_job_execute
from tests.factories import AIModelFactory, UserFactory, grant
from tests.jobs.helpers import start
from tests.live import database_url

pytestmark = pytest.mark.slow  # starts real processes (restore, then a check of the restored database)

ROOT = Path(__file__).resolve().parents[2]
QUICK = {"epochs": 2, "startDate": "2016-01-01"}
API = "/api/model-management/models"
OPTUNA_PROBE = "a study's trials\n"
PREDICT = {"dataset": "sp500", "asOf": "2018-06-29"}
# Run in the restored installation: the versions as the API lists them, a prediction of the active
# version, where its artifact now lives, and what the reaper does with the restored queued job.
CHECK = """
import json, os
import django
django.setup()
from rest_framework.test import APIClient
from models_mgmt.models import ModelVersion, TrainingJob
from models_mgmt.training.reaper import training_jobs_reap
client = APIClient(SERVER_NAME="localhost", HTTP_AUTHORIZATION="Bearer " + os.environ["TOKEN"])
model = os.environ["MODEL"]
versions = client.get(f"/api/model-management/models/{model}/versions")
body = json.loads(os.environ["PREDICT"])
predicted = client.post(f"/api/model-management/models/{model}/predict", body, format="json")
print(json.dumps({
    "versions": versions.json(),
    "prediction": {k: predicted.json()[k] for k in ("version", "asOf", "outputs")},
    "artifactPaths": sorted(ModelVersion.objects.values_list("artifact_path", flat=True)),
    "queuedNotEnqueued": list(TrainingJob.objects.filter(status="queued", enqueued_at=None).values_list("pk", flat=1)),
    "reaped": training_jobs_reap(),
}))
"""


@pytest.fixture
def restored_database_url() -> Iterator[str]:
    """A URL naming a database that does not exist yet (SQLite: created on first use, empty)."""
    if connection.vendor == "sqlite":
        path = Path(connection.settings_dict["NAME"]).with_name(f"restored-{os.getpid()}.sqlite3")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        yield f"sqlite:///{path}"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    # Named after the configured database (not the test one): techanal_ops -> techanal_ops_restored_<pid>.
    name = f"{environ.Env.db_url_config(os.environ['DATABASE_URL'])['NAME']}_restored_{os.getpid()}"
    s = connection.settings_dict
    server = {"host": s["HOST"] or "127.0.0.1", "port": s["PORT"] or 5432, "user": s["USER"], "dbname": "postgres"}
    if s["PASSWORD"]:
        server["password"] = s["PASSWORD"]
    with psycopg.connect(**server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield database_url().rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(**server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _optuna_storage_written(journal: Path) -> Iterator[None]:
    """Something in Optuna's storage: its journal file (SQLite) or a table in its schema (PostgreSQL)."""
    if connection.vendor == "sqlite":
        journal.write_text(OPTUNA_PROBE)
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA IF NOT EXISTS optuna")
        cursor.execute("CREATE TABLE optuna.backup_probe (note text)")
        cursor.execute("INSERT INTO optuna.backup_probe VALUES (%s)", [OPTUNA_PROBE])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE optuna.backup_probe")


def _environment(url: str, artifacts: Path, journal: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": url,
        "ARTIFACTS_DIR": str(artifacts),
        "OPTUNA_JOURNAL_PATH": str(journal),
        "ENV_FILE": "/nonexistent",
        "PYTHON": sys.executable,
        **extra,
    }
    env.pop("REDIS_URL", None)  # the restored installation's broker is its database (django-q2's ORM broker)
    return env


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_a_restore_into_an_empty_database_serves_the_same_versions(
    transactional_db, settings, tmp_path, api, restored_database_url
):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.OPTUNA_JOURNAL_PATH = tmp_path / "optuna.log"
    owner = UserFactory(role=Role.MAINTAINER)  # a role that may read datasets: predict names one
    model = AIModelFactory(name="backed-up", owner=owner, default_dataset=dataset_import_builtin(name="sp500"))
    grant(model.owner, model, Role.MAINTAINER)
    assert training_job_execute(job_id=start(api, model, QUICK)).version == "v1.0.0"
    assert api(model.owner).post(f"{API}/{model.name}/versions/v1.0.0/activate").status_code == 200
    assert training_job_execute(job_id=start(api, model, QUICK)).version == "v1.1.0"
    queued = start(api, model, QUICK)  # never run: its broker message is not part of the backup
    TrainingJob.objects.filter(pk=queued).update(created_at=timezone.now() - timedelta(minutes=5))
    assert TrainingJob.objects.get(pk=queued).enqueued_at is not None
    served = api(model.owner).get(f"{API}/{model.name}/versions").json()
    assert [(v["version"], v["status"]) for v in served["results"]] == [("v1.1.0", "ready"), ("v1.0.0", "active")]

    backup = tmp_path / "backup"
    with _optuna_storage_written(settings.OPTUNA_JOURNAL_PATH):
        call_command("backup", str(backup))
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["counts"]["models_mgmt.modelversion"] == 2 and manifest["counts"]["models_mgmt.trainingjob"] == 3
    assert manifest["migrations"]["models_mgmt"] and manifest["database"]["vendor"] == connection.vendor
    predicted = api(model.owner).post(f"{API}/{model.name}/predict", PREDICT, format="json")
    assert predicted.status_code == 200, predicted.data
    original = predicted.json()
    # The originals are moved away: whatever the restored installation serves comes from the backup.
    shutil.move(tmp_path / "artifacts", tmp_path / "moved-away")

    target = tmp_path / "restored-artifacts"
    env = _environment(
        restored_database_url,
        target,
        tmp_path / "restored-optuna.log",
        TOKEN=str(RefreshToken.for_user(model.owner).access_token),
        MODEL=model.name,
        PREDICT=json.dumps(PREDICT),
    )
    restored = _run(["bin/restore", str(backup)], env)
    assert restored.returncode == 0, restored.stderr
    assert "2 version artifact path(s) moved" in restored.stdout and "1 queued job(s)" in restored.stdout
    checked = _run([sys.executable, "-c", CHECK], env)
    assert checked.returncode == 0, checked.stderr
    result = json.loads(checked.stdout.strip().splitlines()[-1])
    assert result["versions"] == served
    assert result["prediction"] == {k: original[k] for k in ("version", "asOf", "outputs")}
    assert result["prediction"]["version"] == "v1.0.0"
    assert all(path.startswith(f"{target}/models/") for path in result["artifactPaths"]), result["artifactPaths"]
    assert result["queuedNotEnqueued"] == [queued] and result["reaped"] == [[queued, "enqueued"]]

    if connection.vendor == "sqlite":
        assert (tmp_path / "restored-optuna.log").read_text() == OPTUNA_PROBE
    else:
        with psycopg.connect(restored_database_url) as restored_db:
            assert restored_db.execute("SELECT note FROM optuna.backup_probe").fetchall() == [(OPTUNA_PROBE,)]

    again = _run(["bin/restore", str(backup)], {**env, "ARTIFACTS_DIR": str(tmp_path / "elsewhere")})
    assert again.returncode != 0
    assert "refusing to restore over existing data" in again.stderr and "is not empty" in again.stderr


def test_a_damaged_incomplete_or_newer_backup_is_refused(transactional_db, settings, tmp_path):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    weights = settings.ARTIFACTS_DIR / "models" / "m" / "v1.0.0" / "weights.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")
    backup = tmp_path / "backup"
    call_command("backup", str(backup))
    with pytest.raises(CommandError, match="is not empty: a backup goes into a new or empty directory"):
        call_command("backup", str(backup))
    with pytest.raises(CommandError, match="is inside ARTIFACTS_DIR"):
        call_command("backup", str(settings.ARTIFACTS_DIR / "backup"))
    # Each check reads the backup before it looks at the target: the test database is not empty,
    # and it is the backup that is refused.
    copy = backup / "artifacts" / "models" / "m" / "v1.0.0" / "weights.safetensors"
    copy.write_bytes(b"weightz")
    with pytest.raises(CommandError, match=r"is damaged: checksum mismatch: artifacts/models/m/v1\.0\.0/weights"):
        call_command("restore", str(backup))
    copy.write_bytes(b"weights")

    manifest = backup / "manifest.json"
    manifest.rename(tmp_path / "manifest.json")
    with pytest.raises(CommandError, match=r"is not a complete backup: it has no manifest\.json"):
        call_command("restore", str(backup))
    (tmp_path / "manifest.json").rename(manifest)

    # What a newer release's backup says: a migration this code does not have.
    content = json.loads(manifest.read_text())
    content["migrations"]["models_mgmt"].append("9999_from_a_newer_release")
    manifest.write_text(json.dumps(content))
    with pytest.raises(CommandError, match=r"newer release .* unknown to this code: models_mgmt\.9999_from_a_newer"):
        call_command("restore", str(backup))
    content["migrations"]["models_mgmt"].pop()
    manifest.write_text(json.dumps(content))
    with pytest.raises(CommandError, match=r"refusing to restore over existing data: the database .* is not empty"):
        call_command("restore", str(backup))
    assert weights.read_bytes() == b"weights"  # every refusal left the target alone
