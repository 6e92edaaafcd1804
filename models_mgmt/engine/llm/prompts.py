"""The instruction format: a prompt rendering the causal indicators of bar t, and a JSON answer
giving the three task labels at t.

The answer is JSON (`{"signal": "up", "risk": "normal", "pattern": "range"}`) so the trained model
already speaks the format that serving asks Ollama for with a JSON-schema `format`. It is encoded
as fixed pieces with an option between them; the trainer and the evaluation tokenize the pieces
and options separately and concatenate the ids, so training and scoring see identical tokens.

The prompt reads only the engine's feature row of bar t (`features.compute_features`), which is
computed from bars up to t: changing a later bar cannot change it (a test proves it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..features import FEATURE_NAMES
from ..labels import TASKS

TEMPLATE_VERSION = 1
# Per task: (answer when the label is 0, answer when it is 1), as in the prediction API.
OPTIONS: dict[str, tuple[str, str]] = {
    "signal": ("down", "up"),
    "risk": ("normal", "high"),
    "pattern": ("range", "breakout"),
}
# Text before each task's option, and after the last one.
ANSWER_PIECES: tuple[str, ...] = ('{"signal": "', '", "risk": "', '", "pattern": "')
ANSWER_END = '"}'

_pct = "{:+.2f}%"


def _percent(value: float) -> str:
    return _pct.format(value * 100)


def _unsigned_percent(value: float) -> str:
    return f"{value * 100:.2f}%"


# feature name -> (what it is, how its value is written)
FEATURE_TEXT: dict[str, tuple[str, Callable[[float], str]]] = {
    "ret_1": ("return over the last bar", _percent),
    "ret_5": ("return over 5 bars", _percent),
    "ret_10": ("return over 10 bars", _percent),
    "ret_20": ("return over 20 bars", _percent),
    "vol_5": ("volatility of bar returns, 5 bars", _unsigned_percent),
    "vol_20": ("volatility of bar returns, 20 bars", _unsigned_percent),
    "vol_60": ("volatility of bar returns, 60 bars", _unsigned_percent),
    "vol_ratio_5_60": ("log ratio of 5-bar to 60-bar volatility", "{:+.2f}".format),
    "rsi_14": ("RSI(14)", lambda v: f"{(v + 0.5) * 100:.1f}"),
    "macd": ("MACD(12, 26) / close", lambda v: f"{v * 100:+.3f}%"),
    "macd_signal": ("MACD signal(9) / close", lambda v: f"{v * 100:+.3f}%"),
    "macd_hist": ("MACD histogram / close", lambda v: f"{v * 100:+.3f}%"),
    "bollinger_pctb": ("Bollinger %B(20, 2)", lambda v: f"{v + 0.5:.2f}"),
    "atr_14": ("ATR(14) / close", _unsigned_percent),
    "bar_range": ("high-low range of the bar / close", _unsigned_percent),
    "range_position_20": ("close within the 20-bar range (0 = low, 1 = high)", lambda v: f"{v + 0.5:.2f}"),
    "volume_z_20": ("volume z-score over 20 bars", "{:+.2f}".format),
}
assert tuple(FEATURE_TEXT) == FEATURE_NAMES, "every feature needs its text"


def render_prompt(features: Mapping[str, float] | Sequence[float], *, horizon: int, breakout_window: int) -> str:
    """The prompt of one bar from its feature row (a mapping by name, or values in FEATURE_NAMES order)."""
    values = features if isinstance(features, Mapping) else dict(zip(FEATURE_NAMES, features, strict=True))
    lines = [
        "You are TechAnal, a technical analyst. Read the indicators of the last bar and answer "
        f"three questions about the next {horizon} bars in JSON.",
        "Indicators at the close of the last bar:",
    ]
    for name in FEATURE_NAMES:
        label, write = FEATURE_TEXT[name]
        value = float(values[name])
        if not math.isfinite(value):
            raise ValueError(f"feature {name} is not finite; the bar has too little history")
        lines.append(f"- {label}: {write(value)}")
    lines += [
        "Questions:",
        f"- signal: will the close {horizon} bars ahead be above the last close? up or down",
        f"- risk: will the volatility of the next {horizon} bars be above its trailing median? high or normal",
        f"- pattern: will the close {horizon} bars ahead leave the range of the last {breakout_window} bars? "
        "breakout or range",
        "Answer:",
        "",
    ]
    return "\n".join(lines)


def answer_options(labels: Sequence[float]) -> list[str]:
    """The option of each task (in TASKS order) for 0/1 labels."""
    return [OPTIONS[task][int(float(labels[i]) > 0.5)] for i, task in enumerate(TASKS)]


def render_answer(labels: Sequence[float]) -> str:
    """The answer text of 0/1 labels (TASKS order): the JSON the model learns to write."""
    options = answer_options(labels)
    return "".join(piece + option for piece, option in zip(ANSWER_PIECES, options, strict=True)) + ANSWER_END


def parse_answer(text: str) -> list[int]:
    """0/1 labels (TASKS order) from an answer; ValueError when it is not one of the options."""
    data: Any = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    labels = []
    for task in TASKS:
        value = data.get(task)
        if value not in OPTIONS[task]:
            raise ValueError(f"{task} must be one of {', '.join(OPTIONS[task])}, got {value!r}")
        labels.append(OPTIONS[task].index(value))
    return labels


def answer_schema() -> dict[str, Any]:
    """JSON schema of the answer, passed to Ollama as `format`."""
    return {
        "type": "object",
        "properties": {task: {"type": "string", "enum": list(OPTIONS[task])} for task in TASKS},
        "required": list(TASKS),
    }


def template_document() -> dict[str, Any]:
    """What the artifact stores as `prompt_template.json`: enough to rebuild prompts and answers."""
    return {
        "version": TEMPLATE_VERSION,
        "features": {name: FEATURE_TEXT[name][0] for name in FEATURE_NAMES},
        "tasks": list(TASKS),
        "options": {task: list(OPTIONS[task]) for task in TASKS},
        "answerPieces": list(ANSWER_PIECES),
        "answerEnd": ANSWER_END,
        "answerSchema": answer_schema(),
        "example": render_prompt(dict.fromkeys(FEATURE_NAMES, 0.0), horizon=5, breakout_window=20)
        + render_answer([1, 0, 0]),
    }
