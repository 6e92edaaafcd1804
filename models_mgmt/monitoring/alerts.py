"""Scheduled drift checks and the alerts they open or clear (with hysteresis), notified on the
model's feed and the webhook; acknowledging an alert."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from models_mgmt.choices import DRIFT_ALERT_KINDS, PERM_MANAGE, AlertKind, AlertStatus, VersionStatus
from models_mgmt.errors import Conflict, NotFound
from models_mgmt.models import AIModel, Alert, DriftReport
from models_mgmt.permissions import UserLike, require_model_perm
from models_mgmt.realtime.events import publish_model_event
from models_mgmt.services.audit import audit_record

from .drift import drift_report_compute
from .webhooks import deliver

logger = logging.getLogger(__name__)

ALERT_MESSAGES = {
    AlertKind.DATA_DRIFT: "Input data drifted away from the training distribution",
    AlertKind.PREDICTION_DRIFT: "The distribution of the model's outputs drifted",
    AlertKind.PERFORMANCE_DRIFT: "Live accuracy is significantly below validation accuracy",
}


def monitoring_check(*, model: AIModel) -> DriftReport:
    """Compute and keep a drift report; open or clear alerts with hysteresis; notify the webhook.

    An alert of a kind opens after MONITORING_ALERT_RAISE_AFTER consecutive reports with that
    condition, and resolves after MONITORING_ALERT_CLEAR_AFTER consecutive reports without it.
    """
    active = model.versions.filter(status=VersionStatus.ACTIVE).select_related("dataset").first()
    data = drift_report_compute(model, active)
    changed: list[tuple[Alert, str]] = []
    with transaction.atomic():
        AIModel.objects.select_for_update().filter(pk=model.pk).first()  # one check per model at a time
        report = DriftReport.objects.create(
            model=model,
            version=active,
            verdict=data["verdict"],
            drift_score=data["driftScore"],
            recommendation=data["recommendation"] or "none",
            conditions=data["conditions"],
            report=data,
        )
        depth = max(settings.MONITORING_ALERT_RAISE_AFTER, settings.MONITORING_ALERT_CLEAR_AFTER)
        history = list(DriftReport.objects.filter(model=model).order_by("-created_at", "-id")[:depth])
        for kind in DRIFT_ALERT_KINDS:
            flags = [bool(r.conditions.get(kind)) for r in history]
            unresolved = Alert.objects.filter(
                model=model, kind=kind, status__in=[AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED]
            ).first()
            raise_n, clear_n = settings.MONITORING_ALERT_RAISE_AFTER, settings.MONITORING_ALERT_CLEAR_AFTER
            if unresolved is None and len(flags) >= raise_n and all(flags[:raise_n]):
                alert = Alert.objects.create(
                    model=model,
                    version=active,
                    kind=kind,
                    message=f"{ALERT_MESSAGES[AlertKind(kind)]} ({model.name} {active.version if active else ''}).",
                    reasons=data["reasons"],
                    recommendation=data["recommendation"] or "",
                    report=report,
                )
                audit_record(actor=None, action="alert.opened", obj=alert, ai_model=model, after=alert_payload(alert))
                publish_model_event(model, "alert", alert_payload(alert))
                changed.append((alert, "opened"))
            elif unresolved is not None and len(flags) >= clear_n and not any(flags[:clear_n]):
                unresolved.status = AlertStatus.RESOLVED
                unresolved.resolved_at = timezone.now()
                unresolved.save(update_fields=["status", "resolved_at"])
                audit_record(
                    actor=None, action="alert.resolved", obj=unresolved, ai_model=model, after=alert_payload(unresolved)
                )
                publish_model_event(model, "alert", alert_payload(unresolved))
                changed.append((unresolved, "resolved"))
    for alert, _ in changed:  # outside the transaction: a slow webhook holds no lock
        outcome = deliver({"event": "alert", **alert_payload(alert)})
        if outcome:
            Alert.objects.filter(pk=alert.pk).update(webhook_status=outcome[:200])
    return report


def monitoring_checks_run() -> list[tuple[str, str]]:
    """The scheduled check of every model with an active version."""
    if not settings.MODEL_DRIFT_DETECTION_ENABLED:
        return []
    done = []
    for model in AIModel.objects.filter(versions__status=VersionStatus.ACTIVE).select_related("default_dataset"):
        try:
            done.append((model.name, monitoring_check(model=model).verdict))
        except Exception:
            logger.exception("monitoring check of %s failed", model.name)
    return done


def alert_payload(alert: Alert) -> dict[str, Any]:
    return {
        "alertId": alert.pk,
        "kind": alert.kind,
        "state": alert.status,
        "version": alert.version.version if alert.version is not None else None,
        "message": alert.message,
        "reasons": alert.reasons,
        "recommendation": alert.recommendation,
        "openedAt": alert.opened_at.isoformat() if alert.opened_at else None,
        "resolvedAt": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }


@transaction.atomic
def alert_acknowledge(*, actor: UserLike, model: AIModel, alert_id: int) -> Alert:
    acknowledger = require_model_perm(actor, model, PERM_MANAGE, "acknowledge alerts")
    alert = Alert.objects.select_for_update().filter(model=model, pk=alert_id).first()
    if alert is None:
        raise NotFound(f"Alert {alert_id} of model '{model.name}' not found.")
    if alert.status == AlertStatus.RESOLVED:
        raise Conflict(f"Alert {alert_id} is already resolved.", code="invalid_transition")
    if alert.status == AlertStatus.OPEN:
        alert.status = AlertStatus.ACKNOWLEDGED
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = acknowledger
        alert.save(update_fields=["status", "acknowledged_at", "acknowledged_by"])
        audit_record(
            actor=actor, action="alert.acknowledged", obj=alert, ai_model=model, before={"status": "open"},
            after={"status": alert.status},
        )  # fmt: skip
    return alert
