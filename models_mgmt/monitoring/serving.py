"""Serving the active version in the web process: onnxruntime only, never torch.

The artifact's `model.onnx` takes RAW features (normalisation and sigmoid are inside the graph,
see `engine.network.ServingModel`), so serving is: the feature row of the window's last bar
(`engine.features.last_feature_row`, numpy only: no pandas in the web process), one `session.run`.

One loaded session per version, keyed by (model id, version, checksum) so a re-registered
artifact can never be served under an old session. Loading happens under a lock and a session
enters the cache only once fully built; `active[model id]` is replaced by one assignment, so a
request sees either the old or the new version, never a half-loaded one, and the response names
the one it used. The database says which version is active; `ServedVersion` objects are immutable.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models_mgmt.engine.features import FEATURE_NAMES, WARMUP_BARS, last_feature_row
from models_mgmt.engine.labels import TASKS

# compute_features leaves the first WARMUP_BARS rows NaN: the row after them is the first with
# every window full (the longest is the 60-bar volatility, plus EMA settling).
LOOKBACK_BARS = WARMUP_BARS + 1
# The bars a feature row is computed on: the EMAs run over all of them, so serving always uses the
# last WINDOW_BARS (more bars would change the row in the last digits).
WINDOW_BARS = LOOKBACK_BARS + 200
ONNX = "model.onnx"
FEATURE_INPUTS = ("close", "high", "low", "volume")  # last_feature_row's arguments
ARCHITECTURE = "architecture.json"

Key = tuple[int, str, str]


class ServingError(Exception):
    """The version cannot be served (no artifact, unreadable ONNX, ...)."""


class WindowError(ValueError):
    """The submitted bars cannot produce a feature row."""


@dataclass(frozen=True)
class ServedVersion:
    model_id: int
    version: str
    checksum: str
    tasks: tuple[str, ...]
    session: Any  # onnxruntime.InferenceSession; run() is thread-safe
    input_name: str
    loaded_at: float

    @property
    def key(self) -> Key:
        return (self.model_id, self.version, self.checksum)

    def run(self, features: Any) -> Any:
        """Probabilities (rows, tasks) for raw feature rows (rows, len(FEATURE_NAMES))."""
        import numpy as np  # heavy: loaded on first use, not when the module is imported

        return self.session.run(None, {self.input_name: np.asarray(features, dtype=np.float32)})[0]


_lock = threading.Lock()
_sessions: dict[Key, ServedVersion] = {}
_active: dict[int, ServedVersion] = {}
_shadow: dict[int, ServedVersion] = {}  # model id -> the challenger of its running experiment


def _load(model_id: int, version: str, checksum: str, artifact_path: str) -> ServedVersion:
    import onnxruntime as ort  # heavy: loaded when a version is first served

    directory = Path(artifact_path)
    onnx_path = directory / ONNX
    if not artifact_path or not onnx_path.is_file():
        raise ServingError(f"version {version} has no ONNX artifact at {onnx_path}")
    try:
        tasks = tuple(json.loads((directory / ARCHITECTURE).read_text()).get("tasks", TASKS))
    except (OSError, ValueError):
        tasks = TASKS
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one sample gains nothing from threads; requests run side by side
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ServingError(f"version {version}: model.onnx cannot be loaded ({exc})") from exc
    return ServedVersion(model_id, version, checksum, tasks, session, session.get_inputs()[0].name, time.time())


def session_for(model_id: int, version: str, checksum: str, artifact_path: str) -> ServedVersion:
    """The loaded session of a version, loading it on first use (once, under the lock)."""
    key = (model_id, version, checksum)
    served = _sessions.get(key)
    if served is not None:
        return served
    with _lock:
        served = _sessions.get(key)
        if served is None:
            served = _load(model_id, version, checksum, artifact_path)
            _sessions[key] = served
    return served


def serve_active(model_id: int, version: str, checksum: str, artifact_path: str) -> ServedVersion:
    """The session of the version the database names active; swaps `_active` when it changed.

    Sessions of versions that are no longer active are dropped so memory holds one per model
    (plus any a comparison loaded), except while a request still holds a reference to one.
    """
    current = _active.get(model_id)
    if current is not None and current.key == (model_id, version, checksum):
        return current
    served = session_for(model_id, version, checksum, artifact_path)
    with _lock:
        previous = _active.get(model_id)
        _active[model_id] = served  # one assignment: the swap is atomic for readers
        shadow = _shadow.get(model_id)
        if previous is not None and previous.key != served.key and (shadow is None or shadow.key != previous.key):
            _sessions.pop(previous.key, None)
    return served


def preload(model_id: int, version: str, checksum: str, artifact_path: str) -> None:
    """Warm the cache on activation, so the first request after it does not pay the load."""
    with contextlib.suppress(ServingError):  # the next request reports it
        serve_active(model_id, version, checksum, artifact_path)


def serve_shadow(model_id: int, version: str, checksum: str, artifact_path: str) -> ServedVersion:
    """The session of a running experiment's challenger; a previous challenger's is dropped."""
    current = _shadow.get(model_id)
    if current is not None and current.key == (model_id, version, checksum):
        return current
    served = session_for(model_id, version, checksum, artifact_path)
    with _lock:
        previous = _shadow.get(model_id)
        _shadow[model_id] = served
        if previous is not None and previous.key != served.key:
            _drop_unless_active(previous)
    return served


def release_shadow(model_id: int) -> None:
    """No experiment runs for the model (any more): its challenger's session is dropped, unless it
    is the active version's (an A/A experiment, or a promoted challenger)."""
    if model_id not in _shadow:  # the common case: a dict lookup per request
        return
    with _lock:
        previous = _shadow.pop(model_id, None)
        if previous is not None:
            _drop_unless_active(previous)


def _drop_unless_active(served: ServedVersion) -> None:
    active = _active.get(served.model_id)
    if active is None or active.key != served.key:
        _sessions.pop(served.key, None)


def preload_shadow(model_id: int, version: str, checksum: str, artifact_path: str) -> None:
    """Warm a shadow challenger's session when its experiment starts (it is never `_active`)."""
    with contextlib.suppress(ServingError):  # the predict that needs it logs it
        serve_shadow(model_id, version, checksum, artifact_path)


def cached_keys() -> list[Key]:
    return sorted(_sessions)


def clear() -> None:
    with _lock:
        _sessions.clear()
        _active.clear()
        _shadow.clear()


def feature_row(bars: Any) -> Any:
    """The raw feature row of the LAST bar of `bars`: OHLCV columns by name, oldest first (a dict of
    arrays, or a DataFrame): `compute_features` on the last WINDOW_BARS bars, last row only."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    n = len(bars["close"])
    if n < LOOKBACK_BARS:
        raise WindowError(
            f"{n} bars given; the features need at least {LOOKBACK_BARS} bars (the longest "
            f"window is 60 bars plus warm-up for the moving averages)"
        )
    values = last_feature_row(*(np.asarray(bars[c], dtype=np.float64)[-WINDOW_BARS:] for c in FEATURE_INPUTS))
    missing = [name for name, value in zip(FEATURE_NAMES, values, strict=True) if not np.isfinite(value)]
    if missing:
        raise WindowError(f"features {', '.join(missing)} are undefined for this window (constant or zero prices?)")
    return values
