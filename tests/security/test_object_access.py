"""Object-level authorisation between two owners: each sees only their own models.

Every model-scoped endpoint of the permission matrix (tests/api/test_permission_matrix.py), called
by the owner of ANOTHER model, answers 404 and the body names nothing of the model; the model is
unchanged afterwards. Then the ways to reach another owner's objects through one's own model or
through the collections (alert ids, job ids, versions, lists, audit trail), and both websocket feeds.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from models_mgmt.choices import AlertStatus, ExperimentState, JobStatus, VersionStatus
from models_mgmt.models import AIModel, Experiment, Prediction, TrainingJob
from models_mgmt.realtime.events import publish_job_event
from techanal.asgi import application
from tests.api.test_permission_matrix import ENDPOINTS, call
from tests.conftest import bearer

from .conftest import Owned, fresh_token

API = "/api/model-management"


def leaks(response, owned: Owned, *, name_echoed: bool = False) -> list[str]:
    """The strings of the other owner's model that appear in a response body.

    A 404 may repeat the name the caller sent (it says the same of a model that does not exist);
    nothing else of the model may appear: its owner, description, alerts, versions.
    """
    body = response.content.decode(errors="replace")
    secrets = [owned.user.username]  # also in the model's description and its alert's message
    if not name_echoed:
        secrets += [owned.model.name, "llama3.1"]
    return [s for s in secrets if s in body]


def assert_untouched(owned: Owned) -> None:
    model = AIModel.objects.get(pk=owned.model.pk)
    assert model.description == f"edited by {owned.user.username}"
    assert model.versions.get(status=VersionStatus.ACTIVE).version == "v1.0.0"
    assert TrainingJob.objects.get(pk=owned.live_job.pk).status == JobStatus.QUEUED
    assert TrainingJob.objects.filter(model=model).count() == 2
    owned.alert.refresh_from_db()
    assert owned.alert.status == AlertStatus.OPEN
    assert not Prediction.objects.filter(model=model).exists()
    assert Experiment.objects.get(pk=555).state == ExperimentState.RUNNING


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_another_owner_gets_404_and_learns_nothing(owners, endpoint):
    alice, bob = owners
    response = call(bearer(bob.user), endpoint)

    assert response.status_code == 404, response.content
    if endpoint.path.startswith(alice.base):
        detail = f"AI model '{alice.model.name}' not found."
    else:  # an object addressed by its id (experiments/555): answered exactly like an id that does not exist
        missing = call(bearer(bob.user), replace(endpoint, path=endpoint.path.replace("/555", "/99555")))
        detail = missing.json()["detail"].replace("99555", "555")
    assert response.json() == {"detail": detail, "code": "not_found"}
    assert leaks(response, alice, name_echoed=True) == []
    assert_untouched(alice)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_an_unknown_model_answers_exactly_like_a_hidden_one(owners, endpoint):
    _, bob = owners
    hidden = call(bearer(bob.user), endpoint)
    unknown_path = endpoint.path.replace("llama3.1:8b", "no-such-model")
    unknown = getattr(bearer(bob.user), endpoint.method)(unknown_path, endpoint.body, format="json")

    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json() == {
        **unknown.json(),
        "detail": unknown.json()["detail"].replace("no-such-model", "llama3.1:8b"),
    }


def test_the_owner_still_reaches_every_endpoint(owners):
    """The control: the same requests by the owner are not refused (a few may conflict: 409)."""
    alice, _ = owners
    for endpoint in ENDPOINTS:
        if endpoint.method == "delete":
            continue
        response = call(bearer(alice.user), endpoint)
        assert response.status_code in (endpoint.success, 409), (str(endpoint), response.content)


def test_an_alert_of_another_model_cannot_be_acknowledged_through_ones_own_model(owners):
    alice, bob = owners
    response = bearer(bob.user).post(f"{bob.base}/alerts/{alice.alert.pk}/acknowledge")

    assert response.status_code == 404
    assert leaks(response, alice) == []
    alice.alert.refresh_from_db()
    assert alice.alert.status == AlertStatus.OPEN
    assert bearer(bob.user).post(f"{bob.base}/alerts/{bob.alert.pk}/acknowledge").status_code == 200


def test_version_names_shared_by_both_models_resolve_to_ones_own(owners):
    alice, bob = owners
    client = bearer(bob.user)

    detail = client.get(f"{bob.base}/versions/v1.0.0").json()
    assert detail["accuracy"] == pytest.approx(0.71)
    listing = client.get(f"{bob.base}/versions").json()["results"]
    assert sorted(v["accuracy"] for v in listing) == pytest.approx([0.71, 0.72])
    assert client.post(f"{bob.base}/versions/v1.1.0/activate").status_code == 200
    assert alice.model.versions.get(status=VersionStatus.ACTIVE).version == "v1.0.0"


def test_jobs_of_another_owner_are_invisible(owners):
    alice, bob = owners
    client = bearer(bob.user)

    for job in (alice.finished_job, alice.live_job):
        response = client.get(f"{API}/jobs/{job.pk}")
        assert response.status_code == 404
        assert leaks(response, alice) == []
    listed = client.get(f"{API}/jobs").json()["results"]
    assert {j["id"] for j in listed} == {bob.finished_job.pk, bob.live_job.pk}
    assert client.get(f"{API}/jobs", {"model": alice.model.name}).json()["results"] == []
    status = client.get(f"{bob.base}/fine-tune/status").json()
    assert status["id"] in (bob.finished_job.pk, bob.live_job.pk)


def test_model_list_shows_only_ones_own(owners):
    alice, bob = owners
    response = bearer(bob.user).get(f"{API}/models")

    assert [m["name"] for m in response.json()["results"]] == [bob.model.name]
    assert leaks(response, alice) == []


def test_audit_trail_shows_only_ones_own_models(owners):
    alice, bob = owners
    client = bearer(bob.user)

    everything = client.get(f"{API}/audit-events")
    assert everything.status_code == 200
    assert {e["modelName"] for e in everything.json()["results"]} == {bob.model.name}
    assert leaks(everything, alice) == []
    filtered = client.get(f"{API}/audit-events", {"model": alice.model.name})
    assert filtered.json()["results"] == []


def test_alert_lists_show_only_ones_own(owners):
    alice, bob = owners
    response = bearer(bob.user).get(f"{bob.base}/alerts")

    assert [a["id"] for a in response.json()["results"]] == [bob.alert.pk]
    assert leaks(response, alice) == []


# --- Websocket feeds ------------------------------------------------------------------------------


TIMEOUT = 5


def ws(path: str, user) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application, path, headers=[(b"authorization", f"Bearer {fresh_token(user)}".encode())]
    )


@pytest.mark.parametrize("feed", ["model", "finished-job", "live-job"])
def test_another_owners_feeds_close_4403_before_anything_is_sent(ws_owners, feed):
    alice, bob = ws_owners
    publish_job_event(alice.live_job, "job.status")
    path = {
        "model": f"/ws/model-management/models/{alice.model.name}/progress/",
        "finished-job": f"/ws/model-management/jobs/{alice.finished_job.pk}/",
        "live-job": f"/ws/model-management/jobs/{alice.live_job.pk}/",
    }[feed]

    async def main():
        socket = ws(path, bob.user)
        await socket.connect(timeout=TIMEOUT)
        assert await socket.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": 4403}

    async_to_sync(main)()


def test_ones_own_feed_carries_nothing_of_another_model(ws_owners):
    """Bob follows his model; Alice's job events reach Alice's feed and never Bob's."""
    alice, bob = ws_owners
    publish_job_event(bob.live_job, "job.status")
    publish_job_event(alice.live_job, "job.status")

    @database_sync_to_async
    def publish_for_alice() -> None:
        for _ in range(3):
            publish_job_event(TrainingJob.objects.get(pk=alice.live_job.pk), "job.progress", {"loss": 0.5})

    async def main():
        bobs = ws(f"/ws/model-management/models/{bob.model.name}/progress/", bob.user)
        alices = ws(f"/ws/model-management/models/{alice.model.name}/progress/", alice.user)
        assert (await bobs.connect(timeout=TIMEOUT))[0]
        assert (await alices.connect(timeout=TIMEOUT))[0]
        first_bob = await bobs.receive_json_from(timeout=TIMEOUT)
        assert first_bob["modelName"] == bob.model.name
        await alices.receive_json_from(timeout=TIMEOUT)
        await publish_for_alice()
        for _ in range(3):
            event = await alices.receive_json_from(timeout=TIMEOUT)
            assert event["modelName"] == alice.model.name
        while not await bobs.receive_nothing(timeout=0.5):
            event = await bobs.receive_json_from(timeout=TIMEOUT)
            assert alice.model.name not in json.dumps(event), event
        await bobs.disconnect()
        await alices.disconnect()

    async_to_sync(main)()
