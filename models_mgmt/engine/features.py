"""Technical features of daily bars, each computed only from bars at or before its row's date.

Every indicator here is causal: trailing rolling windows and `adjust=False` exponential averages,
never centred windows or back-filling. So the feature row of date t is exactly what a trader could
have computed at the close of t, and changing any later bar never changes it (a test proves it).
The first `WARMUP_BARS` rows are left NaN because their long windows are not yet full.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np  # heavy: loaded on first use, not when the module is imported
    import pandas as pd  # heavy: loaded on first use, not when the module is imported

RETURN_LAGS = (1, 5, 10, 20)
VOLATILITY_WINDOWS = (5, 20, 60)
RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BOLLINGER_WINDOW, BOLLINGER_WIDTH = 20, 2.0
ATR_PERIOD = 14
VOLUME_WINDOW = 20
RANGE_WINDOW = 20
# The longest window (60-bar volatility) plus slack so the slow EMAs have settled.
WARMUP_BARS = 70

FEATURE_NAMES: tuple[str, ...] = (
    *(f"ret_{lag}" for lag in RETURN_LAGS),
    *(f"vol_{w}" for w in VOLATILITY_WINDOWS),
    "vol_ratio_5_60",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bollinger_pctb",
    "atr_14",
    "bar_range",
    "range_position_20",
    "volume_z_20",
)


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    """One row of features per bar, columns `FEATURE_NAMES`, NaN where history is too short.

    Prices are made scale-free (log returns, ratios to close) so a model trained on one index
    level still reads another; RSI and %B are centred so all features sit near zero.
    """
    import numpy as np  # heavy: loaded on first use, not when the module is imported
    import pandas as pd  # heavy: loaded on first use, not when the module is imported

    close = bars["close"].astype(float)
    high = bars["high"].astype(float)
    low = bars["low"].astype(float)
    log_close = np.log(close)
    daily = log_close.diff()
    out: dict[str, pd.Series] = {}

    for lag in RETURN_LAGS:
        out[f"ret_{lag}"] = log_close.diff(lag)
    for window in VOLATILITY_WINDOWS:
        out[f"vol_{window}"] = daily.rolling(window).std()
    out["vol_ratio_5_60"] = np.log(out["vol_5"] / out["vol_60"])

    gain = daily.clip(lower=0.0).ewm(alpha=1 / RSI_PERIOD, adjust=False).mean()
    loss = (-daily).clip(lower=0.0).ewm(alpha=1 / RSI_PERIOD, adjust=False).mean()
    total = gain + loss
    out["rsi_14"] = (gain / total.where(total > 0)).fillna(0.5) - 0.5

    fast = close.ewm(span=MACD_FAST, adjust=False).mean()
    slow = close.ewm(span=MACD_SLOW, adjust=False).mean()
    macd = (fast - slow) / close
    signal = macd.ewm(span=MACD_SIGNAL, adjust=False).mean()
    out["macd"], out["macd_signal"], out["macd_hist"] = macd, signal, macd - signal

    middle = close.rolling(BOLLINGER_WINDOW).mean()
    spread = close.rolling(BOLLINGER_WINDOW).std()
    band = 2 * BOLLINGER_WIDTH * spread
    out["bollinger_pctb"] = ((close - (middle - BOLLINGER_WIDTH * spread)) / band.where(band > 0)).fillna(0.5) - 0.5

    previous_close = close.shift(1)
    true_range = pd.concat([high - low, (high - previous_close).abs(), (low - previous_close).abs()], axis=1).max(
        axis=1
    )
    out["atr_14"] = true_range.ewm(alpha=1 / ATR_PERIOD, adjust=False).mean() / close
    out["bar_range"] = (high - low) / close

    top = high.rolling(RANGE_WINDOW).max()
    bottom = low.rolling(RANGE_WINDOW).min()
    width = top - bottom
    out["range_position_20"] = ((close - bottom) / width.where(width > 0)).fillna(0.5) - 0.5

    log_volume = np.log1p(bars["volume"].astype(float))
    volume_mean = log_volume.rolling(VOLUME_WINDOW).mean()
    volume_std = log_volume.rolling(VOLUME_WINDOW).std()
    # A constant volume (or none reported, as for some indices) is "normal", i.e. z = 0.
    out["volume_z_20"] = ((log_volume - volume_mean) / volume_std.where(volume_std > 0)).fillna(0.0)

    features = pd.DataFrame(out, index=bars.index)[list(FEATURE_NAMES)]
    features = features.replace([np.inf, -np.inf], np.nan)
    features.iloc[:WARMUP_BARS] = np.nan
    return features


def last_feature_row(close: np.ndarray, high: np.ndarray, low: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """`compute_features(window).iloc[-1]` for a window given as arrays (oldest first), in numpy.

    What serving needs per request, without pandas: the windows are only the last bars', and the
    exponential averages are the one recursive part, so they run over the whole window exactly
    as pandas runs them (`adjust=False`: see `_ewm_last`). Rolling statistics of a constant run
    are exactly 0, as pandas makes them, so a constant window is undefined here too.
    """
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    close, high, low = (np.asarray(a, dtype=np.float64) for a in (close, high, low))
    volume = np.asarray(volume, dtype=np.float64)
    n = len(close)
    row = np.full(len(FEATURE_NAMES), np.nan)
    if n <= WARMUP_BARS:  # compute_features blanks these rows; past them every window is full
        return row
    with np.errstate(divide="ignore", invalid="ignore"):
        log_close = np.log(close)
        daily = np.empty(n)
        daily[0] = np.nan
        np.subtract(log_close[1:], log_close[:-1], out=daily[1:])
        out: dict[str, float] = {}
        for lag in RETURN_LAGS:
            out[f"ret_{lag}"] = log_close[-1] - log_close[-1 - lag]
        for window in VOLATILITY_WINDOWS:
            out[f"vol_{window}"] = _rolling_std_last(daily, window)
        out["vol_ratio_5_60"] = np.log(np.float64(out["vol_5"]) / out["vol_60"])  # 0/0: NaN, not an error

        gain = _ewm_last(np.where(daily < 0.0, 0.0, daily), _com_of_alpha(1 / RSI_PERIOD))  # clip(lower=0)
        loss = _ewm_last(np.where(-daily < 0.0, 0.0, -daily), _com_of_alpha(1 / RSI_PERIOD))
        total = gain + loss
        out["rsi_14"] = _filled(gain / total if total > 0 else np.nan, 0.5) - 0.5

        macd = (_ewm_series(close, _com_of_span(MACD_FAST)) - _ewm_series(close, _com_of_span(MACD_SLOW))) / close
        signal = _ewm_last(macd, _com_of_span(MACD_SIGNAL))
        out["macd"], out["macd_signal"], out["macd_hist"] = macd[-1], signal, macd[-1] - signal

        last = close[-BOLLINGER_WINDOW:]
        middle = _rolling_mean_last(close, BOLLINGER_WINDOW)
        spread = _rolling_std_last(close, BOLLINGER_WINDOW)
        band = 2 * BOLLINGER_WIDTH * spread
        pctb = (last[-1] - (middle - BOLLINGER_WIDTH * spread)) / band if band > 0 else np.nan
        out["bollinger_pctb"] = _filled(pctb, 0.5) - 0.5

        previous_close = np.concatenate(([np.nan], close[:-1]))
        # DataFrame.max(axis=1) skips NaN: the first bar's true range is its high - low.
        true_range = np.fmax(np.fmax(high - low, np.abs(high - previous_close)), np.abs(low - previous_close))
        out["atr_14"] = _ewm_last(true_range, _com_of_alpha(1 / ATR_PERIOD)) / close[-1]
        out["bar_range"] = (high[-1] - low[-1]) / close[-1]

        top = _rolling_extreme_last(high, RANGE_WINDOW, np.max)
        bottom = _rolling_extreme_last(low, RANGE_WINDOW, np.min)
        width = top - bottom
        out["range_position_20"] = _filled((close[-1] - bottom) / width if width > 0 else np.nan, 0.5) - 0.5

        log_volume = np.log1p(volume)
        volume_mean = _rolling_mean_last(log_volume, VOLUME_WINDOW)
        volume_std = _rolling_std_last(log_volume, VOLUME_WINDOW)
        out["volume_z_20"] = _filled((log_volume[-1] - volume_mean) / volume_std if volume_std > 0 else np.nan, 0.0)

    row[:] = [out[name] for name in FEATURE_NAMES]
    row[np.isinf(row)] = np.nan
    return row


def _filled(value: float, fill: float) -> float:
    """`Series.fillna(fill)` of one value."""
    return fill if value != value else value


def _com_of_span(span: int) -> float:
    """The centre of mass pandas converts `span=` to (and `alpha=`, below) before the recursion."""
    return (span - 1) / 2


def _com_of_alpha(alpha: float) -> float:
    return (1 - alpha) / alpha


def _ewm_series(values: np.ndarray, com: float) -> np.ndarray:
    """`Series.ewm(com=..., adjust=False).mean()`, step for step as pandas computes it: NaN until
    the first observation; a NaN later keeps the average; `(1-a)*prev + a*x` divided by
    `(1-a) + a` (not always exactly 1.0 in floating point); a value equal to the average leaves it."""
    import numpy as np  # heavy: loaded on first use, not when the module is imported

    alpha = 1.0 / (1.0 + com)
    old_weight, new_weight = 1.0 - alpha, alpha
    norm = old_weight + new_weight
    out = np.empty(len(values))
    weighted = float("nan")
    for i, cur in enumerate(values.tolist()):
        if weighted == weighted:
            if cur == cur and weighted != cur:
                weighted = (old_weight * weighted + new_weight * cur) / norm
        elif cur == cur:
            weighted = cur
        out[i] = weighted
    return out


def _ewm_last(values: np.ndarray, com: float) -> float:
    return float(_ewm_series(values, com)[-1])


def _rolling_mean_last(values: np.ndarray, window: int) -> float:
    """`Series.rolling(window).mean().iloc[-1]`: NaN unless the last `window` values are all numbers."""
    last = values[-window:]
    if len(last) < window or not (last == last).all():
        return float("nan")
    return float(last[0]) if (last == last[0]).all() else float(last.mean())


def _rolling_std_last(values: np.ndarray, window: int) -> float:
    """`Series.rolling(window).std().iloc[-1]` (ddof 1); exactly 0 for a constant run, as in pandas."""
    last = values[-window:]
    if len(last) < window or not (last == last).all():
        return float("nan")
    if (last == last[0]).all():
        return 0.0
    return float(last.std(ddof=1))


def _rolling_extreme_last(values: np.ndarray, window: int, extreme: Any) -> float:
    last = values[-window:]
    if len(last) < window or not (last == last).all():
        return float("nan")
    return float(extreme(last))
