"""Timeframes: bar keys, window bounds, annualisation and when a horizon can be due."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from models_mgmt.engine import timeframes as tf

UTC = dt.UTC


@pytest.mark.parametrize(
    ("name", "per_year", "intraday"),
    [("1m", 252 * 390, True), ("5m", 252 * 78, True), ("15m", 252 * 26, True), ("1h", 252 * 7, True),
     ("4h", 252 * 2, True), ("1d", 252, False), ("1w", 52, False)],
)  # fmt: skip
def test_bars_per_year_of_a_us_equity_session(name, per_year, intraday):
    timeframe = tf.timeframe(name)
    assert (timeframe.bars_per_year, timeframe.intraday) == (per_year, intraday)


def test_unknown_or_empty_timeframes_are_daily():
    assert tf.timeframe("") is tf.DAILY and tf.timeframe(None) is tf.DAILY


def test_bar_times_parse_and_format_round_trip():
    assert tf.parse_bar_time("2024-03-01") == dt.date(2024, 3, 1)
    assert tf.parse_bar_time("2024-03-01T14:30:00Z") == dt.datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
    assert tf.parse_bar_time("2024-03-01T09:30:00-05:00") == dt.datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
    assert tf.parse_bar_time("2024-03-01 14:30") == dt.datetime(2024, 3, 1, 14, 30, tzinfo=UTC)  # naive = UTC
    assert tf.format_key(dt.date(2024, 3, 1)) == "2024-03-01"
    assert tf.format_key(pd.Timestamp("2024-03-01 14:30", tz="UTC")) == "2024-03-01T14:30:00Z"
    with pytest.raises(ValueError):
        tf.parse_bar_time("2024-13-01")


def test_a_date_bound_covers_its_whole_utc_day():
    stamps = pd.DatetimeIndex(["2024-02-29 20:30", "2024-03-01 00:00", "2024-03-01 20:30", "2024-03-02 00:00"], tz=UTC)
    assert list(tf.within(stamps, dt.date(2024, 3, 1), dt.date(2024, 3, 1))) == [False, True, True, False]
    start = dt.datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert list(tf.within(stamps, start, None)) == [False, False, True, True]
    days = [dt.date(2024, 2, 29), dt.date(2024, 3, 1), dt.date(2024, 3, 2)]
    assert list(tf.within(days, dt.date(2024, 3, 1), None)) == [False, True, True]
    assert list(tf.within([], dt.date(2024, 3, 1), dt.date(1535, 2, 19))) == []  # an empty window, not a 500


def test_a_horizon_is_due_in_business_days_for_daily_bars_and_bar_lengths_for_intraday():
    friday = dt.date(2008, 6, 27)
    assert tf.earliest_due(tf.DAILY, friday, 5) == dt.datetime(2008, 7, 4, tzinfo=UTC)
    assert tf.earliest_due(tf.timeframe("1w"), friday, 2) == dt.datetime(2008, 7, 11, tzinfo=UTC)
    last = pd.Timestamp("2008-06-27 20:30", tz=UTC)
    assert tf.earliest_due(tf.timeframe("1h"), last, 5) == dt.datetime(2008, 6, 28, 1, 30, tzinfo=UTC)
    assert tf.earliest_due(tf.timeframe("15m"), last, 4) == dt.datetime(2008, 6, 27, 21, 30, tzinfo=UTC)
