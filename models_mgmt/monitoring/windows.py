"""What every monitoring computation shares: how much history a window needs, and the label
parameters a version was trained with."""

from __future__ import annotations

from typing import Any

from models_mgmt.models import ModelVersion

HISTORY_DAYS = 400  # calendar days of bars loaded before a window: features and risk labels need ~1 year


def hyper(version: ModelVersion) -> tuple[int, int]:
    """(horizon, breakoutWindow) the version was trained with."""
    params = (version.metadata or {}).get("hyperparameters") or {}
    return int(params.get("horizon", 5)), int(params.get("breakoutWindow", 20))


def iso_day(day: Any) -> str | None:
    return day.isoformat()[:10] if day is not None else None
