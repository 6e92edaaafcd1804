"""A CSV upload through the real web server (uvicorn) is stored whole (issue 13).

tests/api/test_datasets.py drives the upload through Django's test client; this sends a multipart
body over HTTP, large enough to arrive in many pieces, so the server's handing of the body to Django
is what is tested (daphne's Twisted used to parse multipart bodies itself: techanal/http_server.py).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import secrets

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from models_mgmt.choices import Role
from models_mgmt.models import Dataset
from tests.factories import UserFactory
from tests.live import LiveProcesses

pytestmark = pytest.mark.slow
ROWS = 3000  # ~150 kB: many receive() messages


def multipart(fields: dict[str, str], csv: bytes) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="bars.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n".encode()
        + csv
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_a_csv_upload_over_the_web_server_is_stored_whole(transactional_db, tmp_path, settings):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    maintainer = UserFactory(role=Role.MAINTAINER)
    first = dt.date(2000, 1, 3)
    lines = ["Date,Open,High,Low,Close,Volume"] + [
        f"{first + dt.timedelta(days=i)},{100 + i % 7}.0,{106 + i % 7}.5,{99 + i % 7}.25,{104 + i % 7}.0,{12000 + i}"
        for i in range(ROWS)
    ]
    body, content_type = multipart(
        {"name": "acme-daily", "symbol": "ACME", "timeframe": "1d"}, ("\n".join(lines) + "\n").encode()
    )
    live = LiveProcesses(tmp_path / "artifacts", tmp_path / "web.log", THROTTLE_USER="10000/min")
    try:
        port = live.web()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.request(
            "POST",
            "/api/model-management/datasets",
            body=body,
            headers={"Content-Type": content_type, "Authorization": f"Bearer {AccessToken.for_user(maintainer)}"},
        )
        response = connection.getresponse()
        status, answer = response.status, json.loads(response.read())
        connection.close()
    finally:
        live.stop()
    assert status == 201, (answer, live.output()[-2000:])
    assert answer["barCount"] == ROWS
    assert answer["firstDate"] == str(first)
    assert Dataset.objects.get(name="acme-daily").bars.count() == ROWS
