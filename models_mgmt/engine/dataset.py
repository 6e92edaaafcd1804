"""Samples, the chronological train/validation split with its embargo, and feature normalisation.

Why each rule exists:

* **Chronological split** -- markets are not exchangeable; shuffling days across the split would
  let the model see the future it is scored on. The validation window is the last
  `validation_split` fraction of the samples.
* **Embargo of H bars** -- a training label of bar t reads bars t+1..t+H. Training samples whose
  label window reaches the first validation bar are dropped, so no training label contains
  validation-period prices.
* **Normalisation fitted on training only** -- validation statistics would leak the future level
  of volatility and volume into the inputs.
* **training_data_size** keeps the most recent N usable samples (training + validation), because
  recent markets are what a fine-tuned model must know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .features import FEATURE_NAMES, compute_features
from .labels import TASKS, compute_labels
from .timeframes import format_key

if TYPE_CHECKING:
    import numpy as np  # heavy: loaded on first use, not when the module is imported
    import pandas as pd  # heavy: loaded on first use, not when the module is imported

MIN_TRAIN_SAMPLES = 16


@dataclass(frozen=True)
class Normalization:
    """Per-feature mean and standard deviation of the training window."""

    feature_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, x: np.ndarray, feature_names: tuple[str, ...] = FEATURE_NAMES) -> Normalization:
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        # A constant feature carries no information; dividing by 1 keeps it finite and harmless.
        std = [float(s) if s > 1e-12 else 1.0 for s in std]
        return cls(tuple(feature_names), tuple(float(m) for m in mean), tuple(std))

    def apply(self, x: np.ndarray) -> np.ndarray:
        import numpy as np  # heavy: loaded on first use, not when the module is imported

        return ((x - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.feature_names), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        return cls(tuple(data["features"]), tuple(data["mean"]), tuple(data["std"]))


@dataclass(frozen=True)
class SampleSplit:
    """Raw (unnormalised) features and 0/1 labels of both windows, in time order."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    train_dates: list[Any]
    val_dates: list[Any]
    train_positions: np.ndarray  # row numbers in the bars frame: the embargo is checked on these
    val_positions: np.ndarray
    val_next_return: np.ndarray  # close[t+1]/close[t]-1 of each validation bar, for the backtest
    embargo_samples: int
    horizon: int
    normalization: Normalization

    @property
    def train_window(self) -> tuple[str, str]:
        return _iso(self.train_dates[0]), _iso(self.train_dates[-1])

    @property
    def validation_window(self) -> tuple[str, str]:
        return _iso(self.val_dates[0]), _iso(self.val_dates[-1])


def _iso(key: Any) -> str:
    """A bar key as the windows record it: a date, or an intraday bar's UTC timestamp."""
    if getattr(key, "tzinfo", None) is not None:
        return format_key(key)
    return key.isoformat()[:10] if hasattr(key, "isoformat") else str(key)


@dataclass(frozen=True)
class SampleFrame:
    """Every bar's raw features, labels and next return, and which rows are usable samples.

    Computed once; `split_at` cuts any set of usable rows into an embargoed train/validation pair,
    so the single split and every walk-forward fold follow the same rules."""

    x: np.ndarray  # features of every bar (NaN during warm-up)
    y: np.ndarray  # the task labels of every bar (NaN where the horizon runs past the data)
    next_return: np.ndarray
    dates: list[Any]
    positions: np.ndarray  # usable rows (features and labels known), in time order
    horizon: int
    bar_count: int


def sample_frame(
    bars: pd.DataFrame, *, horizon: int, breakout_window: int, training_data_size: int | None = None
) -> SampleFrame:
    """Features and labels of `bars` (sorted by date); `training_data_size` keeps the most recent N samples."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    if not bars.index.is_monotonic_increasing:
        bars = bars.sort_index()
    features = compute_features(bars)
    labels = compute_labels(bars, horizon=horizon, breakout_window=breakout_window)
    usable = features.notna().all(axis=1) & labels[list(TASKS)].notna().all(axis=1) & labels["next_return"].notna()
    positions = np.flatnonzero(usable.to_numpy())
    if training_data_size:
        positions = positions[-int(training_data_size) :]
    return SampleFrame(
        x=features.to_numpy(dtype=np.float64),
        y=labels[list(TASKS)].to_numpy(dtype=np.float32),
        next_return=labels["next_return"].to_numpy(dtype=np.float64),
        dates=list(bars.index),
        positions=positions,
        horizon=horizon,
        bar_count=len(bars),
    )


def split_at(frame: SampleFrame, positions: np.ndarray, *, validation_split: float) -> SampleSplit:
    """The embargoed chronological split of the usable rows `positions`: the last
    `validation_split` fraction validates, training rows whose label window reaches it are dropped,
    and normalisation is fitted on the training rows only."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    if not 0.0 < validation_split < 1.0:
        raise ValueError("validation_split must be between 0 and 1 (exclusive)")
    horizon = frame.horizon
    n_val = max(1, round(len(positions) * validation_split))
    val_positions = positions[-n_val:]
    before = positions[:-n_val]
    # Label window of bar t is t+1..t+H: it must end before the first validation bar.
    train_positions = before[before + horizon < val_positions[0]] if len(val_positions) else before
    if len(train_positions) < MIN_TRAIN_SAMPLES:
        raise ValueError(
            f"not enough bars: {len(train_positions)} training samples after warm-up, validation and embargo "
            f"(need at least {MIN_TRAIN_SAMPLES}); {frame.bar_count} bars were given"
        )

    x_train = frame.x[train_positions]
    dates = frame.dates
    return SampleSplit(
        x_train=x_train.astype(np.float32),
        y_train=frame.y[train_positions],
        x_val=frame.x[val_positions].astype(np.float32),
        y_val=frame.y[val_positions],
        train_dates=[dates[i] for i in train_positions],
        val_dates=[dates[i] for i in val_positions],
        train_positions=train_positions,
        val_positions=val_positions,
        val_next_return=frame.next_return[val_positions],
        embargo_samples=len(before) - len(train_positions),
        horizon=horizon,
        normalization=Normalization.fit(x_train),
    )


def build_split(
    bars: pd.DataFrame,
    *,
    horizon: int,
    breakout_window: int,
    validation_split: float,
    training_data_size: int | None = None,
) -> SampleSplit:
    """Features, labels and the embargoed chronological split of `bars` (sorted by date)."""
    if not 0.0 < validation_split < 1.0:
        raise ValueError("validation_split must be between 0 and 1 (exclusive)")
    frame = sample_frame(bars, horizon=horizon, breakout_window=breakout_window, training_data_size=training_data_size)
    return split_at(frame, frame.positions, validation_split=validation_split)
