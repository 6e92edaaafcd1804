"""What the HTTP servers answer themselves, before Django sees a request: the API's JSON error body.

* uvicorn (bin/serve, the product's server) answers a request it cannot parse (a header value with
  a control character, say) with a plain-text 400. `ApiHttpToolsProtocol` (`--http
  techanal.http_server:ApiHttpToolsProtocol`) gives one under /api/ the API's JSON error body.
  uvicorn hands every request body to the application unparsed.
* daphne (`daphne techanal.asgi:application`, which `bench/` compares): Twisted's `Request` parses a
  `multipart/form-data` body itself before daphne hands the request to the application, and
  answers one it cannot parse (say, a body that is only the closing boundary) with a bare 400: no
  body, no Content-Type, and Django never sees it. Django parses the body anyway, so with Twisted's
  parse turned off a malformed upload reaches the API and gets its JSON error body like any other
  bad input (and a large CSV upload is no longer parsed twice in memory).
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# What a server itself answers (a header it refuses, an application that crashed or timed out).
_CODES = {400: "bad_request", 500: "server_error", 503: "unavailable"}


def api_error_body(status: int, message: str) -> bytes:
    return json.dumps({"detail": f"{message.rstrip('.')}.", "code": _CODES.get(status, "error")}).encode()


class ApiHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        """uvicorn's own 400 is plain text; under /api/ it is the API's JSON error body."""
        if not getattr(self, "url", b"").startswith(b"/api/"):
            super().send_400_response(msg)
            return
        body = api_error_body(400, msg)
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def leave_request_bodies_to_django() -> None:
    """daphne's HTTPFactory builds each request from a module-level name; point it at ours."""
    from daphne import http_protocol  # daphne only: Twisted costs a uvicorn process ~26 MB (measured)

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
            self.handle_reply({"type": "http.response.body", "body": api_error_body(status, body)})

    http_protocol.WebRequest = WebRequest
