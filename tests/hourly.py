"""Hourly bars for tests, derived from real daily S&P 500 bars (the `arch` package ships no
intraday data): each session becomes 7 hourly bars at 14:30 .. 20:30 UTC (09:30 .. 15:30 New York,
ignoring daylight saving), walking a seeded Brownian bridge from the day's open to its close inside
its high/low. Deterministic for a seed; real levels, gaps between sessions and volumes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models_mgmt.engine.bars import load_builtin

BARS_PER_SESSION = 7
FIRST_BAR = pd.Timedelta(hours=14, minutes=30)


def hourly_frame(sessions: int, *, seed: int = 0) -> pd.DataFrame:
    """The last `sessions` daily bars as hourly bars, indexed by a UTC DatetimeIndex."""
    daily = load_builtin("sp500").iloc[-sessions:]
    rng = np.random.default_rng(seed)
    steps = np.arange(1, BARS_PER_SESSION + 1) / BARS_PER_SESSION
    rows = []
    for day, bar in daily.iterrows():
        walk = np.cumsum(rng.standard_normal(BARS_PER_SESSION))
        bridge = walk - steps * walk[-1]  # starts and ends at zero
        scale = (bar.high - bar.low) / 6
        closes = np.clip(bar.open + (bar.close - bar.open) * steps + scale * bridge, bar.low, bar.high)
        closes[-1] = bar.close
        opens = np.concatenate([[bar.open], closes[:-1]])
        start = pd.Timestamp(day).tz_localize("UTC") + FIRST_BAR
        for i, (o, c) in enumerate(zip(opens, closes, strict=True)):
            high = min(bar.high, max(o, c) + abs(rng.normal()) * scale * 0.3)
            low = max(bar.low, min(o, c) - abs(rng.normal()) * scale * 0.3)
            rows.append((start + pd.Timedelta(hours=i), o, high, low, c, bar.volume / BARS_PER_SESSION))
    frame = pd.DataFrame(rows, columns=["timestamp", "open", "high", "low", "close", "volume"])
    return frame.set_index(pd.DatetimeIndex(frame.pop("timestamp"), name="timestamp"))


def csv_of(frame: pd.DataFrame) -> bytes:
    """What `DataFrame.to_csv()` writes for it: an unnamed index column, capitalised OHLCV."""
    return frame.rename(columns=str.capitalize).rename_axis(None).to_csv().encode()


def bar_dicts(frame: pd.DataFrame) -> list[dict]:
    """The bars as the API takes them: `timestamp` (ISO 8601) and the OHLCV values."""
    return [
        {"timestamp": stamp.isoformat(), "open": r.open, "high": r.high, "low": r.low, "close": r.close,
         "volume": r.volume}
        for stamp, r in zip(frame.index, frame.itertuples(index=False), strict=True)
    ]  # fmt: skip
