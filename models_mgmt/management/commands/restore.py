"""Restore a backup into an empty database and ARTIFACTS_DIR (docs/operations.md#backup-and-restore)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from models_mgmt.errors import ServiceError
from models_mgmt.services.backup import backup_restore


class Command(BaseCommand):
    help = "Restore a backup made by `backup` into the empty database of DATABASE_URL and an empty ARTIFACTS_DIR."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("directory", type=Path, help="a backup directory (with its manifest.json)")

    def handle(self, *args: Any, directory: Path, **_: Any) -> None:
        try:
            report = backup_restore(directory=directory)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"restored {directory}: {report.files} files verified, {report.versions_moved} version artifact "
            f"path(s) moved to this ARTIFACTS_DIR, {report.jobs_resent} queued job(s) to be sent to the broker again"
        )
        if report.pending_migrations:
            pending = len(report.pending_migrations)
            self.stdout.write(f"{pending} migration(s) of this code are not applied yet: run `manage.py migrate`")
