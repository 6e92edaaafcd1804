"""The three tasks the model learns, each a yes/no question about the next H bars.

For a decision at the close of bar t with horizon H (`horizon`) and breakout window N
(`breakoutWindow`):

* **signal** -- will the price be higher? ``close[t+H] / close[t] > 1``. Scored as
  `signalAccuracy`; it also drives the backtest.
* **risk** -- will the next H bars be a high-risk regime? The forward realised volatility (standard
  deviation of the daily log returns of bars t+1..t+H) is above the median of the *trailing*
  H-bar realised volatility over the last `RISK_MEDIAN_WINDOW` bars, a threshold already known at
  t. Scored as `riskAssessment`.
* **pattern** -- will the price break out of its range? ``close[t+H]`` is above the highest high or
  below the lowest low of the trailing N bars t-N+1..t. Scored as `patternRecognition`.

A label of bar t therefore reads bars t+1..t+H only (its *label window*); the last H bars have no
label (NaN). The evaluation's embargo is sized from exactly this window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd  # heavy: loaded on first use, not when the module is imported

TASKS: tuple[str, ...] = ("signal", "risk", "pattern")
METRIC_OF_TASK = {"signal": "signalAccuracy", "risk": "riskAssessment", "pattern": "patternRecognition"}
# One trading year: long enough for a stable median, short enough to follow regime shifts.
RISK_MEDIAN_WINDOW = 252
RISK_MEDIAN_MIN_BARS = 63


def compute_labels(bars: pd.DataFrame, *, horizon: int, breakout_window: int) -> pd.DataFrame:
    """Columns `TASKS` as 0.0/1.0 floats (NaN where the label window or its history is incomplete),
    plus `forward_return` (close[t+H]/close[t] - 1) and `next_return` (close[t+1]/close[t] - 1)
    which the backtest needs."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported
    import pandas as pd  # heavy: loaded on first use, not when the module is imported

    if horizon < 1:
        raise ValueError("horizon must be at least 1 bar")
    close = bars["close"].astype(float)
    daily = np.log(close).diff()
    future_close = close.shift(-horizon)

    up = (future_close / close > 1.0).astype(float)

    # Realised volatility of the H daily returns ending at t; its forward twin ends at t+H.
    # With H = 1 a single return has no std, so its absolute size stands in.
    trailing_vol = daily.abs() if horizon == 1 else daily.rolling(horizon).std()
    forward_vol = trailing_vol.shift(-horizon)
    threshold = trailing_vol.rolling(RISK_MEDIAN_WINDOW, min_periods=RISK_MEDIAN_MIN_BARS).median()
    risky = (forward_vol > threshold).astype(float)

    top = bars["high"].astype(float).rolling(breakout_window).max()
    bottom = bars["low"].astype(float).rolling(breakout_window).min()
    breakout = ((future_close > top) | (future_close < bottom)).astype(float)

    labels = pd.DataFrame(
        {
            "signal": up.where(future_close.notna()),
            "risk": risky.where(forward_vol.notna() & threshold.notna()),
            "pattern": breakout.where(future_close.notna() & top.notna()),
            "forward_return": future_close / close - 1.0,
            "next_return": close.shift(-1) / close - 1.0,
        },
        index=bars.index,
    )
    return labels
