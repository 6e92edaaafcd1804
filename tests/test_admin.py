"""Django admin writes go through the services (audited) or are not offered (issue 11, item 9)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from guardian.shortcuts import get_perms

from models_mgmt.choices import JobStatus, Role
from models_mgmt.models import (
    AIModel,
    AuditEvent,
    Dataset,
    Experiment,
    GuardrailEvaluation,
    GuardrailPolicy,
    JobCost,
    ModelVersion,
    PriceCard,
    TrainingJob,
)
from tests.factories import AIModelFactory, ModelVersionFactory, TrainingJobFactory, UserFactory

ADMIN = "/admin/models_mgmt"


@pytest.fixture
def superuser_client(client, db):
    user = UserFactory(is_superuser=True, is_staff=True)
    client.force_login(user)
    client.user = user
    return client


def change_form(model: AIModel, **overrides) -> dict:
    data = {
        "base_model": model.base_model,
        "description": model.description,
        "default_dataset": model.default_dataset_id or "",
    }
    return {**data, **overrides}


def test_editing_a_model_in_admin_is_audited_and_its_name_cannot_change(superuser_client):
    model = AIModelFactory(name="signal", description="old")
    response = superuser_client.post(
        f"{ADMIN}/aimodel/{model.pk}/change/", change_form(model, description="new", name="renamed", event_seq=99)
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    model.refresh_from_db()
    assert (model.name, model.description, model.event_seq) == ("signal", "new", 0)
    event = AuditEvent.objects.get(action="model.updated")
    assert event.actor == superuser_client.user
    assert (event.before["description"], event.after["description"]) == ("old", "new")


def test_the_change_page_shows_identity_and_internal_fields_read_only(superuser_client):
    model = AIModelFactory(name="signal")
    page = superuser_client.get(f"{ADMIN}/aimodel/{model.pk}/change/").content.decode()
    assert 'name="description"' in page
    for field in ("name", "family", "owner", "event_seq"):
        assert f'name="{field}"' not in page, field
    assert "Event seq" in page  # shown, not editable


def test_adding_a_model_in_admin_registers_it_through_the_service(superuser_client):
    response = superuser_client.post(
        f"{ADMIN}/aimodel/add/", {"name": "from-admin", "family": "multitask-mlp", "description": "d"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    model = AIModel.objects.get(name="from-admin")
    assert model.owner == superuser_client.user
    assert "manage_aimodel" in get_perms(superuser_client.user, model)
    assert AuditEvent.objects.filter(action="model.created", object_id=str(model.pk)).exists()


def test_deleting_a_model_in_admin_is_audited_and_refused_while_it_trains(superuser_client):
    model = AIModelFactory(name="signal")
    ModelVersionFactory(model=model)  # goes with the model, though admin may not delete a version alone
    job = TrainingJobFactory(model=model, dataset=model.default_dataset, status=JobStatus.RUNNING)
    response = superuser_client.post(f"{ADMIN}/aimodel/{model.pk}/delete/", {"post": "yes"}, follow=True)
    assert "training job in progress" in response.content.decode()
    assert AIModel.objects.filter(pk=model.pk).exists()
    job.status = JobStatus.FAILED
    job.save()
    response = superuser_client.post(f"{ADMIN}/aimodel/{model.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not AIModel.objects.filter(pk=model.pk).exists()
    assert AuditEvent.objects.filter(action="model.deleted", object_id=str(model.pk)).exists()


def test_a_staff_user_without_the_manage_permission_is_refused_by_the_service(client, db):
    """Admin's model-level permission is not enough: the service checks the object permission."""
    staff = UserFactory(role=Role.MAINTAINER)
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="change_aimodel"))
    client.force_login(staff)
    model = AIModelFactory(name="not-theirs", description="old")
    response = client.post(f"{ADMIN}/aimodel/{model.pk}/change/", change_form(model, description="new"), follow=True)
    assert "You may not" in response.content.decode()
    model.refresh_from_db()
    assert model.description == "old"
    assert not AuditEvent.objects.filter(action="model.updated").exists()


@pytest.mark.parametrize("entity", ["modelversion", "trainingjob", "dataset", "bar", "auditevent"])
def test_rows_only_services_write_cannot_be_added_changed_or_deleted_in_admin(superuser_client, entity):
    version = ModelVersionFactory()
    job = TrainingJobFactory(model=version.model, dataset=version.model.default_dataset)
    dataset = Dataset.objects.get(name="sample")
    pk = {
        "modelversion": version.pk,
        "trainingjob": job.pk,
        "dataset": dataset.pk,
        "bar": dataset.bars.first().pk,
        "auditevent": AuditEvent.objects.create(action="x", object_type="y", object_id="1").pk,
    }[entity]
    assert superuser_client.get(f"{ADMIN}/{entity}/").status_code == 200
    assert superuser_client.get(f"{ADMIN}/{entity}/add/").status_code == 403
    assert superuser_client.post(f"{ADMIN}/{entity}/{pk}/delete/", {"post": "yes"}).status_code == 403
    page = superuser_client.get(f"{ADMIN}/{entity}/{pk}/change/").content.decode()
    assert 'name="_save"' not in page
    assert ModelVersion.objects.filter(pk=version.pk).exists()
    assert TrainingJob.objects.filter(pk=job.pk).exists()
    assert Dataset.objects.filter(pk=dataset.pk).exists()


def test_guardians_unaudited_object_permission_pages_are_not_offered(superuser_client):
    model = AIModelFactory(name="signal")
    assert superuser_client.get(f"{ADMIN}/aimodel/{model.pk}/permissions/").status_code in (302, 404)


def policy_form(model: AIModel, **overrides) -> dict:
    data = {
        "model": model.pk, "enabled": "on", "accuracy_tasks": '["signal", "risk"]', "accuracy_margin": "0.05",
        "accuracy_min_resolved": "50", "accuracy_alpha": "0.05", "latency_p95_ms": "250",
        "latency_window_minutes": "15", "latency_min_requests": "20", "latency_m": "3", "latency_n": "5",
        "cooldown_hours": "24",
    }  # fmt: skip
    return {**data, **overrides}


def test_a_guardrail_policy_is_added_and_edited_in_admin_through_the_service(superuser_client):
    model = AIModelFactory(name="guarded")
    response = superuser_client.post(f"{ADMIN}/guardrailpolicy/add/", policy_form(model))
    assert response.status_code == 302, response.content.decode()[:3000]
    policy = GuardrailPolicy.objects.get(model=model)
    assert policy.enabled and policy.accuracy_tasks == ["signal", "risk"]
    response = superuser_client.post(
        f"{ADMIN}/guardrailpolicy/{policy.pk}/change/", policy_form(model, latency_m="2", cooldown_until="2030-01-01")
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    policy.refresh_from_db()
    assert policy.latency_m == 2 and policy.cooldown_until is None  # the cooldown is not editable here
    events = AuditEvent.objects.filter(action="guardrail.policy_updated").order_by("id")
    assert [e.actor for e in events] == [superuser_client.user] * 2 and events[1].after["latencyM"] == 2


@pytest.mark.parametrize(
    ("field", "value"), [("latency_m", "9"), ("accuracy_tasks", '["volume"]'), ("accuracy_alpha", "0.9")]
)
def test_a_bad_guardrail_policy_in_admin_shows_the_field_error(superuser_client, field, value):
    model = AIModelFactory(name="guarded")
    response = superuser_client.post(f"{ADMIN}/guardrailpolicy/add/", policy_form(model, **{field: value}))
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not GuardrailPolicy.objects.exists()


def test_guardrail_evaluations_are_read_only_in_admin(superuser_client):
    model = AIModelFactory(name="guarded")
    evaluation = GuardrailEvaluation.objects.create(model=model, trigger="manual", verdict="inconclusive")
    assert superuser_client.get(f"{ADMIN}/guardrailevaluation/").status_code == 200
    assert superuser_client.get(f"{ADMIN}/guardrailevaluation/add/").status_code == 403
    page = superuser_client.get(f"{ADMIN}/guardrailevaluation/{evaluation.pk}/change/").content.decode()
    assert 'name="_save"' not in page


def test_a_price_card_is_added_in_admin_through_the_service_and_is_read_only_after(superuser_client):
    form = {"cpu_hour": "0.10", "gpu_hour": "3.00", "currency": "eur", "valid_from_0": "2026-01-01",
            "valid_from_1": "00:00:00", "note": "new contract"}  # fmt: skip
    response = superuser_client.post(f"{ADMIN}/pricecard/add/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    card = PriceCard.objects.get()
    assert (str(card.cpu_hour), card.currency, card.created_by) == ("0.1000", "EUR", superuser_client.user)
    assert AuditEvent.objects.get(action="price_card.created").actor == superuser_client.user
    page = superuser_client.get(f"{ADMIN}/pricecard/{card.pk}/change/").content.decode()
    assert 'name="_save"' not in page and 'name="cpu_hour"' not in page
    superuser_client.post(f"{ADMIN}/pricecard/{card.pk}/change/", {**form, "cpu_hour": "9"})
    card.refresh_from_db()
    assert str(card.cpu_hour) == "0.1000"
    assert superuser_client.post(f"{ADMIN}/pricecard/{card.pk}/delete/", {"post": "yes"}).status_code == 403


def test_a_bad_price_card_in_admin_shows_the_field_error(superuser_client):
    form = {"cpu_hour": "0.10", "gpu_hour": "3.00", "currency": "E1", "valid_from_0": "2026-01-01",
            "valid_from_1": "00:00:00"}  # fmt: skip
    response = superuser_client.post(f"{ADMIN}/pricecard/add/", form)
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert not PriceCard.objects.exists()


def test_job_costs_are_read_only_in_admin(superuser_client):
    job = TrainingJobFactory(status=JobStatus.SUCCEEDED)
    cost = JobCost.objects.create(job=job, cpu_hour=1, gpu_hour=1, currency="USD", final=True)
    assert superuser_client.get(f"{ADMIN}/jobcost/").status_code == 200
    assert superuser_client.get(f"{ADMIN}/jobcost/add/").status_code == 403
    page = superuser_client.get(f"{ADMIN}/jobcost/{cost.pk}/change/").content.decode()
    assert 'name="_save"' not in page


def test_experiments_are_read_only_in_admin_and_stopped_through_the_service(superuser_client):
    champion = ModelVersionFactory(status="active")
    challenger = ModelVersionFactory(model=champion.model)
    running = Experiment.objects.create(model=champion.model, champion=champion, challenger=challenger)
    ended = Experiment.objects.create(
        model=champion.model, champion=champion, challenger=challenger, state="challenger_worse"
    )
    assert superuser_client.get(f"{ADMIN}/experiment/").status_code == 200
    assert superuser_client.get(f"{ADMIN}/experiment/add/").status_code == 403
    assert 'name="_save"' not in superuser_client.get(f"{ADMIN}/experiment/{running.pk}/change/").content.decode()
    response = superuser_client.post(
        f"{ADMIN}/experiment/",
        {"action": "stop", "_selected_action": [running.pk, ended.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert "1 experiment(s) stopped." in page and "cannot become stopped" in page
    running.refresh_from_db()
    assert running.state == "stopped" and running.reason == "stopped in admin"
    event = AuditEvent.objects.get(action="experiment.stopped")
    assert event.actor == superuser_client.user and event.before["state"] == "running"
