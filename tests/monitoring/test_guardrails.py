"""Guardrails on ledger rows built with factories (the evaluation only reads the ledger: its
`correct`, `resolved_at`, `latency_ms` and `created_at`): degraded accuracy rolls back within two
evaluations, latency after exactly M of N windows, too few resolved never acts, the cooldown
blocks a second automatic change, and the alert, webhook and audit carry the evidence."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.db import connections
from django.utils import timezone
from django_q.models import Schedule

from models_mgmt.choices import AlertKind, AlertStatus, GuardrailAction, GuardrailTrigger, VersionStatus
from models_mgmt.models import Alert, AuditEvent, GuardrailEvaluation, GuardrailPolicy, Prediction, ProgressEvent
from models_mgmt.monitoring.guardrails import guardrail_checks_after_bars, guardrail_checks_run, guardrail_evaluate
from models_mgmt.selectors import automatic_change_blocked
from models_mgmt.services.versions import _activate_if_better
from tests.factories import AIModelFactory, ModelVersionFactory, TrainingJobFactory

pytestmark = pytest.mark.django_db
WINDOW_S = 600


class Receiver(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self):
        Receiver.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(settings):
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
    yield Receiver.received
    server.shutdown()
    server.server_close()


@pytest.fixture
def guarded():
    """v1.0.0 served for a month, then v1.1.0 activated a week ago; an enabled policy."""
    model = AIModelFactory(name="guarded")
    now = timezone.now()
    old = ModelVersionFactory(
        model=model, version="v1.0.0", status=VersionStatus.DEPRECATED, activated_at=now - dt.timedelta(days=40),
        artifact_path="/artifacts/guarded/v1.0.0",
    )  # fmt: skip
    new = ModelVersionFactory(
        model=model, version="v1.1.0", status=VersionStatus.ACTIVE, activated_at=now - dt.timedelta(days=7),
        artifact_path="/artifacts/guarded/v1.1.0",
    )  # fmt: skip
    policy = GuardrailPolicy.objects.create(
        model=model, enabled=True, accuracy_min_resolved=50, latency_p95_ms=500.0, latency_window_minutes=10,
        latency_min_requests=20, latency_m=3, latency_n=5, cooldown_hours=24.0,
    )  # fmt: skip
    return model, old, new, policy


def ledger(version, count, *, correct_share=0.5, resolved=True, at=None, latency=5.0):
    """`count` ledger rows of `version`; an exact share of them correct on every task."""
    at = at or timezone.now() - dt.timedelta(days=1)
    rows = []
    for i in range(count):
        right = int((i + 1) * correct_share) > int(i * correct_share)
        rows.append(
            Prediction(
                model=version.model, version=version, dataset=version.model.default_dataset, source="dataset",
                as_of=at, horizon=5, breakout_window=20, due_on=at, features=[0.0], outputs={"signal": 0.5},
                latency_ms=latency, resolved_at=at if resolved else None,
                correct={"signal": right, "risk": right, "pattern": right} if resolved else None,
            )
        )  # fmt: skip
    created = Prediction.objects.bulk_create(rows)
    Prediction.objects.filter(pk__in=[p.pk for p in created]).update(created_at=at)


def test_a_degraded_replay_rolls_back_within_two_evaluations(guarded, webhook):
    model, old, new, policy = guarded
    evaluations = []
    for _ in range(4):  # each step: a month of bars resolves 30 more predictions, 30 % right
        ledger(new, 30, correct_share=0.3)
        evaluations.append(guardrail_checks_after_bars(model.default_dataset.pk))
        if GuardrailEvaluation.objects.filter(action=GuardrailAction.ROLLED_BACK).exists():
            break
    assert len(evaluations) <= 2
    assert evaluations[0] == [("guarded", "inconclusive", "none")]  # 30 resolved < minResolved 50
    assert evaluations[-1] == [("guarded", "breach", "rolled_back")]
    old.refresh_from_db(), new.refresh_from_db(), policy.refresh_from_db()
    assert old.status == VersionStatus.ACTIVE and new.status == VersionStatus.DEPRECATED

    evaluation = GuardrailEvaluation.objects.get(action=GuardrailAction.ROLLED_BACK)
    assert evaluation.trigger == GuardrailTrigger.BARS and evaluation.rolled_back_to == old
    assert policy.cooldown_until > timezone.now() + dt.timedelta(hours=23)
    # the rolled-back version is flagged, and the cooldown blocks any automatic change
    assert automatic_change_blocked(model) and automatic_change_blocked(model, new)
    GuardrailPolicy.objects.filter(pk=policy.pk).update(cooldown_until=timezone.now() - dt.timedelta(seconds=1))
    assert not automatic_change_blocked(model) and automatic_change_blocked(model, new)
    assert not automatic_change_blocked(model, old)

    # alert on the model feed and the webhook, audit evidence
    alert = Alert.objects.get(kind=AlertKind.GUARDRAIL_BREACH)
    assert alert.status == AlertStatus.OPEN and alert.version == new and "rolled back to v1.0.0" in alert.message
    assert alert.webhook_status.startswith("delivered")
    feed = ProgressEvent.objects.filter(model=model, type="alert").get()
    assert feed.payload["kind"] == "guardrail_breach" and feed.payload["state"] == "open"
    assert ProgressEvent.objects.filter(model=model, type="version.activated", payload__reason="guardrail").exists()
    assert ProgressEvent.objects.filter(model=model, type="guardrail", payload__rolledBackTo="v1.0.0").exists()
    posted = [json.loads(b) for b in webhook]
    assert [p["kind"] for p in posted] == ["guardrail_breach"]
    assert posted[0]["guardrail"]["rolledBackTo"] == "v1.0.0" and posted[0]["guardrail"]["evidence"]
    audit = AuditEvent.objects.get(action="guardrail.rolled_back")
    assert audit.before == {"active": "v1.1.0"} and audit.after["active"] == "v1.0.0"
    signal = next(row for row in audit.after["evidence"] if row.get("task") == "signal")
    assert signal["measured"] == pytest.approx(0.3) and signal["bound"] == pytest.approx(0.47)
    assert signal["count"] == 60 and signal["windows"]["since"] == new.activated_at.isoformat()
    assert AuditEvent.objects.filter(action="version.activated", after__reason="guardrail").exists()


def test_the_cooldown_blocks_a_second_automatic_change_and_a_flagged_version_is_skipped(guarded):
    model, old, new, _policy = guarded
    ledger(new, 80, correct_share=0.2)
    assert guardrail_evaluate(model=model, trigger=GuardrailTrigger.SCHEDULE).action == GuardrailAction.ROLLED_BACK
    old.refresh_from_db()
    ledger(old, 80, correct_share=0.2, at=old.activated_at + dt.timedelta(minutes=1))  # poor after its return too
    second = guardrail_evaluate(model=model, trigger=GuardrailTrigger.SCHEDULE)
    assert (second.verdict, second.action) == ("breach", GuardrailAction.COOLDOWN)
    assert model.versions.get(status=VersionStatus.ACTIVE) == old
    # an automatic promotion (activationPolicy=if_better) is refused during the cooldown too
    candidate = ModelVersionFactory(model=model, version="v1.2.0", performance_metrics={"overallScore": 0.9})
    rival = {"version": old.version, "performanceMetrics": {"overallScore": 0.1}}
    _activate_if_better(TrainingJobFactory(model=model), candidate, rival)
    assert model.versions.get(status=VersionStatus.ACTIVE) == old

    # after the cooldown: v1.1.0 was rolled back by a guardrail, so there is nothing healthy left
    later = timezone.now() + dt.timedelta(hours=25)
    third = guardrail_evaluate(model=model, trigger=GuardrailTrigger.SCHEDULE, now=later)
    assert (third.verdict, third.action) == ("breach", GuardrailAction.ALERT_ONLY)
    assert "no earlier healthy version" in third.detail
    assert model.versions.get(status=VersionStatus.ACTIVE) == old
    alert = Alert.objects.get(kind=AlertKind.GUARDRAIL_BREACH, status=AlertStatus.OPEN)
    assert alert.version == old and third.alert == alert
    # once per version, not at every evaluation
    guardrail_evaluate(model=model, trigger=GuardrailTrigger.SCHEDULE, now=later)
    assert Alert.objects.filter(kind=AlertKind.GUARDRAIL_BREACH, status=AlertStatus.OPEN).count() == 1


def test_injected_latency_rolls_back_after_exactly_m_of_n_windows(guarded):
    model, old, new, _policy = guarded  # M=3 of N=5 windows of 10 minutes, p95 > 500 ms, >= 20 requests
    start = (int(timezone.now().timestamp()) // WINDOW_S - 12) * WINDOW_S
    slow = {3, 5, 6}  # window 4 is slow too, but with 5 requests it is not counted
    verdicts = []
    for w in range(7):
        at = dt.datetime.fromtimestamp(start + w * WINDOW_S + 30, tz=dt.UTC)
        ledger(new, 5 if w == 4 else 25, resolved=False, at=at, latency=900.0 if w in slow | {4} else 20.0)
        done = at + dt.timedelta(seconds=WINDOW_S)  # the window is complete
        evaluation = guardrail_evaluate(model=model, trigger=GuardrailTrigger.SCHEDULE, now=done)
        verdicts.append((evaluation.checks["latency"]["breachedWindows"], evaluation.verdict, evaluation.action))
        if evaluation.action != GuardrailAction.NONE:
            break
    assert verdicts == [
        (0, "inconclusive", "none"),  # 1 counted window < M
        (0, "inconclusive", "none"),
        (0, "ok", "none"),
        (1, "ok", "none"),
        (1, "ok", "none"),  # the thin slow window is not counted
        (2, "ok", "none"),  # M - 1 breached: nothing
        (3, "breach", "rolled_back"),  # exactly M
    ]
    latency = GuardrailEvaluation.objects.get(action=GuardrailAction.ROLLED_BACK).checks["evidence"][0]
    assert latency["check"] == "latency" and latency["count"] == 3 and latency["bound"] == 500.0
    assert latency["measured"] == pytest.approx(900.0) and len(latency["windows"]) == 5
    assert model.versions.get(status=VersionStatus.ACTIVE) == old


def test_a_policy_with_too_few_resolved_predictions_never_acts(guarded):
    model, _old, new, _policy = guarded
    ledger(new, 49, correct_share=0.0)  # every one wrong, one short of minResolved
    ledger(new, 500, resolved=False)  # pending ones do not count
    for _ in range(5):
        evaluation = guardrail_evaluate(model=model, trigger=GuardrailTrigger.SCHEDULE)
        assert evaluation.action == GuardrailAction.NONE and evaluation.verdict != "breach"
        tasks = evaluation.checks["accuracy"]["tasks"]
        assert {t["verdict"] for t in tasks} == {"inconclusive"} and {t["count"] for t in tasks} == {49}
    assert model.versions.get(status=VersionStatus.ACTIVE) == new
    assert not Alert.objects.exists() and not AuditEvent.objects.filter(action__startswith="guardrail").exists()


def test_the_schedule_reads_enabled_policies_only_and_a_disabled_one_never_acts(guarded):
    model, _old, new, policy = guarded
    ledger(new, 80, correct_share=0.2)
    other = AIModelFactory(name="unguarded")
    ModelVersionFactory(model=other, status=VersionStatus.ACTIVE, activated_at=timezone.now())
    GuardrailPolicy.objects.filter(pk=policy.pk).update(enabled=False)
    assert guardrail_checks_run() == []
    evaluation = guardrail_evaluate(model=model, trigger=GuardrailTrigger.MANUAL)
    assert (evaluation.verdict, evaluation.action) == ("breach", GuardrailAction.NONE)
    assert model.versions.get(status=VersionStatus.ACTIVE) == new
    GuardrailPolicy.objects.filter(pk=policy.pk).update(enabled=True)
    assert guardrail_checks_run() == [("guarded", "breach", "rolled_back")]


@pytest.mark.django_db(transaction=True)
def test_evaluations_at_once_roll_back_once(guarded):
    """Four evaluations released together, each on its own connection: the model row lock makes
    them one after another, and only the first finds the degraded version still active."""
    model, old, new, _policy = guarded
    ledger(new, 80, correct_share=0.2)
    barrier = threading.Barrier(4)
    outcomes: list = []

    def evaluate() -> None:
        try:
            barrier.wait()
            outcomes.append(guardrail_evaluate(model=model, trigger=GuardrailTrigger.SCHEDULE).action)
        except BaseException as exc:
            outcomes.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=evaluate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == [GuardrailAction.NONE] * 3 + [GuardrailAction.ROLLED_BACK]
    assert model.versions.get(status=VersionStatus.ACTIVE) == old
    assert Alert.objects.filter(kind=AlertKind.GUARDRAIL_BREACH).count() == 1
    assert AuditEvent.objects.filter(action="version.activated").count() == 1


def test_with_versioning_switched_off_a_breach_alerts_only(guarded, settings):
    model, _old, new, _policy = guarded
    settings.MODEL_VERSIONING_ENABLED = False
    ledger(new, 80, correct_share=0.2)
    evaluation = guardrail_evaluate(model=model, trigger=GuardrailTrigger.SCHEDULE)
    assert (evaluation.verdict, evaluation.action) == ("breach", GuardrailAction.ALERT_ONLY)
    assert "MODEL_VERSIONING_ENABLED" in evaluation.detail
    assert model.versions.get(status=VersionStatus.ACTIVE) == new
    assert AuditEvent.objects.get(action="guardrail.breached").after["evidence"]


def test_the_migration_schedules_the_guardrail_checks():
    schedule = Schedule.objects.get(name="techanal: guardrail checks")
    assert schedule.func == "models_mgmt.tasks.guardrail_checks_run" and schedule.minutes == 15
    assert schedule.repeats == -1 and schedule.schedule_type == "I"
