"""The artifact of an `llm-lora` version: a directory that says what was trained and how to serve it.

* `adapter/adapter_model.safetensors`, `adapter/adapter_config.json` -- the LoRA adapter (peft);
* `prompt_template.json` -- prompt features, answer pieces, options and the answer's JSON schema;
* `Modelfile` -- Ollama: `FROM <base tag>`, `ADAPTER ./adapter`, template, stop tokens;
* `training.json` -- spec, metrics, baselines, backtest, history, lineage (base model and its
  sha256s, dataset window, config, seed);
* `data_manifest.json` -- windows, example counts and digests of the examples;
* `manifest.json` -- sha256 of every file above (relative paths) and `checksum`, the sha256 of the
  sorted "path sha256" lines, as for the MLP family's artifact.

Written under a temporary name beside the destination, then renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import sha256_file
from .modelfile import ADAPTER_DIR, render_modelfile
from .prompts import template_document

MANIFEST = "manifest.json"
MODELFILE = "Modelfile"
PROMPT_TEMPLATE = "prompt_template.json"
TRAINING = "training.json"
DATA_MANIFEST = "data_manifest.json"


@dataclass(frozen=True)
class LlmArtifactInfo:
    path: str
    checksum: str
    files: dict[str, str]


def combined_checksum(files: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{name} {files[name]}\n" for name in sorted(files)).encode()).hexdigest()


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False))


def directory_files(directory: Path) -> dict[str, str]:
    """sha256 of every file under `directory` except the manifest, by relative POSIX path."""
    return {
        path.relative_to(directory).as_posix(): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.relative_to(directory).as_posix() != MANIFEST
    }


def write_llm_artifact(
    destination: str | Path,
    *,
    model: Any,
    base_tag: str,
    base_name: str,
    stop: list[str],
    num_ctx: int,
    training: dict[str, Any],
    data_manifest: dict[str, Any],
    title: str,
) -> LlmArtifactInfo:
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        adapter = staging / ADAPTER_DIR
        model.save_pretrained(str(adapter), safe_serialization=True)
        config_path = adapter / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = base_name  # the server path of the base means nothing elsewhere
        _write_json(config_path, config)
        (adapter / "README.md").unlink(missing_ok=True)  # peft's model card template, empty here
        _write_json(staging / PROMPT_TEMPLATE, template_document())
        (staging / MODELFILE).write_text(render_modelfile(base_tag=base_tag, stop=stop, num_ctx=num_ctx, title=title))
        _write_json(staging / TRAINING, training)
        _write_json(staging / DATA_MANIFEST, data_manifest)
        files = directory_files(staging)
        checksum = combined_checksum(files)
        _write_json(staging / MANIFEST, {"files": files, "checksum": checksum, "algorithm": "sha256"})
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return LlmArtifactInfo(str(destination), checksum, files)


def verify_manifest(directory: str | Path) -> list[str]:
    """Problems with a version directory against its manifest (empty: every file is as recorded).
    Works for both families' artifacts."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        recorded: dict[str, str] = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return ["manifest.json is missing or unreadable"]
    actual = directory_files(directory)
    problems = [f"{name} is missing" for name in sorted(set(recorded) - set(actual))]
    problems += [f"{name} is not in the manifest" for name in sorted(set(actual) - set(recorded))]
    problems += [f"{name} changed" for name in sorted(set(actual) & set(recorded)) if actual[name] != recorded[name]]
    if not problems and combined_checksum(recorded) != manifest.get("checksum"):
        problems.append("the manifest's checksum does not match its files")
    return problems
