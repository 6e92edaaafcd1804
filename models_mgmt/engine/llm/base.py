"""Check a base model directory (Hugging Face format) before it is registered, and again before
it is trained on: config, tokenizer and safetensors weights present, an architecture the trainer
supports, and the sha256 of every file, so a version's lineage names exactly what it started from.

Pure Python (json, hashlib): the web process checks a directory without importing transformers.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Decoder-only architectures whose attention/MLP projections carry the LoRA target names
# (q_proj ... down_proj) and whose adapters Ollama imports.
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "GemmaForCausalLM")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
MAX_FILES = 200


class BaseModelError(ValueError):
    """The directory is not a usable base model; `problems` says why, one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class BaseModelCheck:
    path: str
    architecture: str
    model_type: str
    parameters: int | None  # from the safetensors headers
    files: dict[str, str]  # relative name -> sha256
    eos_token: str | None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _safetensors_parameters(path: Path) -> int:
    """Count parameters from the header alone (8-byte length, then JSON), without loading weights."""
    with path.open("rb") as stream:
        size = int.from_bytes(stream.read(8), "little")
        if not 0 < size < 100_000_000:
            raise ValueError(f"{path.name} is not a safetensors file")
        header = json.loads(stream.read(size))
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for dim in info["shape"]:
            count *= int(dim)
        total += count
    return total


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


def _listed_files(root: Path) -> list[Path]:
    """Every regular file under `root` (hidden ones and symlinked directories skipped), refusing a
    directory that holds more than MAX_FILES: a base model is a few dozen files, not a file system."""
    found: list[Path] = []
    for folder, subfolders, names in os.walk(root, followlinks=False):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(names):
            path = Path(folder) / name
            if name.startswith(".") or not path.is_file():
                continue
            found.append(path)
            if len(found) > MAX_FILES:
                raise BaseModelError([f"more than {MAX_FILES} files; a base model directory holds fewer"])
    return sorted(found)


def check_base_dir(directory: str | Path, *, with_checksums: bool = True) -> BaseModelCheck:
    """Raise BaseModelError naming every problem; otherwise describe the directory."""
    root = Path(directory)
    if not root.is_absolute():
        raise BaseModelError(["give an absolute path on the server"])
    if not root.is_dir():
        raise BaseModelError([f"{root} is not a directory on the server"])
    problems: list[str] = []
    config: dict[str, Any] = {}
    try:
        config = _read_json(root / "config.json")
    except FileNotFoundError:
        problems.append("config.json is missing")
    except ValueError as exc:
        problems.append(f"config.json is unreadable: {exc}")
    architectures = config.get("architectures") or []
    architecture = architectures[0] if architectures else ""
    if config and architecture not in SUPPORTED_ARCHITECTURES:
        supported = ", ".join(SUPPORTED_ARCHITECTURES)
        problems.append(f"architecture {architecture or 'unknown'} is not supported; supported: {supported}")
    if not any((root / name).is_file() for name in TOKENIZER_FILES):
        problems.append(f"no tokenizer ({' or '.join(TOKENIZER_FILES)})")
    weights = sorted(root.glob("*.safetensors"))
    if not weights:
        problems.append("no *.safetensors weights (pickled .bin weights are refused: loading them can run code)")
    parameters: int | None = 0
    for path in weights:
        try:
            parameters = (parameters or 0) + _safetensors_parameters(path)
        except (ValueError, KeyError, OSError) as exc:
            problems.append(f"{path.name}: {exc}")
    if problems:
        raise BaseModelError(problems)
    files = _listed_files(root)
    eos: str | None = None
    special = root / "special_tokens_map.json"
    tokenizer_config = root / "tokenizer_config.json"
    for source in (special, tokenizer_config):
        if source.is_file():
            value = _read_json(source).get("eos_token")
            eos = value.get("content") if isinstance(value, dict) else value
            if eos:
                break
    return BaseModelCheck(
        path=str(root),
        architecture=architecture,
        model_type=str(config.get("model_type", "")),
        parameters=parameters or None,
        files={str(p.relative_to(root)): sha256_file(p) for p in files} if with_checksums else {},
        eos_token=eos if isinstance(eos, str) else None,
    )


def verify_base_dir(directory: str | Path, recorded: dict[str, str]) -> None:
    """Raise BaseModelError when a file recorded at registration is gone or changed."""
    root = Path(directory)
    problems = []
    for name, digest in sorted(recorded.items()):
        path = root / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != digest:
            problems.append(f"{name} changed since registration (sha256 differs)")
    if problems:
        raise BaseModelError(["the base model's files are not those registered", *problems])
