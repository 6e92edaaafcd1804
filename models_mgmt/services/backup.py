"""Backup and restore of a whole installation: the database and ARTIFACTS_DIR (docs/operations.md).

A backup is a directory: the database (`pg_dump -Fc` of every schema, Optuna's included, or a copy
of the SQLite file through SQLite's online backup API), `artifacts/` (a copy of ARTIFACTS_DIR),
`optuna/journal.log` on SQLite, and `manifest.json`, written last: the sha256 of every other file,
the code revision, the migrations applied per app and the row count of every table, all read from
the same snapshot as the dump. A directory without a manifest is an unfinished backup.

A restore goes only into an empty database and an empty ARTIFACTS_DIR, and only from a complete,
undamaged backup whose migrations this code knows; then it rewrites the versions' absolute
artifact paths to this ARTIFACTS_DIR and hands the queued jobs to the broker again (a Redis queue
is not part of any backup: the reaper re-sends jobs that have no `enqueued_at`).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from models_mgmt.choices import JobStatus
from models_mgmt.engine.llm.base import sha256_file
from models_mgmt.errors import Conflict, InvalidInput
from models_mgmt.models import ModelVersion, TrainingJob

from .audit import audit_record

MANIFEST = "manifest.json"
FORMAT = 1
PG_DUMP = "database.dump"
SQLITE_COPY = "database.sqlite3"
ARTIFACTS = "artifacts"
OPTUNA_JOURNAL = "optuna/journal.log"


@dataclass(frozen=True)
class RestoreReport:
    versions_moved: int
    jobs_resent: int
    files: int
    pending_migrations: list[str]  # known to this code, not applied in the backup: run `migrate`


def _tables() -> dict[str, str]:
    """label -> table of every concrete table the installed apps own (auto-created m2m ones too)."""
    tables: dict[str, str] = {}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.managed and not model._meta.proxy:
            tables.setdefault(model._meta.label_lower, model._meta.db_table)
    return dict(sorted(tables.items()))


def _snapshot_facts(cursor: Any) -> dict[str, Any]:
    """Applied migrations and row counts, read through `cursor` (the dump's snapshot)."""
    quote = connection.ops.quote_name
    counts = {}
    for label, table in _tables().items():
        cursor.execute(f"SELECT COUNT(*) FROM {quote(table)}")  # noqa: S608 - table names from the models
        counts[label] = cursor.fetchone()[0]
    cursor.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
    migrations: dict[str, list[str]] = {}
    for app, name in cursor.fetchall():
        migrations.setdefault(app, []).append(name)
    return {"migrations": migrations, "counts": counts}


def _pg_command(program: str) -> tuple[list[str], dict[str, str]]:
    """`program` with this database's connection arguments; the password goes by environment."""
    db = connection.settings_dict
    args = [program, "--dbname", db["NAME"], "--no-password"]
    for flag, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
        if db.get(key):
            args += [flag, str(db[key])]
    env = {**os.environ}
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    return args, env


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise Conflict(f"{what} failed ({args[0]} exit {done.returncode}): {done.stderr.strip()[-2000:]}")


def _dump_postgres(target: Path) -> dict[str, Any]:
    """pg_dump of every schema from an exported snapshot; the counts come from the same snapshot."""
    if connection.in_atomic_block:
        raise Conflict("a backup needs a transaction of its own: run it outside transaction.atomic()")
    connection.ensure_connection()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]
        facts = _snapshot_facts(cursor)
        args, env = _pg_command("pg_dump")
        # While this transaction stays open, pg_dump sees exactly what the counts above saw.
        _run([*args, "--format=custom", f"--snapshot={snapshot}", f"--file={target}"], env, "pg_dump")
    return facts


def _copy_sqlite(target: Path) -> dict[str, Any]:
    """SQLite's online backup API: a consistent copy while web processes and workers keep writing."""
    connection.ensure_connection()
    copy = sqlite3.connect(target)
    try:
        connection.connection.backup(copy)
        # A plain rollback-journal file: opening it later leaves no -wal/-shm files beside it.
        copy.execute("PRAGMA journal_mode=DELETE")
        return _snapshot_facts(copy.cursor())
    finally:
        copy.close()


def _files_under(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


def backup_create(*, directory: Path, code_revision: str) -> dict[str, Any]:
    """Write a backup of the database and ARTIFACTS_DIR into `directory` (new or empty); its manifest."""
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise Conflict(
            f"{directory} is not empty: a backup goes into a new or empty directory", code="target_not_empty"
        )
    artifacts = Path(settings.ARTIFACTS_DIR)
    if directory.resolve().is_relative_to(artifacts.resolve()):
        raise InvalidInput(f"{directory} is inside ARTIFACTS_DIR {artifacts}: the backup would copy itself")
    directory.mkdir(parents=True, exist_ok=True)
    vendor = connection.vendor
    if vendor == "postgresql":
        database_file = PG_DUMP
        facts = _dump_postgres(directory / PG_DUMP)
    elif vendor == "sqlite":
        database_file = SQLITE_COPY
        facts = _copy_sqlite(directory / SQLITE_COPY)
    else:
        raise InvalidInput(f"backups support PostgreSQL and SQLite, not {vendor}")
    # After the database: every version in the dump has its artifact already (a version is
    # registered only once its files are written), so the copy holds at least what the dump names.
    if artifacts.is_dir():
        shutil.copytree(artifacts, directory / ARTIFACTS, symlinks=True)
    else:
        (directory / ARTIFACTS).mkdir()
    journal = Path(settings.OPTUNA_JOURNAL_PATH)
    if vendor == "sqlite" and journal.is_file():
        (directory / OPTUNA_JOURNAL).parent.mkdir(parents=True)
        shutil.copy2(journal, directory / OPTUNA_JOURNAL)
    manifest = {
        "format": FORMAT,
        "createdAt": timezone.now().isoformat(),
        "codeRevision": code_revision,
        "database": {"vendor": vendor, "file": database_file},
        "artifactsDir": str(artifacts),  # as the versions' artifact_path values spell it
        **facts,
        "files": {str(path.relative_to(directory)): sha256_file(path) for path in _files_under(directory)},
    }
    partial = directory / f"{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    partial.rename(directory / MANIFEST)  # last, and whole: its presence means the backup is complete
    return manifest


def backup_verify(directory: Path) -> dict[str, Any]:
    """The manifest of a complete, undamaged backup that this code can restore; refusals say why."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        raise InvalidInput(
            f"{directory} is not a complete backup: it has no {MANIFEST} (written last, when a backup finishes)",
            code="backup_incomplete",
        ) from None
    except ValueError as exc:
        raise InvalidInput(f"{directory / MANIFEST} is not readable JSON: {exc}", code="backup_damaged") from exc
    if manifest.get("format") != FORMAT:
        raise InvalidInput(f"backup format {manifest.get('format')!r} is not {FORMAT}", code="backup_damaged")
    listed: dict[str, str] = manifest["files"]
    present = {str(path.relative_to(directory)) for path in _files_under(directory)} - {MANIFEST}
    problems = [f"missing: {name}" for name in sorted(set(listed) - present)]
    problems += [f"not in the manifest: {name}" for name in sorted(present - set(listed))]
    problems += [
        f"checksum mismatch: {name}"
        for name in sorted(set(listed) & present)
        if sha256_file(directory / name) != listed[name]
    ]
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise InvalidInput(f"{directory} is damaged: {shown}", code="backup_damaged")
    known = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    unknown = [
        f"{app}.{name}" for app, names in manifest["migrations"].items() for name in names if (app, name) not in known
    ]
    if unknown:
        raise InvalidInput(
            f"the backup was taken by a newer release (code revision {manifest.get('codeRevision')}): "
            f"migrations unknown to this code: {', '.join(unknown)}. Restore it with that release or a later one.",
            code="backup_newer",
        )
    return manifest


def _database_tables() -> list[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
            )
            return [row[0] for row in cursor.fetchall()]
    return sorted(connection.introspection.table_names())


def _refuse_non_empty_target(vendor: str) -> None:
    if connection.vendor != vendor:
        raise InvalidInput(
            f"the backup is of a {vendor} database; DATABASE_URL names a {connection.vendor} one", code="wrong_database"
        )
    problems = []
    tables = _database_tables()
    if tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        problems.append(f"the database {connection.settings_dict['NAME']} is not empty ({len(tables)} tables: {shown})")
    artifacts = Path(settings.ARTIFACTS_DIR)
    if artifacts.exists() and any(artifacts.iterdir()):
        problems.append(f"ARTIFACTS_DIR {artifacts} is not empty")
    journal = Path(settings.OPTUNA_JOURNAL_PATH)
    if vendor == "sqlite" and journal.is_file() and journal.stat().st_size:
        problems.append(f"the Optuna journal {journal} is not empty")
    if problems:
        raise Conflict(
            "refusing to restore over existing data: " + "; ".join(problems) + ". Restore into a new empty "
            "database and an empty ARTIFACTS_DIR.",
            code="target_not_empty",
        )


def _restore_database(directory: Path, manifest: dict[str, Any]) -> None:
    source = directory / manifest["database"]["file"]
    if manifest["database"]["vendor"] == "postgresql":
        args, env = _pg_command("pg_restore")
        # One transaction: a failure leaves the database as empty as it was. Objects are owned by the
        # role restoring them (the new installation's role may not be the old one).
        _run(
            [*args, "--single-transaction", "--exit-on-error", "--no-owner", "--no-privileges", str(source)],
            env,
            "pg_restore",
        )
    else:
        connection.ensure_connection()
        backup = sqlite3.connect(source)
        try:
            backup.backup(connection.connection)
        finally:
            backup.close()
    connection.close()  # the next query sees the restored schema from a fresh connection


def _restore_artifacts(directory: Path, manifest: dict[str, Any]) -> int:
    artifacts = Path(settings.ARTIFACTS_DIR)
    shutil.copytree(directory / ARTIFACTS, artifacts, symlinks=True, dirs_exist_ok=True)
    copied = 0
    for name, digest in manifest["files"].items():
        if name.startswith(f"{ARTIFACTS}/"):
            target = artifacts / name.removeprefix(f"{ARTIFACTS}/")
            if sha256_file(target) != digest:
                raise Conflict(
                    f"{target} differs from the backup after copying: check the storage", code="copy_damaged"
                )
            copied += 1
    if OPTUNA_JOURNAL in manifest["files"]:
        journal = Path(settings.OPTUNA_JOURNAL_PATH)
        journal.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(directory / OPTUNA_JOURNAL, journal)
        if sha256_file(journal) != manifest["files"][OPTUNA_JOURNAL]:
            raise Conflict(f"{journal} differs from the backup after copying", code="copy_damaged")
        copied += 1
    return copied


def _check_counts(manifest: dict[str, Any]) -> None:
    with connection.cursor() as cursor:
        counts = _snapshot_facts(cursor)["counts"]
    differ = [
        f"{label}: {counts.get(label)} != {n}" for label, n in manifest["counts"].items() if counts.get(label) != n
    ]
    if differ:
        raise Conflict(
            "the restored database's row counts are not the backup's: " + "; ".join(differ), code="copy_damaged"
        )


@transaction.atomic
def _rehome(old_artifacts: str) -> tuple[int, int]:
    """Versions' artifact paths under this ARTIFACTS_DIR; queued jobs handed to the broker again. Audited."""
    new_artifacts = str(Path(settings.ARTIFACTS_DIR))
    moved = 0
    if old_artifacts != new_artifacts:
        for version in ModelVersion.objects.select_related("model").filter(
            artifact_path__startswith=old_artifacts + "/"
        ):
            before = version.artifact_path
            version.artifact_path = new_artifacts + before.removeprefix(old_artifacts)
            version.save(update_fields=["artifact_path"])
            audit_record(
                actor=None,
                action="version.restored",
                obj=version,
                ai_model=version.model,
                before={"artifactPath": before},
                after={"artifactPath": version.artifact_path},
            )
            moved += 1
    # The broker's queue (Redis) is not in the backup: without `enqueued_at` the reaper sends the job
    # again. With the ORM broker the restored queue row may deliver it too; the claim runs it once.
    resent = 0
    for job in TrainingJob.objects.select_related("model").filter(status=JobStatus.QUEUED):
        job.enqueued_at = None
        job.save(update_fields=["enqueued_at"])
        audit_record(
            actor=None,
            action="job.restored",
            obj=job,
            ai_model=job.model,
            after={"reason": "restored from a backup; handed to the broker again by the reaper"},
        )
        resent += 1
    return moved, resent


def backup_restore(*, directory: Path) -> RestoreReport:
    """Restore a backup into the empty database of DATABASE_URL and the empty ARTIFACTS_DIR."""
    directory = Path(directory)
    manifest = backup_verify(directory)
    _refuse_non_empty_target(manifest["database"]["vendor"])
    _restore_database(directory, manifest)
    _check_counts(manifest)
    files = _restore_artifacts(directory, manifest)
    moved, resent = _rehome(manifest["artifactsDir"])
    applied = {(app, name) for app, names in manifest["migrations"].items() for name in names}
    pending = sorted(
        f"{app}.{name}"
        for app, name in MigrationLoader(None, ignore_no_migrations=True).disk_migrations
        if (app, name) not in applied
    )
    return RestoreReport(versions_moved=moved, jobs_resent=resent, files=files, pending_migrations=pending)
