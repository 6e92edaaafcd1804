"""Timeframes: how long a dataset's bars are, how a bar is keyed, and how many make a year.

Every bar is stored under a timezone-aware UTC timestamp. Daily and weekly bars are keyed by their
date (stored at 00:00 UTC of that date, shown as `YYYY-MM-DD`), so a date-keyed frame's index holds
`datetime.date` values exactly as before intraday support; intraday bars (1m .. 4h) are keyed by
their timestamp, and their frames are indexed by a UTC `DatetimeIndex`. Features, labels, the
horizon and the backtest count bars, whatever their length.

**Annualisation** (`bars_per_year`) assumes a US equity market: 252 sessions a year, and a 6.5-hour
session (09:30-16:00) split into bars of the timeframe, a last shorter bar counting as one
(hourly: 7 bars a session, 252 x 7 = 1764 a year). A market that trades around the clock has more
(hourly crypto: 8760), so its annualised Sharpe ratios read low by sqrt(8760 / 1764). The figure
used is stored beside every backtest (`barsPerYear`).

A bound given as a date means the whole UTC day: as a window's start, from 00:00; as its end,
through 23:59:59.999999. A timestamp without a zone is taken as UTC.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np  # heavy: loaded on first use, not when the module is imported
    import pandas as pd  # heavy: loaded on first use, not when the module is imported

SESSIONS_PER_YEAR = 252
SESSION_MINUTES = 390  # 09:30-16:00
UTC = dt.UTC


@dataclass(frozen=True)
class Timeframe:
    name: str
    minutes: int  # nominal bar length

    @property
    def intraday(self) -> bool:
        """Keyed by timestamp (several bars a day) rather than by date."""
        return self.minutes < 1440

    @property
    def bar(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.minutes)

    @property
    def bars_per_year(self) -> int:
        if self.minutes == 1440:
            return SESSIONS_PER_YEAR
        if self.minutes == 7 * 1440:
            return 52
        return SESSIONS_PER_YEAR * math.ceil(SESSION_MINUTES / self.minutes)


TIMEFRAMES: dict[str, Timeframe] = {
    t.name: t
    for t in (
        Timeframe("1m", 1),
        Timeframe("5m", 5),
        Timeframe("15m", 15),
        Timeframe("1h", 60),
        Timeframe("4h", 240),
        Timeframe("1d", 1440),
        Timeframe("1w", 7 * 1440),
    )
}
DAILY = TIMEFRAMES["1d"]


def timeframe(name: str | None) -> Timeframe:
    """The timeframe of that name; unknown or empty names (old rows) are daily."""
    return TIMEFRAMES.get(name or "1d", DAILY)


# --- Bar times --------------------------------------------------------------------------------


def parse_bar_time(text: str) -> dt.date | dt.datetime:
    """`YYYY-MM-DD` -> a date; an ISO 8601 date-time -> an aware UTC datetime (naive = UTC)."""
    text = text.strip()
    if len(text) == 10:
        return dt.date.fromisoformat(text)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return as_utc(dt.datetime.fromisoformat(text))


def as_utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def bar_timestamp(key: Any) -> dt.datetime:
    """The stored timestamp of a bar key: a date -> 00:00 UTC of that date; a datetime -> UTC."""
    if hasattr(key, "to_pydatetime"):  # pandas Timestamp
        key = key.to_pydatetime()
    if isinstance(key, dt.datetime):
        return as_utc(key)
    return dt.datetime.combine(key, dt.time.min, tzinfo=UTC)


def window_start(value: dt.date | dt.datetime) -> dt.datetime:
    """A window's first instant: a date starts at 00:00 UTC."""
    return bar_timestamp(value)


def window_end(value: dt.date | dt.datetime) -> dt.datetime:
    """A window's last instant (inclusive): a date runs through the end of its UTC day."""
    if isinstance(value, dt.datetime) or hasattr(value, "to_pydatetime"):
        return bar_timestamp(value)
    return dt.datetime.combine(value, dt.time.max, tzinfo=UTC)


def key_of(tf: Timeframe, stamp: dt.datetime) -> dt.date | dt.datetime:
    """The bar key a stored timestamp stands for in this timeframe."""
    return as_utc(stamp) if tf.intraday else as_utc(stamp).date()


def format_key(key: Any) -> str:
    """`YYYY-MM-DD` for a date key, ISO 8601 in UTC with a `Z` for a timestamp key."""
    if hasattr(key, "to_pydatetime"):
        key = key.to_pydatetime()
    if isinstance(key, dt.datetime):
        return as_utc(key).isoformat().replace("+00:00", "Z")
    return key.isoformat()


def format_time(tf: Timeframe, stamp: dt.datetime) -> str:
    """A stored timestamp as the wire shows it in this timeframe."""
    return format_key(key_of(tf, stamp))


def utc_index(index: Any) -> pd.DatetimeIndex:
    """A frame's index (dates, or timestamps) as a UTC DatetimeIndex, for comparing with bounds."""
    import pandas as pd  # heavy: loaded on first use, not when the module is imported

    if isinstance(index, pd.DatetimeIndex):
        return index.tz_localize(UTC) if index.tz is None else index.tz_convert(UTC)
    return pd.DatetimeIndex([bar_timestamp(k) for k in index], tz=UTC)


def within(index: Any, start: dt.date | dt.datetime | None, end: dt.date | dt.datetime | None) -> np.ndarray:
    """Which rows of `index` lie in [start, end] (either open); dates are whole UTC days."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    stamps = utc_index(index)
    keep = np.ones(len(stamps), dtype=bool)
    if start is not None:
        keep &= np.asarray(stamps >= window_start(start))
    if end is not None:
        keep &= np.asarray(stamps <= window_end(end))
    return keep


def earliest_due(tf: Timeframe, last: Any, horizon: int) -> dt.datetime:
    """The earliest time bar t+H can carry, t being `last`: business days for daily bars (holidays
    only delay it), weeks for weekly bars, `horizon` bar lengths for intraday bars (market closes
    only delay it). A prediction is resolved by counting bars; this only says when to look."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    stamp = bar_timestamp(last)
    if tf.intraday:
        return stamp + horizon * tf.bar
    if tf.minutes == 7 * 1440:
        return stamp + dt.timedelta(weeks=horizon)
    day = np.busday_offset(np.datetime64(stamp.date(), "D"), horizon, roll="forward")
    return bar_timestamp(dt.date.fromisoformat(str(day)))
