"""Guardrails: evaluate a model's policy on the active version's prediction ledger and, on a
breach, roll back to the last healthy version (cooldown, alert on the feed and the webhook, audit).

Evaluated by the schedule (`guardrail_checks_run`), after each bar append once the predictions it
completes are resolved (`guardrail_checks_after_bars`), and on request (POST .../evaluate). The
model row is locked for the whole evaluation, so two at once act once: the second sees the
rollback and the cooldown the first left.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from models_mgmt import selectors
from models_mgmt.choices import (
    PERM_ACTIVATE,
    AlertKind,
    AlertStatus,
    GuardrailAction,
    GuardrailTrigger,
    GuardrailVerdict,
    VersionStatus,
)
from models_mgmt.engine import guardrails as checks
from models_mgmt.engine.families import LLM_LORA
from models_mgmt.engine.labels import METRIC_OF_TASK
from models_mgmt.models import AIModel, Alert, GuardrailEvaluation, GuardrailPolicy, ModelVersion, Prediction
from models_mgmt.permissions import UserLike, has_model_perm, require_model_perm
from models_mgmt.realtime.events import publish_model_event
from models_mgmt.services.audit import audit_record
from models_mgmt.services.guardrails import cooldown_end, guardrail_policy_payload
from models_mgmt.services.versions import model_version_activate_system

from . import ollama
from .alerts import alert_payload
from .webhooks import deliver

logger = logging.getLogger(__name__)
# The latency check reads at most this many windows back (of N counted ones it wants).
LOOKBACK_FACTOR = 4


def _accuracy(policy: GuardrailPolicy, active: ModelVersion) -> dict[str, Any]:
    """Per task, the resolved predictions the version served since it became active."""
    rows = Prediction.objects.filter(version=active, resolved_at__isnull=False)
    if active.activated_at is not None:
        rows = rows.filter(created_at__gte=active.activated_at)
    marks = list(rows.values_list("correct", flat=True))
    tasks = list(policy.accuracy_tasks)
    alpha = policy.accuracy_alpha / max(len(tasks), 1)  # Bonferroni: one level for "any task got worse"
    results = []
    for task in tasks:
        validation = (active.performance_metrics or {}).get(METRIC_OF_TASK[task])
        hits = [bool(m[task]) for m in marks if m and m.get(task) is not None]
        if validation is None:
            results.append(
                {
                    "task": task,
                    "verdict": checks.INCONCLUSIVE,
                    "measured": None,
                    "bound": None,
                    "count": len(hits),
                    "detail": f"{active.version} records no validation {task} accuracy",
                }
            )
            continue
        result = checks.accuracy_check(
            task,
            sum(hits),
            len(hits),
            validation=float(validation),
            margin=policy.accuracy_margin,
            min_resolved=policy.accuracy_min_resolved,
            alpha=alpha,
        )
        results.append(result.as_dict())
    return {
        "verdict": checks.overall(r["verdict"] for r in results),
        "since": active.activated_at.isoformat() if active.activated_at else None,
        "margin": policy.accuracy_margin,
        "minResolved": policy.accuracy_min_resolved,
        "alpha": policy.accuracy_alpha,
        "test": "exact one-sided binomial test per task (Bonferroni over the tasks)",
        "tasks": results,
    }


def _latency(policy: GuardrailPolicy, active: ModelVersion, now: dt.datetime) -> dict[str, Any]:
    window_s = policy.latency_window_minutes * 60
    lookback = policy.latency_n * LOOKBACK_FACTOR
    earliest = now - dt.timedelta(seconds=window_s * (lookback + 1))
    since = max(earliest, active.activated_at) if active.activated_at else earliest
    samples = (
        (at.timestamp(), latency)
        for at, latency in Prediction.objects.filter(version=active, created_at__gte=since, created_at__lt=now)
        .order_by()
        .values_list("created_at", "latency_ms")
        .iterator(chunk_size=5000)
    )
    result = checks.latency_check(
        samples,
        now=now.timestamp(),
        since=active.activated_at.timestamp() if active.activated_at else None,
        window_s=window_s,
        min_requests=policy.latency_min_requests,
        threshold_ms=policy.latency_p95_ms,
        m=policy.latency_m,
        n=policy.latency_n,
        lookback_windows=lookback,
    )

    def iso(seconds: float) -> str:
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).isoformat()

    return {
        "verdict": result.verdict,
        "measured": None if result.measured is None else round(result.measured, 3),
        "bound": result.bound,
        "breachedWindows": result.breached,
        "countedWindows": result.counted,
        "m": result.m,
        "n": result.n,
        "windowMinutes": policy.latency_window_minutes,
        "minRequests": policy.latency_min_requests,
        "windows": [{**w.as_dict(), "start": iso(w.start), "end": iso(w.end)} for w in result.windows],
        "detail": result.detail,
    }


def _evidence(data: dict[str, Any]) -> list[dict[str, Any]]:
    """What breached: measured value, bound, count and windows of each breached check."""
    rows = []
    accuracy = data.get("accuracy") or {}
    for task in accuracy.get("tasks", []):
        if task["verdict"] == checks.BREACH:
            rows.append(
                {
                    "check": "accuracy",
                    "task": task["task"],
                    "measured": task["measured"],
                    "bound": task["bound"],
                    "count": task["count"],
                    "pValue": task["pValue"],
                    "windows": {"since": accuracy["since"]},
                }
            )
    latency = data.get("latency") or {}
    if latency.get("verdict") == checks.BREACH:
        rows.append(
            {
                "check": "latency",
                "measured": latency["measured"],
                "bound": latency["bound"],
                "count": latency["breachedWindows"],
                "m": latency["m"],
                "n": latency["n"],
                "windows": [w for w in latency["windows"] if w["counted"]][-latency["n"] :],
            }
        )
    return rows


def _reasons(evidence: list[dict[str, Any]]) -> list[str]:
    reasons = []
    for row in evidence:
        if row["check"] == "accuracy":
            reasons.append(
                f"live {row['task']} accuracy {row['measured']:.3f} over {row['count']} resolved "
                f"predictions is significantly below {row['bound']:.3f} (p={row['pValue']:.2g})"
            )
        else:
            reasons.append(
                f"serving latency p95 over {row['bound']:g} ms in {row['count']} of the last "
                f"{row['n']} counted windows (M={row['m']}); worst p95 {row['measured']:.1f} ms"
            )
    return reasons


def _open_alert(model: AIModel, version: ModelVersion, message: str, reasons: list[str], recommendation: str) -> Alert:
    """A new guardrail alert; an unresolved older one is resolved first (one per kind at a time)."""
    now = timezone.now()
    for old in Alert.objects.select_for_update().filter(
        model=model, kind=AlertKind.GUARDRAIL_BREACH, status__in=[AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED]
    ):
        old.status, old.resolved_at = AlertStatus.RESOLVED, now
        old.save(update_fields=["status", "resolved_at"])
        audit_record(actor=None, action="alert.resolved", obj=old, ai_model=model, after=alert_payload(old))
        publish_model_event(model, "alert", alert_payload(old))
    alert = Alert.objects.create(
        model=model,
        version=version,
        kind=AlertKind.GUARDRAIL_BREACH,
        message=message,
        reasons=reasons,
        recommendation=recommendation[:64],
    )
    audit_record(actor=None, action="alert.opened", obj=alert, ai_model=model, after=alert_payload(alert))
    publish_model_event(model, "alert", alert_payload(alert))
    return alert


def guardrail_rollback(
    *,
    model: AIModel,
    policy: GuardrailPolicy,
    evaluation: GuardrailEvaluation,
    target: ModelVersion,
    now: dt.datetime,
) -> Alert:
    """Reactivate `target`, start the cooldown, open the alert and audit the evidence: one atomic
    change (the caller's transaction, with the model row locked). `evaluation.version` is from now
    on marked as rolled back by a guardrail (never promoted automatically again)."""
    with transaction.atomic():
        rolled_back = evaluation.version
        assert rolled_back is not None
        model_version_activate_system(model=model, version=target, reason="guardrail")
        policy.cooldown_until = cooldown_end(policy, now)
        policy.save(update_fields=["cooldown_until", "updated_at"])
        evidence = evaluation.checks.get("evidence", [])
        alert = _open_alert(
            model,
            rolled_back,
            f"Guardrail breached: {rolled_back.version} rolled back to {target.version} ({model.name}).",
            _reasons(evidence),
            f"rolled back to {target.version}",
        )
        evaluation.action, evaluation.rolled_back_to, evaluation.alert = GuardrailAction.ROLLED_BACK, target, alert
        evaluation.save(update_fields=["action", "rolled_back_to", "alert"])
        audit_record(
            actor=None,
            action="guardrail.rolled_back",
            obj=evaluation,
            ai_model=model,
            before={"active": rolled_back.version},
            after={"active": target.version, "cooldownUntil": policy.cooldown_until.isoformat(), "evidence": evidence},
        )
        publish_model_event(model, "guardrail", evaluation_payload(evaluation))
    return alert


def _decide(
    model: AIModel, policy: GuardrailPolicy, evaluation: GuardrailEvaluation, now: dt.datetime
) -> tuple[str, ModelVersion | None, str]:
    """(action, version to roll back to, why) for a breach."""
    active = evaluation.version
    assert active is not None
    if not policy.enabled:
        return GuardrailAction.NONE, None, "the policy is disabled: nothing is done"
    if policy.cooldown_until is not None and policy.cooldown_until > now:  # automatic_change_blocked, at `now`
        return (
            GuardrailAction.COOLDOWN,
            None,
            f"cooldown until {policy.cooldown_until:%Y-%m-%d %H:%M} UTC: no automatic change",
        )
    target = selectors.last_healthy_version(model, active)
    if target is None:
        return GuardrailAction.ALERT_ONLY, None, "no earlier healthy version to roll back to: alert only"
    if not settings.MODEL_VERSIONING_ENABLED:
        return (
            GuardrailAction.ALERT_ONLY,
            None,
            "model versioning is disabled (MODEL_VERSIONING_ENABLED=false): alert only",
        )
    if model.family == LLM_LORA.name and ollama.client() is not None:
        return (
            GuardrailAction.ALERT_ONLY,
            None,
            (f"{target.version} would have to be delivered to Ollama first: alert only, a person activates it"),
        )
    return GuardrailAction.ROLLED_BACK, target, f"rolled back to {target.version}"


def guardrail_evaluate(*, model: AIModel, trigger: str, now: dt.datetime | None = None) -> GuardrailEvaluation:
    """Evaluate the model's policy on its active version, keep the evaluation, act on a breach."""
    notify: list[Alert] = []
    with transaction.atomic():
        AIModel.objects.select_for_update().filter(pk=model.pk).first()  # one evaluation per model at a time
        now = now or timezone.now()
        policy = GuardrailPolicy.objects.filter(model=model).first() or GuardrailPolicy(model=model)
        active = model.versions.filter(status=VersionStatus.ACTIVE).first()
        if active is None:
            return GuardrailEvaluation.objects.create(
                model=model,
                trigger=trigger,
                verdict=GuardrailVerdict.INCONCLUSIVE,
                detail="no active version to evaluate",
            )
        data: dict[str, Any] = {"accuracy": _accuracy(policy, active), "latency": _latency(policy, active, now)}
        verdict = checks.overall([data["accuracy"]["verdict"], data["latency"]["verdict"]])
        data["evidence"] = _evidence(data)
        evaluation = GuardrailEvaluation.objects.create(
            model=model,
            version=active,
            trigger=trigger,
            verdict=verdict,
            checks=data,
            detail=f"{active.version}: {verdict}",
        )
        if verdict == GuardrailVerdict.BREACH:
            action, target, why = _decide(model, policy, evaluation, now)
            evaluation.detail = f"{active.version}: breach; {why}"
            evaluation.action = action
            evaluation.save(update_fields=["detail", "action"])
            if target is not None:
                notify.append(
                    guardrail_rollback(model=model, policy=policy, evaluation=evaluation, target=target, now=now)
                )
            elif action == GuardrailAction.ALERT_ONLY:
                open_for_it = Alert.objects.filter(
                    model=model,
                    version=active,
                    kind=AlertKind.GUARDRAIL_BREACH,
                    status__in=[AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED],
                ).first()
                if open_for_it is None:  # once per version, not at every evaluation
                    open_for_it = _open_alert(
                        model,
                        active,
                        f"Guardrail breached by {active.version} ({model.name}); {why}.",
                        _reasons(data["evidence"]),
                        "activate a healthy version",
                    )
                    notify.append(open_for_it)
                    audit_record(
                        actor=None,
                        action="guardrail.breached",
                        obj=evaluation,
                        ai_model=model,
                        after={"active": active.version, "evidence": data["evidence"], "action": action},
                    )
                evaluation.alert = open_for_it
                evaluation.save(update_fields=["alert"])
        elif verdict == GuardrailVerdict.OK:
            for alert in Alert.objects.select_for_update().filter(
                model=model, kind=AlertKind.GUARDRAIL_BREACH, status__in=[AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED]
            ):  # the version now serving passes: the breach is over
                alert.status, alert.resolved_at = AlertStatus.RESOLVED, timezone.now()
                alert.save(update_fields=["status", "resolved_at"])
                audit_record(actor=None, action="alert.resolved", obj=alert, ai_model=model, after=alert_payload(alert))
                publish_model_event(model, "alert", alert_payload(alert))
                notify.append(alert)
    for alert in notify:  # outside the transaction: a slow webhook holds no lock
        payload = {"event": "alert", **alert_payload(alert)}
        if alert.status == AlertStatus.OPEN:
            payload["guardrail"] = {
                "evaluationId": evaluation.pk,
                "action": evaluation.action,
                "evidence": data["evidence"],
                "rolledBackTo": evaluation.rolled_back_to.version if evaluation.rolled_back_to else None,
            }
        outcome = deliver(payload)
        if outcome:
            Alert.objects.filter(pk=alert.pk).update(webhook_status=outcome[:200])
    return evaluation


def guardrail_evaluate_now(*, actor: UserLike, model: AIModel) -> GuardrailEvaluation:
    """POST .../guardrails/evaluate: a person runs the evaluation (it acts as the schedule would)."""
    require_model_perm(actor, model, PERM_ACTIVATE, "evaluate guardrails")
    return guardrail_evaluate(model=model, trigger=GuardrailTrigger.MANUAL)


def _run(models: Any, trigger: str) -> list[tuple[str, str, str]]:
    done = []
    for model in models:
        try:
            evaluation = guardrail_evaluate(model=model, trigger=trigger)
            done.append((model.name, evaluation.verdict, evaluation.action))
        except Exception:
            logger.exception("guardrail evaluation of %s failed", model.name)
    return done


def guardrail_checks_run() -> list[tuple[str, str, str]]:
    """The scheduled evaluation of every model with an enabled policy and an active version."""
    models = AIModel.objects.filter(guardrail_policy__enabled=True, versions__status=VersionStatus.ACTIVE)
    return _run(models.distinct(), GuardrailTrigger.SCHEDULE)


def guardrail_checks_after_bars(dataset_id: int) -> list[tuple[str, str, str]]:
    """After a bar append (its predictions resolved): the models whose active version's
    predictions resolve against that dataset."""
    models = AIModel.objects.filter(
        guardrail_policy__enabled=True,
        predictions__dataset_id=dataset_id,
        predictions__version__status=VersionStatus.ACTIVE,
    )
    return _run(models.distinct(), GuardrailTrigger.BARS)


def evaluation_payload(evaluation: GuardrailEvaluation) -> dict[str, Any]:
    return {
        "id": evaluation.pk,
        "createdAt": evaluation.created_at.isoformat() if evaluation.created_at else None,
        "version": evaluation.version.version if evaluation.version else None,
        "trigger": evaluation.trigger,
        "verdict": evaluation.verdict,
        "action": evaluation.action,
        "rolledBackTo": evaluation.rolled_back_to.version if evaluation.rolled_back_to else None,
        "alertId": evaluation.alert_id,
        "detail": evaluation.detail,
        "checks": evaluation.checks,
    }


def model_guardrails(user: UserLike, model_name: str) -> dict[str, Any]:
    """GET .../guardrails: the policy (defaults, off, when none is stored), the cooldown, the
    versions rolled back by a guardrail and the last rollbacks."""
    model = selectors.ai_model_get(user, model_name)
    return {**guardrails_of(model), "canEdit": has_model_perm(user, model, PERM_ACTIVATE)}


def guardrails_of(model: AIModel) -> dict[str, Any]:
    policy = selectors.guardrail_policy_of(model) or GuardrailPolicy(model=model)
    rollbacks = GuardrailEvaluation.objects.filter(model=model, action=GuardrailAction.ROLLED_BACK).select_related(
        "version", "rolled_back_to"
    )
    last = GuardrailEvaluation.objects.filter(model=model).select_related("version", "rolled_back_to").first()
    active = selectors.active_version_of(model)
    return {
        "modelName": model.name,
        "stored": policy.pk is not None,
        "policy": guardrail_policy_payload(policy),
        "activeVersion": active.version if active else None,
        "cooldownActive": bool(policy.cooldown_until and policy.cooldown_until > timezone.now()),
        "rolledBackVersions": sorted({r.version.version for r in rollbacks if r.version}),
        "rollbacks": [
            {
                "evaluationId": r.pk,
                "at": r.created_at.isoformat(),
                "from": r.version.version if r.version else None,
                "to": r.rolled_back_to.version if r.rolled_back_to else None,
                "evidence": r.checks.get("evidence", []),
            }
            for r in rollbacks[:20]
        ],
        "lastEvaluation": evaluation_payload(last) if last else None,
    }
