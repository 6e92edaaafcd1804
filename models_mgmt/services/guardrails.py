"""Guardrail policies: validating and storing a model's policy. The evaluation and the rollback it
may make live in monitoring/guardrails.py (they read the ledger and notify like the drift alerts)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction

from models_mgmt.choices import PERM_ACTIVATE
from models_mgmt.engine.labels import TASKS
from models_mgmt.errors import InvalidInput
from models_mgmt.models import AIModel, GuardrailPolicy
from models_mgmt.permissions import UserLike, require_model_perm

from .audit import audit_record

# Wire name -> (field, type, lowest, highest). Both bounds are inclusive.
POLICY_NUMBERS: dict[str, tuple[str, type, float, float]] = {
    "accuracyMargin": ("accuracy_margin", float, 0.0, 0.5),
    "accuracyMinResolved": ("accuracy_min_resolved", int, 1, 1_000_000),
    "accuracyAlpha": ("accuracy_alpha", float, 1e-6, 0.5),
    "latencyP95Ms": ("latency_p95_ms", float, 0.001, 600_000.0),
    "latencyWindowMinutes": ("latency_window_minutes", int, 1, 1440),
    "latencyMinRequests": ("latency_min_requests", int, 1, 1_000_000),
    "latencyM": ("latency_m", int, 1, 100),
    "latencyN": ("latency_n", int, 1, 100),
    "cooldownHours": ("cooldown_hours", float, 0.0, 8760.0),
}
POLICY_FIELDS = ("enabled", "accuracyTasks", *POLICY_NUMBERS, "cooldownUntil")


def guardrail_policy_payload(policy: GuardrailPolicy) -> dict[str, Any]:
    """The policy in the API's names (a model without a stored policy shows the defaults, off)."""
    return {
        "enabled": policy.enabled,
        "accuracyTasks": list(policy.accuracy_tasks),
        **{name: getattr(policy, field) for name, (field, *_) in POLICY_NUMBERS.items()},
        "cooldownUntil": policy.cooldown_until.isoformat() if policy.cooldown_until else None,
        "updatedAt": policy.updated_at.isoformat() if policy.pk and policy.updated_at else None,
        "updatedBy": policy.updated_by.username if policy.updated_by_id and policy.updated_by else None,
    }


def _number(name: str, value: Any) -> tuple[Any, str | None]:
    _, kind, low, high = POLICY_NUMBERS[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, "a whole number" if kind is int else "a number"
    if kind is int and not (isinstance(value, int) or float(value).is_integer()):
        return None, "a whole number"
    try:
        number = kind(value)
    except (OverflowError, ValueError):  # 10**400 as a float, inf as an int
        return None, f"between {low:g} and {high:g}"
    if number != number or not low <= number <= high:  # NaN fails too
        return None, f"between {low:g} and {high:g}"
    return number, None


def guardrail_policy_validate(policy: GuardrailPolicy, changes: Any) -> dict[str, Any]:
    """{field: value} to set from `changes` (a JSON object in the API's names), or InvalidInput
    naming each wrong field (unknown ones included)."""
    if not isinstance(changes, dict):
        raise InvalidInput("Send a JSON object.", fields={"non_field_errors": ["expected an object"]})
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in POLICY_FIELDS:
            errors[name] = [f"unknown or read-only field; allowed: {', '.join(POLICY_FIELDS)}"]
        elif name == "enabled":
            if isinstance(value, bool):
                values["enabled"] = value
            else:
                errors[name] = ["true or false"]
        elif name == "accuracyTasks":
            if (
                not isinstance(value, list)
                or not value
                or any(not isinstance(t, str) or t not in TASKS for t in value)
                or len(set(value)) != len(value)
            ):
                errors[name] = [f"a non-empty list of distinct tasks from {', '.join(TASKS)}"]
            else:
                values["accuracy_tasks"] = list(value)
        elif name == "cooldownUntil":
            if value is not None:
                errors[name] = ["only null, which ends the cooldown now"]
            else:
                values["cooldown_until"] = None
        else:
            number, problem = _number(name, value)
            if problem:
                errors[name] = [problem]
            else:
                values[POLICY_NUMBERS[name][0]] = number
    if not errors:
        m = values.get("latency_m", policy.latency_m)
        n = values.get("latency_n", policy.latency_n)
        if m > n:
            errors["latencyM"] = [f"at most latencyN ({n}): M breached windows of the last N"]
    if errors:
        raise InvalidInput("Invalid guardrail policy.", fields=errors)
    return values


@transaction.atomic
def guardrail_policy_update(*, actor: UserLike, model: AIModel, changes: Any) -> GuardrailPolicy:
    """Set the given fields of the model's policy (created with the defaults on first use); left-out
    fields keep their value. Needs the permission activating a version needs: a policy decides
    which version serves."""
    user = require_model_perm(actor, model, PERM_ACTIVATE, "change guardrail policies")
    AIModel.objects.select_for_update().filter(pk=model.pk).first()  # serialised with evaluations
    policy = GuardrailPolicy.objects.filter(model=model).first() or GuardrailPolicy(model=model)
    values = guardrail_policy_validate(policy, changes)
    before = guardrail_policy_payload(policy) if policy.pk else None
    for field, value in values.items():
        setattr(policy, field, value)
    policy.updated_by = user
    policy.save()
    after = guardrail_policy_payload(policy)
    audit_record(actor=actor, action="guardrail.policy_updated", obj=policy, ai_model=model, before=before, after=after)
    return policy


def cooldown_end(policy: GuardrailPolicy, now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(hours=policy.cooldown_hours)
