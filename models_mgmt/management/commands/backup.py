"""Back up the database and ARTIFACTS_DIR into a new directory (docs/operations.md#backup-and-restore)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from models_mgmt.artifacts import code_revision
from models_mgmt.errors import ServiceError
from models_mgmt.services.backup import backup_create


class Command(BaseCommand):
    help = "Back up the database (pg_dump -Fc, or SQLite's online backup) and ARTIFACTS_DIR into DIR, manifest last."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("directory", type=Path, help="a new or empty directory")

    def handle(self, *args: Any, directory: Path, **_: Any) -> None:
        try:
            manifest = backup_create(directory=directory, code_revision=code_revision())
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        counts = manifest["counts"]
        self.stdout.write(
            f"backed up {manifest['database']['vendor']} ({counts.get('models_mgmt.modelversion', 0)} versions, "
            f"{counts.get('models_mgmt.trainingjob', 0)} jobs) and {manifest['artifactsDir']}: "
            f"{len(manifest['files'])} files in {directory}, code revision {manifest['codeRevision']}"
        )
