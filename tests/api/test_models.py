"""Registry entries: create, read, update, delete, sharing, audit, pagination."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from models_mgmt.choices import JobStatus, Role
from models_mgmt.models import AIModel, AuditEvent
from tests.factories import AIModelFactory, TrainingJobFactory, UserFactory, grant

MODELS = "/api/model-management/models"


@pytest.fixture
def maintainer(db):
    return UserFactory(role=Role.MAINTAINER)


@pytest.mark.parametrize("name", ["llama3.1:8b", "techanal-signal", "a", "model_v2.0", "x" * 100])
def test_seed_style_names_register_and_route(api, maintainer, name):
    created = api(maintainer).post(MODELS, {"name": name}, format="json")
    assert created.status_code == 201, created.data
    assert api(maintainer).get(f"{MODELS}/{name}").data["name"] == name
    assert api(maintainer).get(f"{MODELS}/{name}/").status_code == 200  # trailing slash accepted


@pytest.mark.parametrize("name", ["", "has space", "../etc", "-leading", "x" * 101, "emoji🙂", "a/b"])
def test_bad_names_are_refused(api, maintainer, name):
    response = api(maintainer).post(MODELS, {"name": name}, format="json")
    assert response.status_code == 400
    assert "name" in response.data["fields"]
    assert not AIModel.objects.exists()


def test_duplicate_name_is_refused(api, maintainer):
    api(maintainer).post(MODELS, {"name": "dup"}, format="json")
    response = api(maintainer).post(MODELS, {"name": "dup"}, format="json")
    assert response.status_code == 400
    assert "already exists" in str(response.data["fields"]["name"])


def test_unknown_family_and_dataset_are_named(api, maintainer):
    response = api(maintainer).post(MODELS, {"name": "m", "family": "gpt", "defaultDataset": "nope"}, format="json")
    assert response.status_code == 400
    assert {"family", "defaultDataset"} <= set(response.data["fields"])


@pytest.mark.parametrize("field", ["owner", "status", "accuracy", "activeVersion", "createdAt"])
def test_mass_assignment_is_refused(api, maintainer, field):
    response = api(maintainer).post(MODELS, {"name": "m", field: "x"}, format="json")
    assert response.status_code == 400
    assert field in response.data["fields"]
    assert not AIModel.objects.exists()


def test_update_changes_only_editable_fields_and_is_audited(api, ai_model, owner):
    response = api(owner).patch(f"{MODELS}/{ai_model.name}", {"description": "signals v2"}, format="json")
    assert response.status_code == 200
    assert response.data["description"] == "signals v2"
    event = AuditEvent.objects.get(action="model.updated")
    assert event.before["description"] == "" and event.after["description"] == "signals v2"
    refused = api(owner).patch(f"{MODELS}/{ai_model.name}", {"owner": "mallory", "name": "x"}, format="json")
    assert refused.status_code == 400
    assert set(refused.data["fields"]) == {"owner", "name"}


def test_delete_refused_while_training(api, ai_model, owner):
    TrainingJobFactory(model=ai_model, dataset=ai_model.default_dataset, status=JobStatus.RUNNING)
    response = api(owner).delete(f"{MODELS}/{ai_model.name}")
    assert response.status_code == 409
    assert AIModel.objects.filter(pk=ai_model.pk).exists()


def test_delete_keeps_the_audit_trail(api, ai_model, owner):
    assert api(owner).delete(f"{MODELS}/{ai_model.name}").status_code == 204
    assert not AIModel.objects.filter(name="llama3.1:8b").exists()
    event = AuditEvent.objects.get(action="model.deleted")
    assert event.ai_model_name == "" and event.before["name"] == "llama3.1:8b"


def test_sharing_with_a_user_grants_the_role_and_revoking_removes_it(api, ai_model, owner):
    colleague = UserFactory(role=Role.TRAINER)
    assert api(colleague).get(f"{MODELS}/{ai_model.name}").status_code == 404
    granted = api(owner).post(
        f"{MODELS}/{ai_model.name}/access", {"user": colleague.username, "role": "trainer"}, format="json"
    )
    assert granted.status_code == 200
    assert granted.data["permissions"] == ["finetune", "view"]
    assert api(colleague).get(f"{MODELS}/{ai_model.name}").data["permissions"] == ["view", "finetune"]
    event = AuditEvent.objects.get(action="model.access_changed")
    assert event.before == {"user": colleague.username, "permissions": []}
    assert event.after["permissions"] == ["finetune_aimodel", "view_aimodel"]
    revoked = api(owner).post(
        f"{MODELS}/{ai_model.name}/access", {"user": colleague.username, "role": None}, format="json"
    )
    assert revoked.data["permissions"] == []
    assert api(colleague).get(f"{MODELS}/{ai_model.name}").status_code == 404


def test_sharing_validates_the_grantee(api, ai_model, owner):
    body = {"user": "ghost", "role": "viewer"}
    assert api(owner).post(f"{MODELS}/{ai_model.name}/access", body, format="json").status_code == 400
    both = {"user": owner.username, "group": "viewer", "role": "viewer"}
    assert api(owner).post(f"{MODELS}/{ai_model.name}/access", both, format="json").status_code == 400
    demote = {"user": owner.username, "role": "viewer"}
    assert api(owner).post(f"{MODELS}/{ai_model.name}/access", demote, format="json").status_code == 400


def test_sharing_with_a_group_reaches_its_members(api, ai_model, owner):
    member = UserFactory(role=Role.VIEWER)
    api(owner).post(f"{MODELS}/{ai_model.name}/access", {"group": "viewer", "role": "viewer"}, format="json")
    assert api(member).get(f"{MODELS}/{ai_model.name}").status_code == 200
    assert Group.objects.get(name="viewer").user_set.filter(pk=member.pk).exists()


def test_list_is_paginated_with_a_maximum_page_size(api, maintainer):
    for i in range(205):
        grant(maintainer, AIModelFactory(name=f"m{i:03d}", owner=maintainer), Role.VIEWER)
    response = api(maintainer).get(MODELS, {"pageSize": 1000})
    assert response.status_code == 200
    assert response.data["count"] == 205
    assert len(response.data["results"]) == 200
    assert response.data["next"] is not None
    assert len(api(maintainer).get(MODELS).data["results"]) == 50


def test_list_query_count_does_not_grow_with_rows(api, maintainer, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert api(maintainer).get(MODELS).status_code == 200
        return len(ctx.captured_queries)

    for i in range(3):
        grant(maintainer, AIModelFactory(name=f"a{i}", owner=maintainer), Role.VIEWER)
    few = count()
    for i in range(30):
        grant(maintainer, AIModelFactory(name=f"b{i}", owner=maintainer), Role.VIEWER)
    assert count() == few


def test_model_status_reflects_training_and_activation(api, ai_model, owner):
    from tests.factories import ModelVersionFactory

    assert api(owner).get(f"{MODELS}/{ai_model.name}").data["status"] == "idle"
    ModelVersionFactory(model=ai_model, version="v1.0.0", status="active", accuracy=0.6, response_time_ms=0.8)
    data = api(owner).get(f"{MODELS}/{ai_model.name}").data
    assert (data["status"], data["activeVersion"], data["accuracy"], data["responseTime"]) == (
        "active",
        "v1.0.0",
        0.6,
        0.8,
    )
    job = TrainingJobFactory(model=ai_model, dataset=ai_model.default_dataset, status=JobStatus.RUNNING)
    data = api(owner).get(f"{MODELS}/{ai_model.name}").data
    assert (data["status"], data["currentJobId"]) == ("training", job.pk)


def test_audit_trail_is_for_maintainers_and_filtered_by_model(api, ai_model, owner):
    other = AIModelFactory(name="secret")
    grant(other.owner, other, Role.MAINTAINER)
    api(other.owner).patch(f"{MODELS}/secret", {"description": "hidden"}, format="json")
    api(owner).patch(f"{MODELS}/{ai_model.name}", {"description": "visible"}, format="json")
    response = api(owner).get("/api/model-management/audit-events")
    assert response.status_code == 200
    assert {e["modelName"] for e in response.data["results"]} == {"llama3.1:8b"}
    viewer = UserFactory(role=Role.VIEWER)
    grant(viewer, ai_model, Role.VIEWER)
    assert api(viewer).get("/api/model-management/audit-events").status_code == 403
