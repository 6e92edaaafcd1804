"""A version's artifact as a tarball, for every family: its files and `manifest.json` (sha256 of
each file), checked against the manifest before a byte is sent."""

from __future__ import annotations

import re
import tarfile
import tempfile
from pathlib import Path

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request

from models_mgmt import selectors
from models_mgmt.api.errors import errors
from models_mgmt.engine.llm.artifact import MANIFEST, verify_manifest
from models_mgmt.errors import Conflict

from .base import ModelScopedView

IN_MEMORY_BYTES = 16 * 1024 * 1024  # larger tarballs spill to a temporary file


class VersionArtifactView(ModelScopedView):
    @extend_schema(
        summary="Download a version's artifact (tar.gz with manifest.json: sha256 of every file)",
        responses={
            200: OpenApiResponse(OpenApiTypes.BINARY, description="application/gzip"),
            **errors(404, 409),
        },
    )
    def get(self, request: Request, name: str, version: str) -> FileResponse:
        found = selectors.model_version_get(request.user, name, version)
        directory = Path(found.artifact_path) if found.artifact_path else None
        if directory is None or not directory.is_dir():
            raise Conflict(f"Version {version} has no artifact on this server.", code="artifact_missing")
        problems = verify_manifest(directory)
        if problems:
            raise Conflict(f"The artifact of {version} is damaged: {'; '.join(problems)}.", code="artifact_damaged")
        root = f"{re.sub(r'[^A-Za-z0-9._-]+', '-', name)}-{version}"
        buffer = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_BYTES)  # noqa: SIM115 -- FileResponse closes it
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(p for p in directory.rglob("*") if p.is_file()):
                tar.add(path, arcname=f"{root}/{path.relative_to(directory).as_posix()}", recursive=False)
        buffer.seek(0)
        response = FileResponse(buffer, as_attachment=True, filename=f"{root}.tar.gz", content_type="application/gzip")
        response["X-Artifact-Checksum"] = found.checksum
        response["X-Artifact-Manifest"] = f"{root}/{MANIFEST}"
        return response
