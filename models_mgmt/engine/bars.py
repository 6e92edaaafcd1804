"""Market bars: the built-in data sets shipped inside `arch`, and validated CSV uploads.

Both give a `pandas.DataFrame` with float columns open, high, low, close, volume, sorted by time and
indexed by the bar key (see `timeframes`): `datetime.date` values for daily and weekly bars, a UTC
`DatetimeIndex` for intraday bars.
"""

from __future__ import annotations

import importlib
import io
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .timeframes import TIMEFRAMES, Timeframe
from .timeframes import timeframe as timeframe_of

if TYPE_CHECKING:
    import pandas as pd  # heavy: loaded on first use, not when the module is imported

COLUMNS = ("date", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
MAX_REPORTED_ERRORS = 50
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    symbol: str
    description: str
    module: str


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    "sp500": BuiltinDataset(
        "sp500", "^GSPC", "S&P 500 index, daily bars 1999-2018 (shipped with the arch package)", "arch.data.sp500"
    ),
    "nasdaq": BuiltinDataset(
        "nasdaq", "^IXIC", "NASDAQ Composite, daily bars 1999-2018 (shipped with the arch package)", "arch.data.nasdaq"
    ),
}
BUILTIN_LICENCE = "NCSA (arch package)"


@dataclass(frozen=True)
class RowError:
    row: int  # line number in the file, the header being line 1
    column: str
    error: str

    def as_dict(self) -> dict[str, object]:
        return {"row": self.row, "column": self.column, "error": self.error}


class BarsError(ValueError):
    """A file that cannot be accepted. `errors` names the rows and columns at fault."""

    def __init__(self, message: str, errors: list[RowError] | None = None, total: int | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or []
        self.total = total if total is not None else len(self.errors)


def _parse_dates(cells: pd.Series) -> pd.Series:
    """Dates as naive timestamps; a cell that is no date becomes NaT (reported by the caller)."""
    import pandas as pd  # heavy: loaded on first use, not when the module is imported

    try:
        parsed = pd.to_datetime(cells, errors="coerce", format="mixed")
        return parsed.dt.tz_localize(None) if parsed.dt.tz is not None else parsed
    except (ValueError, TypeError, OverflowError):
        # Mixed time zones: a bar's date would depend on the zone, so only zone-free dates pass.
        def one(cell: str) -> pd.Timestamp:
            try:
                stamp = pd.Timestamp(cell) if cell else pd.NaT
                return pd.NaT if stamp is pd.NaT or stamp.tzinfo is not None else stamp
            except (ValueError, TypeError, OverflowError):
                return pd.NaT

        return pd.to_datetime(cells.map(one), errors="coerce")


def load_builtin(name: str) -> pd.DataFrame:
    spec = BUILTIN_DATASETS[name]
    raw = importlib.import_module(spec.module).load()
    frame = raw.rename(columns=str.lower)[list(COLUMNS[1:])].astype(float)
    frame.index = frame.index.date
    frame.index.name = "date"
    return frame.sort_index()


TIME_COLUMNS = ("date", "datetime", "timestamp", "time")
VALUE_COLUMNS = COLUMNS[1:]
UNNAMED_FIRST = re.compile(r"^(unnamed: ?0)?$")
TICKER = re.compile(r"^[A-Za-z0-9^._:=-]{1,32}$")
ADJUSTED_CLOSE = {"adj close", "adj_close", "adjclose", "adjusted close", "adjusted_close"}


@dataclass(frozen=True)
class ParsedBars:
    """A validated file: `frame` (the engine's shape) and `recognised`, which says which of the
    file's columns were read as what, which were ignored and why: the upload echoes it."""

    frame: pd.DataFrame
    recognised: dict[str, Any]


def _recognise(columns: list[Any], key: str) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """(time source columns, value column -> source column, recognised) or BarsError.

    The time is read from a `Date`, `Datetime`, `Timestamp` or `Time` column (any case), from a
    `Date` plus a `Time` column together, or else from an unnamed first column (what
    `DataFrame.to_csv()` writes for an unnamed index).
    """
    lowered = [str(c).strip().lower() for c in columns]
    ambiguous = sorted({c for c in lowered if lowered.count(c) > 1 and (c in COLUMNS or c in TIME_COLUMNS)})
    if ambiguous:
        raise BarsError(
            f"column(s) given twice: {', '.join(ambiguous)}",
            [RowError(1, c.capitalize(), "column appears more than once") for c in ambiguous],
        )
    by_lower = dict(zip(lowered, columns, strict=True))
    notes: list[str] = []
    named = [c for c in TIME_COLUMNS if c in by_lower]
    if set(named) == {"date", "time"}:
        time_sources = [by_lower["date"], by_lower["time"]]
        notes.append(f"date and time of day read from two columns: {by_lower['date']} + {by_lower['time']}")
    elif len(named) == 1:
        time_sources = [by_lower[named[0]]]
    elif not named and columns and UNNAMED_FIRST.match(lowered[0]) and lowered[0] not in COLUMNS:
        time_sources = [columns[0]]
        notes.append(f"the first column has no name (as pandas writes an unnamed index): read as the {key}")
    elif named:
        raise BarsError(
            f"several columns could hold the {key}: {', '.join(str(by_lower[c]) for c in named)}; keep one",
            [RowError(1, str(by_lower[c]), "ambiguous date/time column") for c in named],
        )
    else:
        time_sources = []
    missing = ([] if time_sources else ["date"]) + [c for c in VALUE_COLUMNS if c not in by_lower]
    if missing:
        found = ", ".join(str(c) for c in columns) or "none"
        message = f"missing required column(s): {', '.join(c.capitalize() for c in missing)}; found: {found}"
        if not time_sources:
            message += (
                " (the date/time column may be named Date, Datetime, Timestamp or Time, or be an unnamed first column)"
            )
        raise BarsError(message, [RowError(1, c.capitalize(), "required column is missing") for c in missing])
    used = {c: by_lower[c] for c in VALUE_COLUMNS}
    taken = {*time_sources, *used.values()}
    # Other columns are counted, not echoed: a header is whatever the uploader wrote (a formula,
    # thousands of names), and only the known OHLCV shapes are named back.
    ignored = [str(c) for c in columns if c not in taken and str(c).strip().lower() in ADJUSTED_CLOSE]
    for column in ignored:
        notes.append(f"{column} is not used: Open, High and Low are unadjusted, so Close goes with them")
    recognised = {
        "used": {key: " + ".join(str(c) for c in time_sources), **{c: str(s) for c, s in used.items()}},
        "ignored": ignored,
        "otherColumnsIgnored": len(columns) - len(taken) - len(ignored),
        "notes": notes,
    }
    return time_sources, used, recognised


def _flatten_ticker_header(raw: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """A frame with two column levels (`Price`, `Ticker`) written by `to_csv()`, as yfinance's
    downloads are: header `Price,Close,...`, then a `Ticker,<symbol>,...` row and a `Date,,,...`
    row. Those two rows are header, not bars: the first column is the date/time column they name."""
    if raw.empty or len(raw) < 2 or str(raw.columns[0]).strip().lower() != "price":
        return raw, None
    ticker, time_row = raw.iloc[0], raw.iloc[1]
    if str(ticker.iloc[0]).strip().lower() != "ticker" or str(time_row.iloc[0]).strip().lower() not in TIME_COLUMNS:
        return raw, None
    if any(str(cell).strip() for cell in time_row.iloc[1:]):
        return raw, None
    cells = {str(cell).strip() for cell in ticker.iloc[1:]}
    symbols = sorted(c for c in cells if TICKER.match(c) and not c.startswith(FORMULA_PREFIXES))[:5] or ["?"]
    flat = raw.iloc[2:].rename(columns={raw.columns[0]: str(time_row.iloc[0]).strip()})
    return flat, f"two header rows (Price/Ticker, as yfinance writes) read as one; ticker {', '.join(symbols)}"


def _intraday_times(cells: pd.Series) -> pd.Series:
    """Timestamps in UTC; a time without a zone is taken as UTC; a cell that is no time -> NaT."""
    import pandas as pd  # heavy: loaded on first use, not when the module is imported

    try:
        return pd.to_datetime(cells, errors="coerce", format="mixed", utc=True)
    except (ValueError, TypeError, OverflowError):

        def one(cell: str) -> pd.Timestamp:
            try:
                stamp = pd.Timestamp(cell)
                return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
            except (ValueError, TypeError, OverflowError):
                return pd.NaT

        return pd.to_datetime(cells.map(one), errors="coerce", utc=True)


def _spacing_minutes(stamps: pd.Series) -> int | None:
    """The most common gap between consecutive bars, in minutes (market closes are rarer gaps)."""
    gaps = stamps.dropna().sort_values().drop_duplicates().diff().dropna()
    if gaps.empty:
        return None
    return round(gaps.mode().iloc[0].total_seconds() / 60)


def _timeframe_named(minutes: int | None) -> str:
    match = [t.name for t in TIMEFRAMES.values() if t.minutes == minutes]
    if match:
        return f"timeframe {match[0]}"
    return f"the timeframe of {minutes}-minute bars" if minutes else "a daily timeframe (1d)"


def _timeframe_mismatch(tf: Timeframe, stamps: pd.Series, days: pd.Series, lines: pd.Series) -> RowError | None:
    """One error saying what the file holds, when it is not bars of `tf`, instead of one error
    per row (an hourly file uploaded as daily is not thousands of duplicate dates)."""
    valid = stamps.notna()
    if not valid.any():
        return None
    if not tf.intraday:
        several = valid & days.duplicated(keep=False) & ~stamps.duplicated(keep=False)
        # A stray repeated day is a duplicate date (one error per row); most days several is intraday.
        if days[several].nunique() * 2 < days[valid].nunique():
            return None
        per_day = int(days[valid].value_counts().max())
        spacing = _spacing_minutes(stamps[several])
        return RowError(
            int(lines[several].iloc[0]),
            "Date",
            f"the file holds up to {per_day} bars a day at different times (e.g. "
            f"{stamps[several].iloc[0]:%Y-%m-%d %H:%M}, {stamps[several].iloc[1]:%H:%M}): it is intraday data; "
            f"upload it with {_timeframe_named(spacing)}",
        )
    if valid.sum() > 1 and (stamps[valid] == stamps[valid].dt.normalize()).all() and not days[valid].duplicated().any():
        return RowError(
            int(lines[valid].iloc[0]),
            "Timestamp",
            f"every bar is at 00:00 with one bar a day: these are daily bars, not {tf.name}; upload them with "
            "timeframe 1d",
        )
    spacing = _spacing_minutes(stamps)
    if spacing is not None and spacing != tf.minutes:
        return RowError(
            int(lines[valid].iloc[0]),
            "Timestamp",
            f"bars are {spacing} minutes apart (the most common gap), but timeframe {tf.name} means {tf.minutes}; "
            f"upload them with {_timeframe_named(spacing)}",
        )
    return None


def parse_csv(data: bytes, *, max_bytes: int, timeframe: str = "1d") -> ParsedBars:
    """Parse and validate an OHLCV CSV of bars of `timeframe`. Raises BarsError naming every
    offending row and column; otherwise says what it recognised (`ParsedBars.recognised`)."""
    import pandas as pd  # heavy: loaded on first use, not when the module is imported

    tf = timeframe_of(timeframe)
    key = "timestamp" if tf.intraday else "date"
    key_label = key.capitalize()
    if len(data) > max_bytes:
        raise BarsError(f"file is {len(data)} bytes; the limit is {max_bytes} bytes")
    if not data.strip():
        raise BarsError("file is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BarsError(f"file is not UTF-8 text (byte {exc.start} cannot be decoded)") from exc
    if "\x00" in text:
        raise BarsError("file contains NUL bytes; it is not a CSV text file")
    try:
        # Blank lines are kept while reading so each record's index gives its line in the file.
        raw = pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True, skip_blank_lines=False
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BarsError(f"not a readable CSV: {exc}") from exc

    raw = raw[~(raw.apply(lambda s: s.str.strip()) == "").all(axis=1)]
    raw, header_note = _flatten_ticker_header(raw)
    time_sources, used, recognised = _recognise(list(raw.columns), key)
    if header_note:
        recognised["notes"].insert(0, header_note)
    if raw.empty:
        raise BarsError("file has a header but no rows")

    frame = raw[[used[c] for c in VALUE_COLUMNS]].copy()
    frame.columns = list(VALUE_COLUMNS)
    frame = frame.apply(lambda s: s.str.strip())
    times = raw[time_sources[0]].str.strip()
    for extra in time_sources[1:]:
        times = (times + " " + raw[extra].str.strip()).str.strip()
    frame.insert(0, "date", times)
    lines = pd.Series(frame.index + 2, index=frame.index)
    errors: list[RowError] = []

    def flag(mask: pd.Series, column: str, message: str) -> None:
        for line in lines[mask].tolist():
            errors.append(RowError(int(line), key_label if column == "date" else column.capitalize(), message))

    for column in COLUMNS:
        cells = frame[column]
        flag(cells == "", column, "empty value")
    if tf.intraday:
        stamps = _intraday_times(frame["date"])
        flag((frame["date"] != "") & stamps.isna(), "date", "not a timestamp (use ISO 8601, e.g. 2024-03-01T14:30:00Z)")
        days = stamps.dt.date
    else:
        stamps = _parse_dates(frame["date"])
        flag((frame["date"] != "") & stamps.isna(), "date", "not a date (use YYYY-MM-DD)")
        days = stamps.dt.date
    mismatch = _timeframe_mismatch(tf, stamps, days, lines)
    if mismatch is not None:
        raise BarsError(f"the file does not hold {tf.name} bars: {mismatch.error}; nothing was stored", [mismatch])

    numbers: dict[str, pd.Series] = {}
    for column in VALUE_COLUMNS:
        cells = frame[column]
        values = pd.to_numeric(cells, errors="coerce")
        bad = (cells != "") & values.isna()
        formula = bad & cells.str.startswith(FORMULA_PREFIXES)
        flag(formula, column, "looks like a spreadsheet formula; only plain numbers are accepted")
        flag(bad & ~formula, column, "not a number")
        flag(values.isin([float("inf"), float("-inf")]), column, "not a finite number")
        numbers[column] = values
    numbers_frame = pd.DataFrame(numbers)
    body_high = numbers_frame[["open", "close"]].max(axis=1)
    body_low = numbers_frame[["open", "close"]].min(axis=1)
    for column in PRICE_COLUMNS:
        flag(numbers[column] <= 0, column, "price must be positive")
    flag(numbers["volume"] < 0, "volume", "volume must not be negative")
    flag(numbers["high"] < numbers["low"], "high", "High is below Low")
    flag(numbers["high"] < body_high, "high", "High is below Open or Close")
    flag(numbers["low"] > body_low, "low", "Low is above Open or Close")
    keys = stamps if tf.intraday else days
    duplicated = stamps.notna() & keys.duplicated(keep="first")
    flag(duplicated, "date", f"duplicate {key}")

    if errors:
        order = {name: i for i, name in enumerate((key_label, *(c.capitalize() for c in VALUE_COLUMNS)))}
        errors.sort(key=lambda e: (e.row, order.get(e.column, len(order))))
        raise BarsError(
            f"{len(errors)} problem(s) in the file; nothing was stored",
            errors[:MAX_REPORTED_ERRORS],
            total=len(errors),
        )
    result = numbers_frame.astype(float)
    if tf.intraday:
        result.index = pd.DatetimeIndex(stamps.array, name="timestamp")
        recognised["timeZone"] = "UTC (times without a zone are taken as UTC; others are converted)"
    else:
        result.index = days.values
        result.index.name = "date"
    recognised["rows"] = len(result)
    return ParsedBars(result.sort_index(), recognised)
