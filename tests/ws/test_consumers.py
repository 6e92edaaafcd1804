"""The websocket feeds against the real ASGI app (Channels' WebsocketCommunicator).

Runs on the embedded transport (in-memory layer + relay reading the events table), the harder
of the two: every live event here crosses the database like a worker's would.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from rest_framework_simplejwt.tokens import AccessToken

from models_mgmt.choices import JobStatus, Role, VersionStatus
from models_mgmt.models import TrainingJob
from models_mgmt.realtime.events import job_group, publish_job_event
from models_mgmt.services import model_version_activate, training_job_transition
from techanal.asgi import application
from tests.factories import AIModelFactory, ModelVersionFactory, TrainingJobFactory, UserFactory, grant

TIMEOUT = 5


def run(coroutine_function):
    return async_to_sync(coroutine_function)()


def bearer_headers(user) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {AccessToken.for_user(user)}".encode())]


def communicator(path: str, headers=None) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=headers or [])


async def publish(job_id: int, n: int = 1) -> None:
    @database_sync_to_async
    def write() -> None:
        job = TrainingJob.objects.select_related("model").get(pk=job_id)
        for _ in range(n):
            publish_job_event(job, "job.progress", {"loss": 0.5})

    await write()


async def receive_all(ws: WebsocketCommunicator, count: int) -> list[dict]:
    return [await ws.receive_json_from(timeout=TIMEOUT) for _ in range(count)]


@pytest.fixture
def world(transactional_db):
    model = AIModelFactory(name="llama3.1:8b")
    grant(model.owner, model, Role.MAINTAINER)
    viewer = UserFactory(role=Role.VIEWER)
    grant(viewer, model, Role.VIEWER)
    job = TrainingJobFactory(model=model, dataset=model.default_dataset, status=JobStatus.RUNNING, total_epochs=10)
    publish_job_event(job, "job.status")
    return model, viewer, job


MODEL_FEED = "/ws/model-management/models/llama3.1:8b/progress/"


def job_feed(job) -> str:
    return f"/ws/model-management/jobs/{job.pk}/"


@pytest.mark.parametrize("feed", ["model", "job"])
def test_no_credentials_are_refused_with_4401_and_nothing_sent(world, feed):
    _, _, job = world
    path = MODEL_FEED if feed == "model" else job_feed(job)

    async def main():
        ws = communicator(path, headers=[(b"origin", b"http://localhost")])
        connected, _ = await ws.connect(timeout=TIMEOUT)
        assert connected
        assert await ws.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": 4401}

    run(main)


@pytest.mark.parametrize("feed", ["model", "job"])
def test_a_client_without_credentials_or_origin_is_closed_with_4401_not_refused_at_the_handshake(world, client, feed):
    """A script (no Authorization, no Origin) was refused with HTTP 403; the documented answer is 4401.
    A session cookie alone, without the Origin every browser sends, authenticates nobody."""
    _, viewer, job = world
    client.force_login(viewer)
    path = MODEL_FEED if feed == "model" else job_feed(job)

    async def main():
        for headers in ([], [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]):
            ws = communicator(path, headers=headers)
            connected, _ = await ws.connect(timeout=TIMEOUT)
            assert connected
            assert await ws.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": 4401}

    run(main)


@pytest.mark.parametrize("token", ["garbage", "", "eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoxfQ."])
def test_a_bad_token_is_refused_with_4401(world, token):
    async def main():
        ws = communicator(MODEL_FEED, headers=[(b"authorization", f"Bearer {token}".encode())])
        await ws.connect(timeout=TIMEOUT)
        assert (await ws.receive_output(timeout=TIMEOUT))["code"] == 4401

    run(main)


def test_a_token_in_the_url_is_not_accepted(world):
    _, viewer, _ = world

    async def main():
        ws = communicator(
            f"{MODEL_FEED}?token={AccessToken.for_user(viewer)}", headers=[(b"origin", b"http://localhost")]
        )
        await ws.connect(timeout=TIMEOUT)
        assert (await ws.receive_output(timeout=TIMEOUT))["code"] == 4401

    run(main)


@pytest.mark.parametrize("feed", ["model", "job"])
def test_a_user_without_access_is_refused_with_4403(world, feed):
    _, _, job = world
    stranger = UserFactory(role=Role.MAINTAINER)
    path = MODEL_FEED if feed == "model" else job_feed(job)

    async def main():
        ws = communicator(path, headers=bearer_headers(stranger))
        await ws.connect(timeout=TIMEOUT)
        assert await ws.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": 4403}

    run(main)


def test_an_unknown_model_is_indistinguishable_from_a_hidden_one(world):
    _, viewer, _ = world

    async def main():
        ws = communicator("/ws/model-management/models/nope/progress/", headers=bearer_headers(viewer))
        await ws.connect(timeout=TIMEOUT)
        assert (await ws.receive_output(timeout=TIMEOUT))["code"] == 4403

    run(main)


def test_a_viewer_gets_the_current_state_then_live_events(world):
    _, viewer, job = world

    async def main():
        ws = communicator(job_feed(job), headers=bearer_headers(viewer))
        assert (await ws.connect(timeout=TIMEOUT))[0]
        first = await ws.receive_json_from(timeout=TIMEOUT)
        assert (first["type"], first["jobId"], first["seq"], first["status"]) == ("job.status", job.pk, 1, "running")
        for key in ("progress", "epoch", "step", "loss", "valLoss", "metrics", "eta", "timestamp", "totalEpochs"):
            assert key in first
        await publish(job.pk, 3)
        assert [e["seq"] for e in await receive_all(ws, 3)] == [2, 3, 4]
        assert await ws.receive_nothing(timeout=0.3)
        await ws.disconnect()

    run(main)


def test_reconnecting_with_the_last_seq_resends_every_missed_event_once(world):
    _, viewer, job = world
    for _ in range(5):
        publish_job_event(job, "job.progress", {"loss": 0.4})

    async def main():
        ws = communicator(f"{job_feed(job)}?lastSeq=2", headers=bearer_headers(viewer))
        await ws.connect(timeout=TIMEOUT)
        assert [e["seq"] for e in await receive_all(ws, 4)] == [3, 4, 5, 6]
        await publish(job.pk)
        assert (await ws.receive_json_from(timeout=TIMEOUT))["seq"] == 7
        assert await ws.receive_nothing(timeout=0.3)
        await ws.disconnect()

    run(main)


def test_a_gap_in_live_delivery_is_filled_from_the_table_and_duplicates_dropped(world):
    _, viewer, job = world

    async def main():
        ws = communicator(job_feed(job), headers=bearer_headers(viewer))
        await ws.connect(timeout=TIMEOUT)
        assert (await ws.receive_json_from(timeout=TIMEOUT))["seq"] == 1

        @database_sync_to_async
        def write_three_silently() -> dict:
            # Written while "the relay was not looking": only the last one is pushed below.
            j = TrainingJob.objects.select_related("model").get(pk=job.pk)
            return [publish_job_event(j, "job.progress", {}) for _ in range(3)][-1]

        last = await write_three_silently()
        layer = get_channel_layer()
        await layer.group_send(job_group(job.pk), {"type": "feed.event", "event": last})
        await layer.group_send(job_group(job.pk), {"type": "feed.event", "event": last})  # a duplicate
        received = [e["seq"] for e in await receive_all(ws, 3)]
        assert received == [2, 3, 4]
        assert await ws.receive_nothing(timeout=0.5)  # the relay's copies are dropped too
        await ws.disconnect()

    run(main)


def test_the_job_feed_ends_with_the_terminal_status(world):
    _, viewer, job = world

    async def main():
        ws = communicator(job_feed(job), headers=bearer_headers(viewer))
        await ws.connect(timeout=TIMEOUT)
        await ws.receive_json_from(timeout=TIMEOUT)

        @database_sync_to_async
        def fail() -> None:
            j = TrainingJob.objects.select_related("model").get(pk=job.pk)
            training_job_transition(j, JobStatus.FAILED, error_code="invalid_data", error="not enough bars")

        await fail()
        last = await ws.receive_json_from(timeout=TIMEOUT)
        assert (last["status"], last["errorCode"], last["error"]) == ("failed", "invalid_data", "not enough bars")
        assert (await ws.receive_output(timeout=TIMEOUT))["type"] == "websocket.close"

    run(main)


def test_the_model_feed_follows_the_next_job_and_model_events(world):
    model, viewer, job = world
    ModelVersionFactory(model=model, version="v1.0.0", status=VersionStatus.READY)

    async def main():
        ws = communicator(MODEL_FEED, headers=bearer_headers(viewer))
        await ws.connect(timeout=TIMEOUT)
        assert (await ws.receive_json_from(timeout=TIMEOUT))["jobId"] == job.pk

        @database_sync_to_async
        def finish_and_start_another() -> int:
            j = TrainingJob.objects.select_related("model").get(pk=job.pk)
            training_job_transition(j, JobStatus.SUCCEEDED)
            model_version_activate(actor=model.owner, model=model, version="v1.0.0")
            nxt = TrainingJobFactory(model=model, dataset=model.default_dataset, status=JobStatus.QUEUED)
            publish_job_event(nxt, "job.status")
            return nxt.pk

        next_id = await finish_and_start_another()
        events = await receive_all(ws, 3)
        by_type = {(e["stream"], e.get("jobId")): e for e in events}
        assert by_type[("job", job.pk)]["status"] == "succeeded"
        activated = by_type[("model", None)]
        assert (activated["type"], activated["version"], activated["seq"]) == ("version.activated", "v1.0.0", 1)
        assert (by_type[("job", next_id)]["seq"], by_type[("job", next_id)]["status"]) == (1, "queued")
        await ws.disconnect()

        again = communicator(f"{MODEL_FEED}?jobId={job.pk}&lastSeq=1&lastModelSeq=0", headers=bearer_headers(viewer))
        await again.connect(timeout=TIMEOUT)
        replayed = {(e["stream"], e.get("jobId"), e["seq"]) for e in await receive_all(again, 3)}
        assert replayed == {("model", None, 1), ("job", job.pk, 2), ("job", next_id, 1)}
        assert await again.receive_nothing(timeout=0.3)
        await again.disconnect()

    run(main)


def test_the_session_cookie_works_from_an_allowed_origin_only(world, client):
    _, viewer, job = world
    client.force_login(viewer)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def main():
        ws = communicator(job_feed(job), headers=[(b"cookie", cookie), (b"origin", b"http://localhost")])
        await ws.connect(timeout=TIMEOUT)
        assert (await ws.receive_json_from(timeout=TIMEOUT))["jobId"] == job.pk
        await ws.disconnect()
        evil = communicator(job_feed(job), headers=[(b"cookie", cookie), (b"origin", b"http://evil.example")])
        connected, _ = await evil.connect(timeout=TIMEOUT)
        assert not connected

    run(main)


def test_a_socket_is_closed_when_its_token_expires(world):
    _, viewer, job = world
    token = AccessToken.for_user(viewer)
    token.set_exp(lifetime=timedelta(seconds=3))  # long enough to connect on a busy machine

    async def main():
        ws = communicator(job_feed(job), headers=[(b"authorization", f"Bearer {token}".encode())])
        await ws.connect(timeout=TIMEOUT)
        await ws.receive_json_from(timeout=TIMEOUT)
        assert await ws.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": 4401}

    run(main)


def test_malformed_resume_parameters_are_refused(world):
    _, viewer, job = world

    async def main():
        ws = communicator(f"{job_feed(job)}?lastSeq=abc", headers=bearer_headers(viewer))
        await ws.connect(timeout=TIMEOUT)
        assert (await ws.receive_output(timeout=TIMEOUT))["code"] == 4400

    run(main)


def test_many_sockets_share_one_relay(world):
    """50 followers of one job all receive each event once, through one relay."""
    _, viewer, job = world

    async def main():
        sockets = [communicator(job_feed(job), headers=bearer_headers(viewer)) for _ in range(50)]
        for ws in sockets:
            await ws.connect(timeout=TIMEOUT)
            await ws.receive_json_from(timeout=TIMEOUT)
        await publish(job.pk, 2)
        for ws in sockets:
            assert [e["seq"] for e in await receive_all(ws, 2)] == [2, 3]
        await asyncio.gather(*(ws.disconnect() for ws in sockets))

    run(main)
