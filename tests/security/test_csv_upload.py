"""Hostile CSV uploads are refused cleanly: 400 naming the file's fault, nothing stored, no 500.

tests/api/test_datasets.py covers the everyday faults (formula cells in number columns, a limit
lowered to a few bytes, Latin-1/UTF-16-with-BOM/binary); these are the rest of the sweep.
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from models_mgmt.choices import Role
from tests.api.test_datasets import HEADER, URL, assert_nothing_stored, csv_bytes, file_errors, upload
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(api):
    client = api(UserFactory(role=Role.MAINTAINER))
    client.raise_request_exception = False  # a crash must show as the 500 a user would get
    return client


def test_a_file_over_the_default_limit_is_refused_without_being_parsed(client, settings):
    assert settings.CSV_UPLOAD_MAX_BYTES == 20 * 1024 * 1024
    row = b"2021-03-01,100,105,99,104,1000\n"
    content = HEADER.encode() + b"\n" + row * (settings.CSV_UPLOAD_MAX_BYTES // len(row) + 1)

    errors = file_errors(upload(client, content))

    assert "limit" in errors["message"] and "20971520" in errors["message"]
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("cell", "column"),
    [
        ("=1+1", "Date"),
        ("@SUM(A1)", "Date"),
        ("\t=1+1", "Open"),
        ("\r=1+1", "High"),
        ("=cmd|' /C calc'!A0", "Low"),
        ("+1+1", "Close"),
    ],
    ids=["date-equals", "date-at", "tab-prefixed", "cr-prefixed", "dde", "plus"],
)
def test_formula_like_cells_anywhere_are_refused(client, cell, column):
    values = {"Date": "2021-03-01", "Open": "100", "High": "105", "Low": "99", "Close": "104", "Volume": "1000"}
    values[column] = f'"{cell}"'
    response = upload(client, csv_bytes(",".join(values.values())))

    errors = file_errors(response)["errors"]
    assert [e["column"] for e in errors] == [column], errors
    assert_nothing_stored()


@pytest.mark.parametrize(
    "content",
    [
        csv_bytes("2021-03-01,100,105,99,104,1000").decode().encode("utf-16-le"),  # no BOM
        csv_bytes("2021-03-01,100,105,99,104,1000").decode().encode("utf-32"),
        csv_bytes("2021-03-01,100,105,99,104,1000").replace(b"104", b"1\x004"),
        b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(range(200)),  # an .xlsx (zip)
        b"\x1f\x8b\x08\x00" + bytes(100),  # gzip
        "Date,Open,High,Low,Close,Volume\n2021-03-01,１００,105,99,104,1000\n".encode(),  # full-width digits
    ],
    ids=["utf-16-no-bom", "utf-32", "nul-byte", "xlsx", "gzip", "full-width-digits"],
)
def test_wrong_encodings_and_non_text_files_are_refused(client, content):
    response = upload(client, content)

    assert response.status_code == 400, response.content
    assert response.json()["fields"]["file"]
    assert_nothing_stored()


def test_a_json_body_to_the_upload_is_refused_as_a_media_type(client):
    response = client.post(URL, {"name": "x", "symbol": "X", "file": "Date,Open\n"}, format="json")

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert_nothing_stored("x")


def test_an_upload_without_a_file_names_the_field(client):
    response = client.post(URL, {"name": "x", "symbol": "X"}, format="multipart")

    assert response.status_code == 400
    assert "file" in response.json()["fields"]
    assert_nothing_stored("x")


def test_a_very_wide_row_is_refused_cleanly(client):
    header = HEADER + "," + ",".join(f"extra{i}" for i in range(5000))
    row = "2021-03-01,100,105,99,104,1000," + ",".join("=1" for _ in range(5000))
    response = upload(client, csv_bytes(row, header=header))

    # Extra columns are ignored and never stored (README), so their formulas cannot come back out.
    assert response.status_code == 201, response.content
    assert "extra" not in response.content.decode()


def test_a_file_name_with_a_path_is_harmless(client):
    data = {
        "name": "traversal",
        "symbol": "T",
        "file": SimpleUploadedFile("../../etc/passwd.csv", csv_bytes("2021-03-01,100,105,99,104,1000")),
    }
    response = client.post(URL, data, format="multipart")

    assert response.status_code == 201, response.content
    assert "passwd" not in response.content.decode()
