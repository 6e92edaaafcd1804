"""What every monitoring computation shares: how much history a window needs, and the label
parameters a version was trained with.

Windows are counted in bars of the dataset's timeframe. Daily datasets keep their calendar-day
arithmetic (HISTORY_DAYS before a window, 1.6 calendar days a bar), which selects the same bars it
always did; every other timeframe counts bars in the database (`history_bars`), since a calendar
span holds 7 hourly equity bars a day but 24 hourly crypto bars.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from models_mgmt import selectors
from models_mgmt.engine import timeframes
from models_mgmt.models import Dataset, ModelVersion

HISTORY_DAYS = 400  # daily bars: calendar days loaded before a window: features and risk labels need ~1 year
# Other timeframes: bars loaded before a window: the 252-bar risk median, the horizon (<= 60) and
# the features' 70-bar warm-up.
HISTORY_BARS = 400
DAYS_PER_BAR = 1.6  # daily bars: calendar days per trading day, with slack for holidays

BarTime = dt.date | dt.datetime


def hyper(version: ModelVersion) -> tuple[int, int]:
    """(horizon, breakoutWindow) the version was trained with."""
    params = (version.metadata or {}).get("hyperparameters") or {}
    return int(params.get("horizon", 5)), int(params.get("breakoutWindow", 20))


def iso_day(key: Any) -> str | None:
    """A bar key as the API shows it: `YYYY-MM-DD` for a date, ISO 8601 UTC for an intraday bar."""
    if key is None:
        return None
    if getattr(key, "tzinfo", None) is not None:
        return timeframes.format_key(key)
    return key.isoformat()[:10]


def timeframe_of(dataset: Dataset) -> timeframes.Timeframe:
    return timeframes.timeframe(dataset.timeframe)


def counts_days(dataset: Dataset) -> bool:
    """Whether windows of this dataset are sized in calendar days (daily bars) or in bars."""
    return timeframe_of(dataset) == timeframes.DAILY


def frame_with_history(
    dataset: Dataset, start: BarTime, end: BarTime | None = None, *, lookahead_bars: int = 0, lookahead_days: int = 0
) -> Any:
    """Bars of [start, end] with the history that features and labels need before `start`, and
    the bars after `end` that labels of its last bars read (`lookahead_*`)."""
    if counts_days(dataset):
        return selectors.dataset_bars_frame(
            dataset,
            start=start - dt.timedelta(days=HISTORY_DAYS),
            end=end + dt.timedelta(days=lookahead_days) if end is not None and lookahead_days else end,
        )
    return selectors.dataset_bars_frame(
        dataset, start=start, end=end, history_bars=HISTORY_BARS, lookahead_bars=lookahead_bars
    )


def frame_up_to(dataset: Dataset, end: BarTime, bars: int) -> Any:
    """About the last `bars` bars up to `end` (daily: a calendar span of DAYS_PER_BAR a bar)."""
    if counts_days(dataset):
        return selectors.dataset_bars_frame(dataset, start=end - dt.timedelta(days=int(bars * DAYS_PER_BAR)), end=end)
    return selectors.dataset_bars_frame(dataset, end=end, history_bars=bars)


OHLCV = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class BarWindow:
    """A window of bars as serving reads it, without pandas: bar keys (dates, or UTC timestamps
    for intraday bars) and one float array per OHLCV column, oldest first."""

    keys: list[BarTime]
    columns: dict[str, Any]  # "open" .. "volume" -> numpy array

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, column: str) -> Any:
        return self.columns[column]

    @classmethod
    def of_rows(cls, keys: list[BarTime], rows: list[tuple[float, ...]]) -> BarWindow:
        """From (open, high, low, close, volume) rows."""
        import numpy as np  # heavy: only processes that serve predictions load numpy

        values = np.array(rows, dtype=np.float64).reshape(len(rows), len(OHLCV))
        return cls(keys, {c: values[:, i] for i, c in enumerate(OHLCV)})


def window_up_to(dataset: Dataset, end: BarTime, bars: int) -> BarWindow:
    """`frame_up_to`'s bars as a BarWindow, in one query (predict's path: no pandas)."""
    tf = timeframe_of(dataset)
    columns = ("timestamp", *OHLCV)
    if counts_days(dataset):
        start = end - dt.timedelta(days=int(bars * DAYS_PER_BAR))
        rows = list(selectors.dataset_bars(dataset, start=start, end=end).values_list(*columns))
    else:  # the last `bars` bars up to `end`: frame_up_to's `history_bars`, in one query
        latest = dataset.bars.filter(timestamp__lte=timeframes.window_end(end)).order_by("-timestamp")
        rows = list(latest.values_list(*columns)[:bars])[::-1]
    return BarWindow.of_rows([timeframes.key_of(tf, r[0]) for r in rows], [r[1:] for r in rows])


def bar_after(dataset: Dataset, key: BarTime, n: int) -> dt.datetime | None:
    """The timestamp of the n-th bar after `key` (None: the dataset ends sooner)."""
    later = selectors.dataset_bars(dataset).filter(timestamp__gt=timeframes.window_end(key))
    found = list(later.values_list("timestamp", flat=True)[n - 1 : n])
    return found[0] if found else None
