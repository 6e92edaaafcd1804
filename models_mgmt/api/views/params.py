"""Query parameters shared by several endpoints: a date window and a look-back window."""

from __future__ import annotations

import datetime as dt
import re

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request

from models_mgmt.engine import timeframes
from models_mgmt.errors import InvalidInput


def date_param(request: Request, key: str) -> dt.date | dt.datetime | None:
    """A date (YYYY-MM-DD: a whole UTC day) or, for intraday bars, an ISO 8601 timestamp."""
    raw = request.query_params.get(key)
    if not raw:
        return None
    try:
        return timeframes.parse_bar_time(raw)
    except ValueError as exc:
        raise InvalidInput("Invalid date.", fields={key: ["use YYYY-MM-DD or an ISO 8601 timestamp"]}) from exc


def window_params(request: Request) -> tuple[dt.date | dt.datetime | None, dt.date | dt.datetime | None]:
    start, end = date_param(request, "start"), date_param(request, "end")
    if start and end and timeframes.window_start(start) >= timeframes.window_start(end):
        raise InvalidInput("Invalid window.", fields={"end": ["must be after start"]})
    return start, end


WINDOW_PARAMS = [
    OpenApiParameter("start", OpenApiTypes.STR, description="first bar of the window: YYYY-MM-DD or ISO 8601"),
    OpenApiParameter("end", OpenApiTypes.STR, description="last bar: YYYY-MM-DD (through its end) or ISO 8601"),
]


DEFAULT_PERIOD = dt.timedelta(days=30)


def period_params(request: Request) -> tuple[dt.datetime, dt.datetime]:
    """[from, to): YYYY-MM-DD (the start of that UTC day) or ISO 8601; `to` defaults to now, `from`
    to 30 days before `to`."""
    try:
        end_raw, start_raw = date_param(request, "to"), date_param(request, "from")
    except OverflowError as exc:  # an ISO time whose UTC form is outside year 1..9999
        raise InvalidInput("Invalid date.", fields={"from": ["out of range"], "to": ["out of range"]}) from exc
    end = timeframes.window_start(end_raw) if end_raw else timezone.now()
    try:
        start = timeframes.window_start(start_raw) if start_raw else end - DEFAULT_PERIOD
    except OverflowError as exc:  # `to` in the first days of year 1
        raise InvalidInput("Invalid period.", fields={"to": ["too early to default from to 30 days before"]}) from exc
    if start >= end:
        raise InvalidInput("Invalid period.", fields={"to": ["must be after from"]})
    return start, end


PERIOD_PARAMS = [
    OpenApiParameter(
        "from", OpenApiTypes.STR, description="start (inclusive): YYYY-MM-DD or ISO 8601; default 30 days before to"
    ),
    OpenApiParameter("to", OpenApiTypes.STR, description="end (exclusive): YYYY-MM-DD or ISO 8601; default now"),
]


WINDOW_UNITS = {"m": 1, "h": 60, "d": 1440}
MAX_WINDOW_MINUTES = 366 * 1440


def since_param(request: Request) -> dt.datetime:
    raw = (request.query_params.get("window") or "7d").strip().lower()
    match = re.fullmatch(r"([0-9]{1,6})([mhd])", raw)
    minutes = int(match.group(1)) * WINDOW_UNITS[match.group(2)] if match else 0
    if not match or not 1 <= minutes <= MAX_WINDOW_MINUTES:
        raise InvalidInput("Invalid window.", fields={"window": ["use <n>m, <n>h or <n>d, at most 366d (e.g. 24h)"]})
    return timezone.now() - dt.timedelta(minutes=minutes)
