"""Technical features of daily bars, each computed only from bars at or before its row's date.

Every indicator here is causal: trailing rolling windows and `adjust=False` exponential averages,
never centred windows or back-filling. So the feature row of date t is exactly what a trader could
have computed at the close of t, and changing any later bar never changes it (a test proves it).
The first `WARMUP_BARS` rows are left NaN because their long windows are not yet full.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
