"""Market bars: the built-in data sets shipped inside `arch`, and validated CSV uploads.

Both return a `pandas.DataFrame` indexed by date with float columns open, high, low, close, volume,
sorted by date.
"""

from __future__ import annotations

import importlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

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


def parse_csv(data: bytes, *, max_bytes: int) -> pd.DataFrame:
    """Parse and validate an OHLCV CSV. Raises BarsError naming every offending row and column."""
    import pandas as pd  # heavy: loaded on first use, not when the module is imported

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
    lowered = [str(c).strip().lower() for c in raw.columns]
    ambiguous = sorted({c for c in lowered if lowered.count(c) > 1 and c in COLUMNS})
    if ambiguous:
        raise BarsError(
            f"column(s) given twice: {', '.join(ambiguous)}",
            [RowError(1, c.capitalize(), "column appears more than once") for c in ambiguous],
        )
    by_lower = dict(zip(lowered, raw.columns, strict=True))
    missing = [c for c in COLUMNS if c not in by_lower]
    if missing:
        found = ", ".join(str(c) for c in raw.columns) or "none"
        raise BarsError(
            f"missing required column(s): {', '.join(c.capitalize() for c in missing)}; found: {found}",
            [RowError(1, c.capitalize(), "required column is missing") for c in missing],
        )
    if raw.empty:
        raise BarsError("file has a header but no rows")

    frame = raw[[by_lower[c] for c in COLUMNS]].copy()
    frame.columns = list(COLUMNS)
    frame = frame.apply(lambda s: s.str.strip())
    lines = pd.Series(frame.index + 2, index=frame.index)
    errors: list[RowError] = []

    def flag(mask: pd.Series, column: str, message: str) -> None:
        for line in lines[mask].tolist():
            errors.append(RowError(int(line), column.capitalize(), message))

    for column in COLUMNS:
        cells = frame[column]
        flag(cells == "", column, "empty value")
    dates = _parse_dates(frame["date"])
    flag((frame["date"] != "") & dates.isna(), "date", "not a date (use YYYY-MM-DD)")

    numbers: dict[str, pd.Series] = {}
    for column in COLUMNS[1:]:
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
    day = dates.dt.date
    duplicated = dates.notna() & day.duplicated(keep="first")
    flag(duplicated, "date", "duplicate date")

    if errors:
        errors.sort(key=lambda e: (e.row, COLUMNS.index(e.column.lower())))
        raise BarsError(
            f"{len(errors)} problem(s) in the file; nothing was stored",
            errors[:MAX_REPORTED_ERRORS],
            total=len(errors),
        )
    result = numbers_frame.astype(float)
    result.index = day.values
    result.index.name = "date"
    return result.sort_index()
