"""The shapes OHLCV files come in, written by pandas from real S&P 500 bars (the `arch` package):
an unnamed index column (what `DataFrame.to_csv()` writes for an unnamed index), `Date`,
`Datetime`, `Timestamp` or `time` headers in any case, `Adj Close`, and a date beside a time of
day. The upload says what it read each column as."""

from __future__ import annotations

import arch.data.sp500
import pandas as pd
import pytest

from models_mgmt.choices import Role
from models_mgmt.engine.bars import load_builtin
from models_mgmt.models import Dataset
from tests.factories import UserFactory

from .test_datasets import file_errors, upload


@pytest.fixture
def client(db, api):
    return api(UserFactory(role=Role.MAINTAINER))


@pytest.fixture(scope="module")
def sp500():
    """The real frame as `arch` ships it: a DatetimeIndex named Date; Open .. Adj Close, Volume."""
    return arch.data.sp500.load()


def stored_equals_builtin(name: str, rows: int | None = None) -> None:
    dataset = Dataset.objects.get(name=name)
    expected = load_builtin("sp500")
    expected = expected.iloc[-rows:] if rows else expected
    bars = list(dataset.bars.order_by("timestamp").values_list("timestamp", "open", "close", "volume"))
    assert [b[0].date() for b in bars] == list(expected.index)
    assert [b[1:] for b in bars] == list(expected[["open", "close", "volume"]].itertuples(index=False, name=None))


def test_pandas_to_csv_of_an_unnamed_date_index_is_accepted(client, sp500):
    content = sp500.rename_axis(None).to_csv().encode()
    assert content.startswith(b",Open,High,Low,Close,Adj Close,Volume")  # the shape the issue saw refused

    response = upload(client, content, name="sp500-pandas")

    assert response.status_code == 201, response.content[:500]
    body = response.json()
    assert body["barCount"] == 5031 and (body["firstDate"], body["lastDate"]) == ("1999-01-04", "2018-12-31")
    columns = body["columns"]
    assert columns["used"] == {
        "date": "Unnamed: 0",
        "open": "Open",
        "high": "High",
        "low": "Low",
        "close": "Close",
        "volume": "Volume",
    }
    assert columns["ignored"] == ["Adj Close"] and columns["otherColumnsIgnored"] == 0
    assert any("no name" in note for note in columns["notes"])
    assert any("Adj Close is not used" in note for note in columns["notes"])
    assert columns["rows"] == 5031
    stored_equals_builtin("sp500-pandas")
    detail = client.get("/api/model-management/datasets/sp500-pandas").json()
    assert detail["columns"] == columns  # kept with the dataset


@pytest.mark.parametrize(
    ("index_name", "rename"),
    [
        ("Date", None),
        ("Datetime", str.lower),
        ("timestamp", str.upper),
        ("time", None),
        ("DATE", str.lower),
    ],
)
def test_named_time_columns_in_any_case(client, sp500, index_name, rename):
    frame = sp500.iloc[-300:].rename_axis(index_name)
    if rename:
        frame = frame.rename(columns=rename)

    response = upload(client, frame.to_csv().encode(), name="shape")

    assert response.status_code == 201, response.content[:500]
    used = response.json()["columns"]["used"]
    assert used["date"] == index_name
    assert used["close"] == (rename("Close") if rename else "Close")
    stored_equals_builtin("shape", rows=300)


def test_a_price_ticker_two_level_header_as_yfinance_writes_it(client, sp500):
    frame = sp500.iloc[-300:][["Close", "High", "Low", "Open", "Volume"]]
    frame.columns = pd.MultiIndex.from_product([frame.columns, ["^GSPC"]], names=["Price", "Ticker"])
    content = frame.to_csv().encode()
    assert content.startswith(b"Price,Close,High,Low,Open,Volume\nTicker,^GSPC,")

    response = upload(client, content, name="yf")

    assert response.status_code == 201, response.content[:500]
    columns = response.json()["columns"]
    assert columns["used"]["date"] == "Date" and "ticker ^GSPC" in columns["notes"][0]
    stored_equals_builtin("yf", rows=300)


def test_a_date_and_a_time_of_day_column_are_read_together(client, sp500):
    frame = sp500.iloc[-50:].reset_index()
    frame.insert(1, "Time", "00:00:00")
    frame["Date"] = frame["Date"].dt.strftime("%Y-%m-%d")

    response = upload(client, frame.to_csv(index=False).encode(), name="split")

    assert response.status_code == 201, response.content[:500]
    assert response.json()["columns"]["used"]["date"] == "Date + Time"
    stored_equals_builtin("split", rows=50)


def test_two_candidate_time_columns_are_refused_by_name(client, sp500):
    frame = sp500.iloc[-20:].reset_index()
    frame.insert(1, "Timestamp", frame["Date"])

    response = upload(client, frame.to_csv(index=False).encode(), name="two")

    errors = file_errors(response)
    assert "several columns could hold the date" in errors["message"]
    assert {e["column"] for e in errors["errors"]} == {"Date", "Timestamp"}


def test_no_time_column_names_the_accepted_headers(client, sp500):
    frame = sp500.iloc[-20:].reset_index(drop=True)  # no date or time column at all

    errors = file_errors(upload(client, frame.to_csv(index=False).encode(), name="none"))

    assert "Date" in errors["message"] and "unnamed first column" in errors["message"]
