"""The artifact of one model version: a directory of files that fully describes the model.

Files (all listed with their sha256 in `manifest.json`, whose `checksum` is the sha256 of the
sorted "name sha256" lines, so one value certifies the whole directory):

* `weights.safetensors` -- the network's state dict (safetensors: loading it cannot run code);
* `architecture.json` -- what to build before loading the weights;
* `normalization.json` -- training-window feature means and standard deviations;
* `feature_summary.json` -- training feature and prediction distributions, for drift detection;
* `model.onnx` -- raw features in, the three probabilities out (normalisation included), for
  serving without PyTorch; it matches PyTorch within 1e-5;
* `training.json` -- the spec, metrics, baselines, backtest and per-epoch history.

The directory is assembled under a temporary name beside its destination and renamed into place,
so a reader never sees a half-written artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .dataset import Normalization
from .distribution import summarize
from .network import Architecture, MultiTaskNet, ServingModel

WEIGHTS = "weights.safetensors"
ARCHITECTURE = "architecture.json"
NORMALIZATION = "normalization.json"
FEATURE_SUMMARY = "feature_summary.json"
ONNX = "model.onnx"
TRAINING = "training.json"
MANIFEST = "manifest.json"
ONNX_OPSET = 17
LATENCY_WARMUP_RUNS = 50
LATENCY_RUNS = 300


@dataclass(frozen=True)
class ArtifactInfo:
    path: str
    checksum: str
    files: dict[str, str]  # name -> sha256
    response_time_ms: float


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _combined(files: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{name} {files[name]}\n" for name in sorted(files)).encode()).hexdigest()


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False))


def export_onnx(model: MultiTaskNet, normalization: Normalization, path: Path) -> None:
    """Export `ServingModel` with a dynamic batch axis (the TorchScript exporter: no onnxscript)."""
    serving = ServingModel(model, list(normalization.mean), list(normalization.std)).eval()
    example = torch.zeros(1, model.architecture.input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(
            serving,
            (example,),
            str(path),
            dynamo=False,
            input_names=["features"],
            output_names=["probabilities"],
            dynamic_axes={"features": {0: "batch"}, "probabilities": {0: "batch"}},
            opset_version=ONNX_OPSET,
        )


def onnx_session(path: str | Path) -> Any:
    import onnxruntime as ort  # heavy: loaded when a version is first served

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a single sample gains nothing from threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure_response_time_ms(onnx_path: str | Path, input_size: int) -> float:
    """Median wall time, in milliseconds, of one single-sample onnxruntime inference
    (`LATENCY_RUNS` runs after `LATENCY_WARMUP_RUNS` warm-up runs)."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    session = onnx_session(onnx_path)
    sample = {"features": np.zeros((1, input_size), dtype=np.float32)}
    for _ in range(LATENCY_WARMUP_RUNS):
        session.run(None, sample)
    timings = []
    for _ in range(LATENCY_RUNS):
        begin = time.perf_counter_ns()
        session.run(None, sample)
        timings.append(time.perf_counter_ns() - begin)
    return round(statistics.median(timings) / 1e6, 4)


def write_artifact(
    destination: str | Path,
    *,
    model: MultiTaskNet,
    normalization: Normalization,
    train_features: Any,
    training: dict[str, Any],
) -> ArtifactInfo:
    """Write the version's directory at `destination` (replacing any previous one)."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported
    from safetensors.torch import save_file  # heavy: pulls torch

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        model = model.eval()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(staging / WEIGHTS))
        _write_json(staging / ARCHITECTURE, model.architecture.to_dict())
        _write_json(staging / NORMALIZATION, normalization.to_dict())
        with torch.no_grad():
            probabilities = torch.sigmoid(model(torch.from_numpy(normalization.apply(train_features)))).numpy()
        _write_json(
            staging / FEATURE_SUMMARY,
            {
                "features": summarize(np.asarray(train_features), normalization.feature_names),
                "predictions": summarize(probabilities, model.architecture.tasks),
                "samples": len(train_features),
            },
        )
        export_onnx(model, normalization, staging / ONNX)
        response_time_ms = measure_response_time_ms(staging / ONNX, model.architecture.input_size)
        _write_json(staging / TRAINING, {**training, "responseTimeMs": response_time_ms})
        files = {path.name: _sha256(path) for path in sorted(staging.iterdir())}
        checksum = _combined(files)
        _write_json(
            staging / MANIFEST,
            {
                "files": files,
                "checksum": checksum,
                "algorithm": "sha256",
                "responseTimeMs": response_time_ms,
                "responseTimeMethod": "onnxruntime, 1 thread, single sample, median of "
                f"{LATENCY_RUNS} runs after {LATENCY_WARMUP_RUNS} warm-up runs",
            },
        )
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ArtifactInfo(str(destination), checksum, files, response_time_ms)


def verify_artifact(directory: str | Path) -> bool:
    """True when every file still has the checksum recorded in the manifest."""
    directory = Path(directory)
    manifest = json.loads((directory / MANIFEST).read_text())
    files = {name: _sha256(directory / name) for name in manifest["files"]}
    present = {p.name for p in directory.iterdir() if p.name != MANIFEST}
    return files == manifest["files"] and present == set(files) and _combined(files) == manifest["checksum"]


def load_weights(source: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an artifact directory or of a `.safetensors` file."""
    from safetensors.torch import load_file  # heavy: pulls torch

    path = Path(source)
    return load_file(str(path / WEIGHTS if path.is_dir() else path))


def load_model(directory: str | Path) -> tuple[MultiTaskNet, Normalization]:
    """Rebuild a version's network (in eval mode) and its normalisation from its artifact."""
    directory = Path(directory)
    model = MultiTaskNet(Architecture.from_dict(json.loads((directory / ARCHITECTURE).read_text())))
    model.load_state_dict(load_weights(directory))
    normalization = Normalization.from_dict(json.loads((directory / NORMALIZATION).read_text()))
    return model.eval(), normalization
