"""CSV upload of market bars: a good file is stored whole, a broken one stores nothing and names its faults.

Row numbers in error reports are line numbers of the file, the header being line 1.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from models_mgmt.choices import Role
from models_mgmt.models import AuditEvent, Bar, Dataset
from tests.factories import DatasetFactory, UserFactory

URL = "/api/model-management/datasets"
HEADER = "Date,Open,High,Low,Close,Volume"
GOOD_ROWS = [
    "2021-03-01,100.0,105.5,99.25,104.0,12000",
    "2021-03-02,104.0,106.0,103.0,105.5,15000",
    "2021-03-03,105.5,107.75,104.5,107.0,9000.5",
]


def csv_bytes(*lines: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *lines]) + "\n").encode()


def upload(client: APIClient, content: bytes, *, name: str = "acme-daily", **extra):
    data = {
        "name": name,
        "symbol": "ACME",
        "timeframe": "1d",
        "description": "ACME daily bars",
        "file": SimpleUploadedFile("bars.csv", content, content_type="text/csv"),
        **extra,
    }
    return client.post(URL, data, format="multipart")


@pytest.fixture
def maintainer(db):
    return UserFactory(role=Role.MAINTAINER)


@pytest.fixture
def client(api, maintainer):
    return api(maintainer)


def assert_nothing_stored(name: str = "acme-daily") -> None:
    assert not Dataset.objects.filter(name=name).exists()
    assert Bar.objects.count() == 0
    assert not AuditEvent.objects.filter(action__startswith="dataset.").exists()


def file_errors(response) -> dict:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert isinstance(body["detail"], str) and body["detail"]
    return body["fields"]["file"]


def row_errors(response) -> set[tuple[int, str]]:
    errors = file_errors(response)["errors"]
    for error in errors:
        assert set(error) == {"row", "column", "error"}
        assert error["error"]
    return {(e["row"], e["column"]) for e in errors}


# --- A good file -------------------------------------------------------------------------------


def test_maintainer_uploads_valid_csv_and_bars_are_stored(client, maintainer):
    response = upload(client, csv_bytes(*GOOD_ROWS))

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "acme-daily"
    assert body["symbol"] == "ACME"
    assert body["timeframe"] == "1d"
    assert body["source"] == "upload"
    assert body["barCount"] == 3
    assert body["firstDate"] == "2021-03-01"
    assert body["lastDate"] == "2021-03-03"
    assert body["createdBy"] == maintainer.username

    dataset = Dataset.objects.get(name="acme-daily")
    assert dataset.bar_count == 3
    assert (dataset.first_date, dataset.last_date) == (dt.date(2021, 3, 1), dt.date(2021, 3, 3))
    stored = list(dataset.bars.order_by("timestamp").values_list("timestamp", "open", "high", "low", "close", "volume"))
    assert stored == [  # a daily bar is stored at 00:00 UTC of its date
        (dt.datetime(2021, 3, 1, tzinfo=dt.UTC), 100.0, 105.5, 99.25, 104.0, 12000.0),
        (dt.datetime(2021, 3, 2, tzinfo=dt.UTC), 104.0, 106.0, 103.0, 105.5, 15000.0),
        (dt.datetime(2021, 3, 3, tzinfo=dt.UTC), 105.5, 107.75, 104.5, 107.0, 9000.5),
    ]
    event = AuditEvent.objects.get(action="dataset.created")
    assert event.actor == maintainer
    assert event.after["bars"] == 3


def test_uploaded_dataset_appears_in_list_and_detail(client):
    assert upload(client, csv_bytes(*GOOD_ROWS)).status_code == 201

    listing = client.get(URL)
    assert listing.status_code == 200
    names = [d["name"] for d in listing.json()["results"]]
    assert "acme-daily" in names

    detail = client.get(f"{URL}/acme-daily")
    assert detail.status_code == 200
    body = detail.json()
    assert body["barCount"] == 3
    assert [b["date"] for b in body["recentBars"]] == ["2021-03-01", "2021-03-02", "2021-03-03"]
    assert body["recentBars"][-1] == {
        "date": "2021-03-03",
        "open": 105.5,
        "high": 107.75,
        "low": 104.5,
        "close": 107.0,
        "volume": 9000.5,
    }


def test_rows_out_of_order_are_stored_sorted(client):
    response = upload(client, csv_bytes(GOOD_ROWS[2], GOOD_ROWS[0], GOOD_ROWS[1]))

    assert response.status_code == 201, response.content
    assert (response.json()["firstDate"], response.json()["lastDate"]) == ("2021-03-01", "2021-03-03")


def test_header_case_insensitive_and_extra_columns_ignored(client):
    content = csv_bytes(
        "2021-03-01,100,106,99,104,104.5,12000",
        "2021-03-02,104,107,103,105,105.2,15000",
        header="DATE,open,HIGH,Low,close,Adj Close,VoLuMe",
    )
    response = upload(client, content)

    assert response.status_code == 201, response.content
    bars = list(Bar.objects.order_by("timestamp").values_list("close", "volume"))
    assert bars == [(104.0, 12000.0), (105.0, 15000.0)]  # Close, not Adj Close


def test_utf8_bom_is_accepted(client):
    response = upload(client, b"\xef\xbb\xbf" + csv_bytes(*GOOD_ROWS))

    assert response.status_code == 201, response.content
    assert Dataset.objects.get(name="acme-daily").bar_count == 3


def test_crlf_line_endings_are_accepted(client):
    response = upload(client, csv_bytes(*GOOD_ROWS).replace(b"\n", b"\r\n"))

    assert response.status_code == 201, response.content
    assert Bar.objects.count() == 3


def test_file_exactly_at_size_limit_is_accepted(client, settings):
    content = csv_bytes(*GOOD_ROWS)
    settings.CSV_UPLOAD_MAX_BYTES = len(content)

    assert upload(client, content).status_code == 201


# --- Broken files: 400, the faults named, nothing stored -------------------------------------


def test_missing_required_column(client):
    response = upload(client, csv_bytes("2021-03-01,100,105,99,104", header="Date,Open,High,Low,Close"))

    assert row_errors(response) == {(1, "Volume")}
    assert "Volume" in file_errors(response)["message"]
    assert_nothing_stored()


def test_unparseable_date(client):
    response = upload(client, csv_bytes(GOOD_ROWS[0], "03/32/2021,100,105,99,104,100", GOOD_ROWS[2]))

    assert row_errors(response) == {(3, "Date")}
    assert_nothing_stored()


def test_non_numeric_value(client):
    response = upload(client, csv_bytes(GOOD_ROWS[0], GOOD_ROWS[1], "2021-03-03,105,108,abc,107,9000"))

    assert row_errors(response) == {(4, "Low")}
    assert_nothing_stored()


def test_high_below_low(client):
    response = upload(client, csv_bytes(GOOD_ROWS[0], "2021-03-02,104,100,103.5,104,15000"))

    assert (3, "High") in row_errors(response)
    assert all(row == 3 for row, _ in row_errors(response))
    assert any("Low" in e["error"] for e in file_errors(response)["errors"])
    assert_nothing_stored()


def test_duplicate_dates(client):
    response = upload(client, csv_bytes(GOOD_ROWS[0], GOOD_ROWS[1], GOOD_ROWS[1].replace("15000", "16000")))

    assert row_errors(response) == {(4, "Date")}
    assert "duplicate" in file_errors(response)["errors"][0]["error"]
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("cell", "column"),
    [
        ('"=HYPERLINK(""http://evil.example"",""click"")"', "Open"),
        ("@SUM(1)", "Close"),
        ("+cmd|' /C calc'!A0", "Volume"),
        ("-2+3", "High"),
    ],
)
def test_formula_injection_cell_is_refused(client, cell, column):
    values = {"Open": "100", "High": "105", "Low": "99", "Close": "104", "Volume": "1000"}
    values[column] = cell
    row = ",".join(["2021-03-01", *values.values()])
    response = upload(client, csv_bytes(row))

    errors = file_errors(response)["errors"]
    assert [(e["row"], e["column"]) for e in errors] == [(2, column)]
    assert "formula" in errors[0]["error"]
    assert_nothing_stored()


def test_negative_volume(client):
    response = upload(client, csv_bytes(GOOD_ROWS[0], "2021-03-02,104,106,103,105.5,-15000"))

    assert row_errors(response) == {(3, "Volume")}
    assert_nothing_stored()


def test_empty_value(client):
    response = upload(client, csv_bytes("2021-03-01,100,105,,104,1000"))

    assert row_errors(response) == {(2, "Low")}
    assert_nothing_stored()


def test_short_row_names_the_missing_cells(client):
    response = upload(client, csv_bytes(GOOD_ROWS[0], "2021-03-02,104,106"))

    assert row_errors(response) == {(3, "Low"), (3, "Close"), (3, "Volume")}
    assert_nothing_stored()


def test_several_faults_each_named(client):
    content = csv_bytes(
        "2021-03-01,100,105,99,104,1000",
        "not-a-date,100,105,99,104,1000",
        "2021-03-03,100,105,99,x,1000",
        "2021-03-04,100,105,99,104,-1",
    )
    response = upload(client, content)

    assert row_errors(response) == {(3, "Date"), (4, "Close"), (5, "Volume")}
    assert file_errors(response)["total"] == 3
    assert_nothing_stored()


def test_row_numbers_are_file_line_numbers_even_after_blank_lines(client):
    """A blank line still counts as a line: the report must point at the line an editor shows."""
    content = (HEADER + "\n" + GOOD_ROWS[0] + "\n\n" + "2021-03-02,104,106,103,oops,15000\n").encode()
    response = upload(client, content)

    assert row_errors(response) == {(4, "Close")}
    assert_nothing_stored()


def test_dates_with_mixed_timezones_are_a_400_not_a_crash(client):
    client.raise_request_exception = False  # a crash must show as the 500 a user would get
    content = csv_bytes("2021-03-01T10:00:00+05:00,100,105,99,104,1000", "2021-03-02T10:00:00Z,100,105,99,104,1000")
    response = upload(client, content)

    assert response.status_code == 400, response.content
    assert file_errors(response)["message"]
    assert_nothing_stored()


@pytest.mark.parametrize("content", [b"", b"   \n\n", b"\xef\xbb\xbf"], ids=["empty", "blank-lines", "bom-only"])
def test_empty_file(client, content):
    response = upload(client, content)

    assert response.status_code == 400, response.content
    assert response.json()["fields"]["file"]  # a zero-byte file is refused by the form field itself
    assert_nothing_stored()


def test_header_only(client):
    response = upload(client, csv_bytes())

    assert "no rows" in file_errors(response)["message"]
    assert_nothing_stored()


@pytest.mark.parametrize(
    "content",
    [
        ("Date,Open,High,Low,Close,Volume,Börse\n2021-03-01,100,105,99,104,1000,Zürich\n").encode("latin-1"),
        ("Date,Open,High,Low,Close,Volume\n2021-03-01,100,105,99,104,1000\n").encode("utf-16"),
        bytes(range(256)),
    ],
    ids=["latin-1", "utf-16", "binary"],
)
def test_non_utf8_file(client, content):
    response = upload(client, content)

    assert "UTF-8" in file_errors(response)["message"]
    assert_nothing_stored()


def test_file_over_size_limit(client, settings):
    content = csv_bytes(*GOOD_ROWS)
    settings.CSV_UPLOAD_MAX_BYTES = len(content) - 1

    errors = file_errors(upload(client, content))

    assert "limit" in errors["message"]
    assert str(len(content) - 1) in errors["message"]
    assert_nothing_stored()


def test_many_errors_capped_at_50_with_real_total(client):
    start = dt.date(2020, 1, 1)
    rows = [f"{start + dt.timedelta(days=i)},100,105,99,104,-1" for i in range(70)]
    response = upload(client, csv_bytes(*rows))

    errors = file_errors(response)
    assert errors["total"] == 70
    assert len(errors["errors"]) == 50
    assert [e["row"] for e in errors["errors"]] == list(range(2, 52))
    assert "70" in errors["message"]
    assert_nothing_stored()


def test_one_bad_row_among_many_good_stores_nothing(client):
    start = dt.date(2015, 1, 1)
    rows = [f"{start + dt.timedelta(days=i)},100,105,99,104,1000" for i in range(500)]
    rows[437] = rows[437].replace("105", "98")  # High below Low on line 439
    response = upload(client, csv_bytes(*rows))

    assert {row for row, _ in row_errors(response)} == {439}
    assert_nothing_stored()


# --- Who may upload, and the form fields -------------------------------------------------------


@pytest.mark.parametrize("role", [Role.TRAINER, Role.VIEWER, None], ids=["trainer", "viewer", "no-role"])
def test_non_maintainer_gets_403_and_nothing_stored(db, api, role):
    user = UserFactory(role=role) if role else UserFactory()
    response = upload(api(user), csv_bytes(*GOOD_ROWS))

    assert response.status_code == 403, response.content
    assert response.json()["code"] == "permission_denied"
    assert_nothing_stored()


def test_anonymous_gets_401(db):
    response = upload(APIClient(), csv_bytes(*GOOD_ROWS))

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert_nothing_stored()


def test_duplicate_dataset_name(client):
    existing = DatasetFactory(name="acme-daily", bars=5)

    response = upload(client, csv_bytes(*GOOD_ROWS))

    assert response.status_code == 400, response.content
    assert "name" in response.json()["fields"]
    assert Dataset.objects.filter(name="acme-daily").count() == 1
    assert Bar.objects.filter(dataset=existing).count() == 5
    assert Bar.objects.count() == 5
    assert not AuditEvent.objects.filter(action__startswith="dataset.").exists()


@pytest.mark.parametrize("name", ["../x", "has space", "", ".hidden", "a/b", "x" * 65, "ünï"])
def test_invalid_dataset_name(client, name):
    response = upload(client, csv_bytes(*GOOD_ROWS), name=name)

    assert response.status_code == 400, response.content
    assert "name" in response.json()["fields"]
    assert not Dataset.objects.exists()
    assert Bar.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("symbol", "AC ME"), ("symbol", ""), ("timeframe", "2d")],
)
def test_invalid_symbol_or_timeframe(client, field, value):
    response = upload(client, csv_bytes(*GOOD_ROWS), **{field: value})

    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
    assert_nothing_stored()


def test_missing_file(client):
    response = client.post(URL, {"name": "acme-daily", "symbol": "ACME"}, format="multipart")

    assert response.status_code == 400, response.content
    assert "file" in response.json()["fields"]
    assert_nothing_stored()


def test_unknown_extra_form_field(client):
    response = upload(client, csv_bytes(*GOOD_ROWS), source="builtin")

    assert response.status_code == 400, response.content
    assert "source" in response.json()["fields"]
    assert_nothing_stored()


# --- Reading datasets ----------------------------------------------------------------------------


def test_dataset_list_is_empty_for_user_without_role(db, api):
    DatasetFactory(name="visible-to-roles", bars=3)

    response = api(UserFactory()).get(URL)

    assert response.status_code == 200
    assert response.json()["count"] == 0
    assert response.json()["results"] == []


def test_dataset_detail_is_404_for_user_without_role(db, api):
    DatasetFactory(name="visible-to-roles", bars=3)

    response = api(UserFactory()).get(f"{URL}/visible-to-roles")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_viewer_sees_datasets(db, api):
    DatasetFactory(name="visible-to-roles", bars=3)

    response = api(UserFactory(role=Role.VIEWER)).get(URL)

    assert response.status_code == 200
    assert [d["name"] for d in response.json()["results"]] == ["visible-to-roles"]


def test_unknown_dataset_is_404(client):
    response = client.get(f"{URL}/no-such-dataset")

    assert response.status_code == 404
