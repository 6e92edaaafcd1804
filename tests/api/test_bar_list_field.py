"""Predict's `bars` are checked without a serializer per bar (BarListField), and answer exactly
what `BarInputSerializer(many=True)` answered: the same values for a valid list, the same errors
(fields, messages, shape) for every malformed one."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from rest_framework import serializers

from models_mgmt.api.serializers import BarInputSerializer, PredictSerializer
from tests.hourly import bar_dicts as hourly_bar_dicts
from tests.hourly import hourly_frame
from tests.monitoring.conftest import bar_dicts

DAILY = bar_dicts(dt.date(2007, 1, 1), dt.date(2008, 6, 30))[-120:]
HOURLY = hourly_bar_dicts(hourly_frame(20))[-100:]


class PerBarPredictSerializer(PredictSerializer):
    """The serializer as it was: one BarInputSerializer run per bar."""

    bars = BarInputSerializer(many=True, required=False)


def changed(bars: list[dict], index: int, **values: Any) -> list[dict]:
    bars = [dict(b) for b in bars]
    bars[index].update(values)
    return bars


def without(bars: list[dict], index: int, key: str) -> list[dict]:
    bars = [dict(b) for b in bars]
    bars[index].pop(key)
    return bars


BODIES = {
    "daily": {"bars": DAILY},
    "hourly": {"bars": HOURLY},
    "hourly, resolved in a dataset": {"bars": HOURLY, "dataset": "x"},
    "integer prices": {"bars": [dict(b, open=100, high=110, low=90, close=105, volume=0) for b in DAILY]},
    "compact dates": {"bars": [dict(b, date=b["date"].replace("-", "")) for b in DAILY]},
    "timestamps with offsets": {"bars": [dict(b, timestamp=b["timestamp"][:19] + "+02:00") for b in HOURLY]},
    "naive timestamps": {"bars": [dict(b, timestamp=b["timestamp"][:19]) for b in HOURLY]},
    "numbers as strings": {"bars": changed(DAILY, 3, open=str(DAILY[3]["open"]), volume="12")},
    "a boolean volume": {"bars": changed(DAILY, 3, volume=True)},
    "a null price": {"bars": changed(DAILY, 5, close=None)},
    "a text price": {"bars": changed(DAILY, 5, close="much")},
    "a NaN text price": {"bars": changed(DAILY, 5, close="nan")},
    "an infinite price": {"bars": changed(DAILY, 5, high=float("inf"))},
    "a huge integer": {"bars": changed(DAILY, 5, high=10**400)},
    "a negative price": {"bars": changed(DAILY, 2, low=-1.0)},
    "a zero price": {"bars": changed(DAILY, 2, open=0)},
    "a negative volume": {"bars": changed(DAILY, 2, volume=-1)},
    "high below low": {"bars": changed(DAILY, 7, high=1.0)},
    "high below close": {"bars": changed(DAILY, 7, high=DAILY[7]["close"] - 0.01, low=1.0)},
    "low above open": {"bars": changed(DAILY, 7, low=DAILY[7]["high"])},
    "a missing volume": {"bars": without(DAILY, 2, "volume")},
    "a missing date": {"bars": without(DAILY, 2, "date")},
    "both date and timestamp": {"bars": changed(DAILY, 2, timestamp="2008-01-02T10:00:00Z")},
    "a bad date": {"bars": changed(DAILY, 2, date="yesterday")},
    "a date-time as a date": {"bars": changed(DAILY, 2, date="2008-01-02T10:00:00")},
    "a number as a date": {"bars": changed(DAILY, 2, date=20080102)},
    "a bad timestamp": {"bars": changed(HOURLY, 2, timestamp="soon")},
    "a null timestamp": {"bars": changed(HOURLY, 2, timestamp=None)},
    "a mix of dates and timestamps": {"bars": [*DAILY[:-1], HOURLY[-1]]},
    "an unknown key": {"bars": changed(DAILY, 9, extra=1)},
    "unknown keys and bad values": {"bars": changed(DAILY, 9, extra=1, open="x")},
    "a null bar": {"bars": [*DAILY[:-1], None]},
    "a list as a bar": {"bars": [*DAILY[:-1], [1, 2, 3]]},
    "a number as a bar": {"bars": [*DAILY[:-1], 7]},
    "bars as an object": {"bars": {"0": DAILY[0]}},
    "bars as text": {"bars": "many"},
    "bars null": {"bars": None},
    "no bars": {"bars": []},
    "too few bars": {"bars": DAILY[:10]},
    "descending": {"bars": DAILY[::-1]},
    "a duplicate": {"bars": [*DAILY[:50], DAILY[49], *DAILY[51:]]},
    "bars and asOf": {"bars": DAILY, "asOf": "2008-01-02"},
    "nothing": {},
    "dataset alone": {"dataset": "x"},
}


def outcome(serializer_class: type[serializers.Serializer], body: dict) -> tuple[bool, Any]:
    serializer = serializer_class(data=body)
    if serializer.is_valid():
        return True, serializer.validated_data
    return False, json.loads(json.dumps(serializer.errors))  # what a client reads


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_bar_list_field_answers_what_the_per_bar_serializer_answered(body):
    valid, got = outcome(PredictSerializer, body)
    was_valid, expected = outcome(PerBarPredictSerializer, body)
    assert valid == was_valid
    assert got == expected
    if valid and "bars" in got:
        assert [list(bar) for bar in got["bars"]] == [list(bar) for bar in expected["bars"]]
        assert [type(v) for bar in got["bars"] for v in bar.values()] == [
            type(v) for bar in expected["bars"] for v in bar.values()
        ]


@pytest.mark.parametrize("name", ["daily", "hourly", "integer prices", "compact dates", "naive timestamps"])
def test_plainly_valid_bars_never_run_a_serializer(name, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a serializer ran per bar")

    monkeypatch.setattr(BarInputSerializer, "run_validation", refuse)
    serializer = PredictSerializer(data=BODIES[name])
    assert serializer.is_valid(), serializer.errors
    assert len(serializer.validated_data["bars"]) == len(BODIES[name]["bars"])
