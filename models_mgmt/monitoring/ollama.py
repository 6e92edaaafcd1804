"""Ollama: delivering an `llm-lora` version (adapter blobs + `/api/create`) and serving predictions
from it (`/api/generate` with a JSON-schema `format`).

The REST contract used (https://github.com/ollama/ollama/blob/main/docs/api.md):

* `HEAD /api/blobs/sha256:<hex>` -- 200 when the server already holds the blob;
* `POST /api/blobs/sha256:<hex>` -- the file as the body; 201 when stored;
* `POST /api/create` -- `{"model", "from", "adapters": {file: digest}, "template", "parameters"}`,
  answered by a stream of JSON lines `{"status": ...}` ending in `success`, or `{"error": ...}`;
  the fallback sends `"files"` (a merged model's safetensors, config and tokenizer) instead of
  `from` + `adapters`;
* `POST /api/generate` -- `{"model", "prompt", "format": <schema>, "stream": false, "options"}`.

Network calls happen at the edge, before the activation's transaction and outside it; the merge
fallback runs `engine.llm.merge` in a child process, so the web process never imports torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from models_mgmt.choices import PERM_ACTIVATE, VersionStatus
from models_mgmt.engine.families import LLM_LORA
from models_mgmt.engine.labels import TASKS
from models_mgmt.engine.llm.artifact import MANIFEST, verify_manifest
from models_mgmt.engine.llm.base import sha256_file
from models_mgmt.engine.llm.modelfile import ADAPTER_DIR, TEMPLATE, ollama_parameters
from models_mgmt.engine.llm.prompts import answer_schema, parse_answer, render_prompt
from models_mgmt.errors import Conflict, Unavailable
from models_mgmt.models import AIModel, BaseModel, ModelVersion
from models_mgmt.permissions import UserLike, require_model_perm

from .windows import hyper

logger = logging.getLogger(__name__)
MERGE_TIMEOUT_S = 3600
MAX_LOGGED_STATUS = 200


class OllamaError(Exception):
    """The server answered with an error (`message` is its words) or could not be reached."""

    def __init__(self, message: str, *, unreachable: bool = False, not_found: bool = False):
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable
        self.not_found = not_found


def digest_of(sha256_hex: str) -> str:
    return f"sha256:{sha256_hex}"


@dataclass(frozen=True)
class OllamaClient:
    base_url: str
    timeout_s: float = 600.0

    def _request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 -- the operator's OLLAMA_URL, http(s) only
            self.base_url.rstrip("/") + path, data=body, method=method, headers=headers or {}
        )
        try:
            return urllib.request.urlopen(request, timeout=self.timeout_s)  # noqa: S310
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            with contextlib.suppress(ValueError, AttributeError):
                detail = json.loads(detail).get("error", detail)
            raise OllamaError(f"{method} {path}: HTTP {exc.code}: {detail}"[:2000], not_found=exc.code == 404) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise OllamaError(f"Ollama at {self.base_url} is unreachable: {exc}", unreachable=True) from exc

    def has_blob(self, sha256_hex: str) -> bool:
        try:
            with self._request("HEAD", f"/api/blobs/{digest_of(sha256_hex)}"):
                return True
        except OllamaError as exc:
            if exc.not_found:
                return False
            raise

    def push_blob(self, path: Path, sha256_hex: str) -> bool:
        """Upload `path` unless the server has it; True when it was uploaded."""
        if self.has_blob(sha256_hex):
            return False
        size = path.stat().st_size
        with path.open("rb") as stream:
            headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
            with self._request("POST", f"/api/blobs/{digest_of(sha256_hex)}", body=stream, headers=headers):
                return True

    def create(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST /api/create, yielding each streamed status line; OllamaError on an error line."""
        body = json.dumps({**payload, "stream": True}).encode()
        with self._request("POST", "/api/create", body=body, headers={"Content-Type": "application/json"}) as reply:
            for raw in reply:
                line = raw.strip()
                if not line:
                    continue
                message = json.loads(line)
                if "error" in message:
                    raise OllamaError(str(message["error"]))
                yield message

    def generate(self, model: str, prompt: str, *, schema: dict[str, Any]) -> str:
        body = json.dumps(
            {"model": model, "prompt": prompt, "format": schema, "stream": False, "options": {"temperature": 0}}
        ).encode()
        with self._request("POST", "/api/generate", body=body, headers={"Content-Type": "application/json"}) as reply:
            return str(json.loads(reply.read()).get("response", ""))


def client() -> OllamaClient | None:
    return OllamaClient(settings.OLLAMA_URL, settings.OLLAMA_TIMEOUT_S) if settings.OLLAMA_URL else None


def ollama_model_name(model_name: str, version: str) -> str:
    """The name a version gets on the Ollama server: `techanal-<model>:<version>`, lower-case."""
    return f"techanal-{re.sub(r'[^a-z0-9._-]+', '-', model_name.lower()).strip('-')}:{version}"


def _manifest_files(directory: Path) -> dict[str, str]:
    problems = verify_manifest(directory)
    if problems:
        raise Conflict(f"The artifact at {directory} is damaged: {'; '.join(problems)}.", code="artifact_damaged")
    return dict(json.loads((directory / MANIFEST).read_text())["files"])


def _create(api: OllamaClient, payload: dict[str, Any], log: list[str]) -> None:
    for message in api.create(payload):
        if len(log) < MAX_LOGGED_STATUS:
            log.append(str(message.get("status", message)))


def deliver(api: OllamaClient, version: ModelVersion, base: BaseModel) -> dict[str, Any]:
    """Push the adapter and create the model; when the server refuses the adapter, merge it into
    the base (child process) and create the model from the merged safetensors instead."""
    directory = Path(version.artifact_path)
    files = _manifest_files(directory)
    adapter = {
        name.removeprefix(f"{ADAPTER_DIR}/"): digest
        for name, digest in files.items()
        if name.startswith(f"{ADAPTER_DIR}/")
    }
    name = ollama_model_name(version.model.name, version.version)
    stop = [base.eos_token] if base.eos_token else []
    num_ctx = int(((version.metadata or {}).get("hyperparameters") or {}).get("maxSequenceLength", 2048))
    common = {"model": name, "template": TEMPLATE, "parameters": ollama_parameters(stop=stop, num_ctx=num_ctx)}
    log: list[str] = []
    uploaded = 0
    for file, digest in sorted(adapter.items()):
        uploaded += api.push_blob(directory / ADAPTER_DIR / file, digest)
    try:
        _create(
            api, {**common, "from": base.ollama_tag, "adapters": {f: digest_of(d) for f, d in adapter.items()}}, log
        )
        return {
            "ollamaModel": name,
            "method": "adapter",
            "from": base.ollama_tag,
            "blobsUploaded": uploaded,
            "status": log,
        }
    except OllamaError as exc:
        if exc.unreachable:
            raise
        refused = exc.message
        log.append(f"adapter refused: {refused}")
    with tempfile.TemporaryDirectory(prefix="techanal-merge-") as scratch:
        merged = Path(scratch)
        done = subprocess.run(  # noqa: S603 -- fixed module, paths from the registry
            [
                sys.executable,
                "-m",
                "models_mgmt.engine.llm.merge",
                base.path,
                str(directory / ADAPTER_DIR),
                str(merged),
            ],
            capture_output=True,
            text=True,
            timeout=MERGE_TIMEOUT_S,
            cwd=settings.BASE_DIR,
        )
        if done.returncode != 0:
            raise OllamaError(f"the server refused the adapter ({refused}) and merging failed: {done.stderr[-1000:]}")
        merged_files = {p.name: sha256_file(p) for p in sorted(merged.iterdir()) if p.is_file()}
        for file, digest in merged_files.items():
            uploaded += api.push_blob(merged / file, digest)
        _create(api, {**common, "files": {f: digest_of(d) for f, d in merged_files.items()}}, log)
    return {
        "ollamaModel": name,
        "method": "merged",
        "adapterRefused": refused,
        "blobsUploaded": uploaded,
        "status": log,
    }


def activation_delivery(*, actor: UserLike, model: AIModel, version: str) -> dict[str, Any] | None:
    """Run before activating: for an llm-lora version with OLLAMA_URL set, deliver it to Ollama.

    None when there is nothing to deliver (another family, no OLLAMA_URL, an unknown version --
    the activation reports that). A refusal or an unreachable server stops the activation.
    """
    api = client()
    if api is None or model.family != LLM_LORA.name:
        return None
    require_model_perm(actor, model, PERM_ACTIVATE, "activate versions")
    target = model.versions.filter(version=version).exclude(status=VersionStatus.FAILED).first()
    if target is None or not target.artifact_path:
        return None
    base = BaseModel.objects.filter(name=((target.metadata or {}).get("lineage") or {}).get("baseModel", "")).first()
    if base is None:
        raise Conflict(f"The base model of {version} is no longer registered.", code="base_model_missing")
    try:
        return deliver(api, target, base)
    except OllamaError as exc:
        code = "ollama_unreachable" if exc.unreachable else "ollama_refused"
        raise Unavailable(
            f"Ollama did not take version {version}; nothing was activated: {exc.message}", code=code
        ) from exc


@dataclass(frozen=True)
class OllamaServedVersion:
    """Serves an active llm-lora version through Ollama, in the interface of `serving.ServedVersion`."""

    version: str
    ollama_model: str
    api: OllamaClient
    horizon: int
    breakout_window: int
    tasks: tuple[str, ...] = TASKS

    def run(self, features: Any) -> Any:
        import numpy as np  # heavy: loaded on first use, not when the module is imported

        rows = []
        for row in np.asarray(features, dtype=np.float64):
            prompt = render_prompt(row, horizon=self.horizon, breakout_window=self.breakout_window)
            try:
                answer = self.api.generate(self.ollama_model, prompt, schema=answer_schema())
            except OllamaError as exc:
                if exc.not_found:
                    raise Conflict(
                        f"Version {self.version} is not on the Ollama server ({self.ollama_model}); "
                        "activate it again to deliver it.",
                        code="not_delivered",
                    ) from exc
                raise Unavailable(f"Ollama could not answer: {exc.message}", code="ollama_unreachable") from exc
            try:
                rows.append([float(v) for v in parse_answer(answer)])
            except ValueError as exc:
                raise Unavailable(f"Ollama's answer is not the schema's: {exc}", code="ollama_bad_answer") from exc
        return np.asarray(rows, dtype=np.float64)


def served_llm(model: AIModel, active: ModelVersion) -> OllamaServedVersion:
    """The active llm-lora version as served by Ollama; 409 when no Ollama server is configured."""
    api = client()
    if api is None:
        raise Conflict(
            f"AI model '{model.name}' is an llm-lora model: it is served by Ollama, and OLLAMA_URL is not set on "
            "this server. Download the version's artifact (Modelfile + adapter) to serve it elsewhere.",
            code="ollama_not_configured",
        )
    horizon, breakout = hyper(active)
    return OllamaServedVersion(active.version, ollama_model_name(model.name, active.version), api, horizon, breakout)
