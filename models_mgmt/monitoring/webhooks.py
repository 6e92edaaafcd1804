"""Alert webhook: a signed JSON POST to ALERT_WEBHOOK_URL (stdlib only, short timeout).

The receiver checks `X-TechAnal-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact body
bytes with ALERT_WEBHOOK_SECRET.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

logger = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-TechAnal-Signature"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(payload: dict[str, Any]) -> str:
    """POST the payload; returns what happened ('' when no webhook is configured). Never raises."""
    url = settings.ALERT_WEBHOOK_URL
    if not url:
        return ""
    if not url.startswith(("http://", "https://")):
        return f"not sent: ALERT_WEBHOOK_URL must be http(s), got {url[:40]!r}"
    body = json.dumps(payload, cls=DjangoJSONEncoder, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "techanal-alerts/1"}
    if settings.ALERT_WEBHOOK_SECRET:
        headers[SIGNATURE_HEADER] = sign(body, settings.ALERT_WEBHOOK_SECRET)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 (http(s) checked)
    try:
        with urllib.request.urlopen(request, timeout=settings.ALERT_WEBHOOK_TIMEOUT_S) as response:  # noqa: S310
            return f"delivered: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"failed: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        logger.warning("alert webhook to %s failed: %s", url, exc)
        return f"failed: {exc}"[:200]
