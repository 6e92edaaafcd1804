"""How the dashboard writes values for people: `{% load dashboard_format %}`."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import dateformat, timezone

register = template.Library()


@register.filter
def when(value: dt.datetime | dt.date | str | None, empty: str = "—") -> str:
    """A moment as people read it, "1 Dec 2026, 23:18 UTC" (a date: "1 Dec 2026"), from a datetime,
    a date or an ISO 8601 string (what presenters hand over); anything else unchanged."""
    if value in (None, ""):
        return empty
    moment: dt.datetime | dt.date
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value) if "T" in value or " " in value else dt.date.fromisoformat(value)
        except ValueError:
            return value
    else:
        moment = value
    if isinstance(moment, dt.datetime):
        if timezone.is_aware(moment):
            moment = timezone.localtime(moment)
        zone = moment.tzname() or ""
        return dateformat.format(moment, "j M Y, H:i") + (f" {zone}" if zone else "")
    return dateformat.format(moment, "j M Y")
