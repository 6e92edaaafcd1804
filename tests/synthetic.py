"""Synthetic bars whose answer is known, for tests that must find it (issue 14's search)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd


def trending_bars(n: int = 900, seed: int = 3) -> pd.DataFrame:
    """Synthetic daily bars in 40-day trend regimes (drift +-0.6 %/day, noise 0.5 %): the next
    5 bars' direction is plain to a network that learns from the trailing returns."""
    rng = np.random.default_rng(seed)
    drift = np.repeat(rng.choice([-0.006, 0.006], size=n // 40 + 1), 40)[:n]
    returns = drift + rng.normal(0, 0.005, n)
    close = 100 * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 0.004, n)) * close
    dates = [dt.date(2000, 1, 3) + dt.timedelta(days=i) for i in range(n)]
    frame = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.uniform(1e6, 2e6, n),
        },
        index=pd.Index(dates, name="date"),
    )
    return frame
