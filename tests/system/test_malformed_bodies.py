"""Malformed request bodies sent to the real web server get the API's JSON error body (issue 11, item 5).

Twisted used to parse a multipart body before daphne handed the request to Django, and answered
one it could not parse with a bare 400: no body, no Content-Type. uvicorn (the server since issue
13) leaves bodies to Django; its own 400 for an unparseable request is JSON under /api/ too.
"""

from __future__ import annotations

import http.client
import json
import socket

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from models_mgmt.choices import Role
from tests.factories import AIModelFactory, UserFactory
from tests.live import LiveProcesses

pytestmark = pytest.mark.slow

BASE = "/api/model-management"
PATHS = [
    "/api/auth/token/",
    "/api/auth/token/refresh/",
    "/api/auth/token/blacklist/",
    f"{BASE}/datasets",
    f"{BASE}/datasets/sample/bars",
    f"{BASE}/models/edge-model/fine-tune",
    f"{BASE}/models/edge-model/predict",
]
BODIES = {
    "only the closing boundary": b"--BoUnDaRy--\r\n",
    "closing boundary without CRLF": b"--BoUnDaRy--",
    "a part without headers": b"--BoUnDaRy\r\n\r\nx\r\n--BoUnDaRy--\r\n",
    "no boundary at all": b"garbage",
}


def post(port: int, path: str, body: bytes, token: str) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "multipart/form-data; boundary=BoUnDaRy", "Authorization": f"Bearer {token}"}
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def raw_get(port: int, path: bytes, header: bytes) -> bytes:
    """A request http.client refuses to send (a header value with a control character)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header + b"\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_malformed_multipart_body_gets_the_json_error_body_on_every_path(transactional_db, tmp_path, settings):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    # A viewer: a well-formed but empty form is refused (or, for fine-tune, forbidden), never run.
    user = UserFactory(role=Role.VIEWER)
    AIModelFactory(name="edge-model", owner=user)
    token = str(AccessToken.for_user(user))
    live = LiveProcesses(tmp_path / "artifacts", tmp_path / "daphne.log", THROTTLE_USER="10000/min")
    try:
        port = live.web()
        answers = {(path, kind): post(port, path, body, token) for path in PATHS for kind, body in BODIES.items()}
        bad_header = raw_get(port, f"{BASE}/models".encode(), b"X-Note: a\x0bb")
    finally:
        live.stop()
    wrong = {
        where: (status, content_type, content[:120])
        for where, (status, content_type, content) in answers.items()
        if content_type != "application/json" or b'"code"' not in content or b'"detail"' not in content
    }
    assert not wrong
    assert all(400 <= status < 500 for status, _, _ in answers.values())
    # A request the server itself refuses before Django sees it, under /api/: the same JSON body.
    head, _, content = bad_header.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(content)["code"] == "bad_request", content
    assert json.loads(content)["detail"].startswith("Invalid"), content
