"""Instruction examples from bars: the prompt of bar t renders its causal features, the answer its
three labels, with the MLP family's chronological split and embargo (`dataset.build_split`).

The split is cut from the whole window exactly as for a `multitask-mlp` run of the same dataset,
window, horizon and validation split, so both families are scored on the same validation bars;
`training_examples` then keeps the most recent N training examples (the LLM's trainingDataSize).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..dataset import SampleSplit, build_split
from ..features import FEATURE_NAMES, compute_features
from ..timeframes import format_key
from .prompts import render_answer, render_prompt

if TYPE_CHECKING:
    import numpy as np  # heavy: loaded on first use, not when the module is imported
    import pandas as pd  # heavy: loaded on first use, not when the module is imported


@dataclass(frozen=True)
class InstructionData:
    split: SampleSplit  # the validation window and its next returns, as the MLP family's
    train_prompts: list[str]
    train_answers: list[str]
    y_train: np.ndarray  # labels of the training examples kept
    train_dates: list[Any]
    val_prompts: list[str]
    val_answers: list[str]

    @property
    def y_val(self) -> np.ndarray:
        return self.split.y_val

    def manifest(self) -> dict[str, Any]:
        """What the artifact records about its data: windows, counts, and a digest of every example."""
        digest = hashlib.sha256()
        for prompt, answer in zip(self.train_prompts, self.train_answers, strict=True):
            digest.update(prompt.encode() + b"\x00" + answer.encode() + b"\x01")
        val_digest = hashlib.sha256()
        for prompt, answer in zip(self.val_prompts, self.val_answers, strict=True):
            val_digest.update(prompt.encode() + b"\x00" + answer.encode() + b"\x01")
        return {
            "trainExamples": len(self.train_prompts),
            "validationExamples": len(self.val_prompts),
            "embargoSamples": self.split.embargo_samples,
            "trainWindow": [_iso(self.train_dates[0]), _iso(self.train_dates[-1])],
            "validationWindow": list(self.split.validation_window),
            "trainSha256": digest.hexdigest(),
            "validationSha256": val_digest.hexdigest(),
        }


def _iso(key: Any) -> str:
    """A bar key as the MLP family's windows record it: a date, or an intraday bar's UTC time."""
    if getattr(key, "tzinfo", None) is not None:
        return format_key(key)
    return key.isoformat()[:10] if hasattr(key, "isoformat") else str(key)


def prompt_at(bars: pd.DataFrame, position: int, *, horizon: int, breakout_window: int) -> str:
    """The prompt of the bar at row `position` of `bars` (reads only its causal feature row)."""
    row = compute_features(bars).iloc[position]
    return render_prompt(row.to_dict(), horizon=horizon, breakout_window=breakout_window)


def build_instruction_data(
    bars: pd.DataFrame,
    *,
    horizon: int,
    breakout_window: int,
    validation_split: float,
    training_examples: int | None = None,
) -> InstructionData:
    if not bars.index.is_monotonic_increasing:
        bars = bars.sort_index()
    split = build_split(bars, horizon=horizon, breakout_window=breakout_window, validation_split=validation_split)
    features = compute_features(bars)[list(FEATURE_NAMES)].to_numpy(dtype="float64")

    def prompts(positions: Any) -> list[str]:
        return [render_prompt(features[i], horizon=horizon, breakout_window=breakout_window) for i in positions]

    keep = slice(-int(training_examples), None) if training_examples else slice(None)
    train_positions = split.train_positions[keep]
    y_train = split.y_train[keep]
    return InstructionData(
        split=split,
        train_prompts=prompts(train_positions),
        train_answers=[render_answer(row) for row in y_train],
        y_train=y_train,
        train_dates=split.train_dates[keep],
        val_prompts=prompts(split.val_positions),
        val_answers=[render_answer(row) for row in split.y_val],
    )
