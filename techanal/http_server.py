"""daphne's HTTP request, with every request body left to Django.

Twisted's `Request` parses a `multipart/form-data` body itself before daphne hands the request to
the application, and answers one it cannot parse (say, a body that is only the closing boundary)
with a bare 400: no body, no Content-Type, and Django never sees it. Django parses the body anyway,
so with Twisted's parse turned off a malformed upload reaches the API and gets its JSON error body
like any other bad input (and a large CSV upload is no longer parsed twice in memory).
"""

from __future__ import annotations

import json
from typing import Any

from daphne import http_protocol

# What daphne itself answers (a header it refuses, an application that crashed or timed out).
_CODES = {400: "bad_request", 500: "server_error", 503: "unavailable"}


class WebRequest(http_protocol.WebRequest):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)

    def basic_error(self, status: int, status_text: bytes, body: str) -> None:
        """daphne's own error page is HTML; under /api/ it is the API's JSON error body."""
        if not getattr(self, "path", b"").startswith(b"/api/"):
            super().basic_error(status, status_text, body)
            return
        self.handle_reply(
            {"type": "http.response.start", "status": status, "headers": [(b"Content-Type", b"application/json")]}
        )
        detail = {"detail": f"{body}.", "code": _CODES.get(status, "error")}
        self.handle_reply({"type": "http.response.body", "body": json.dumps(detail).encode()})


def leave_request_bodies_to_django() -> None:
    """daphne's HTTPFactory builds each request from this module-level name; point it at ours."""
    http_protocol.WebRequest = WebRequest
