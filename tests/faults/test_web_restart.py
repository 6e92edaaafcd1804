"""(b) The web server (uvicorn) is killed (SIGKILL to its process group) while websocket clients follow a job.

Five clients follow the job feed; the server dies mid-job and a new one starts on the same port;
each client reconnects with `?lastSeq=<last seq received>`. In the end every client holds seq
1..N exactly once, in order, ending with the job's terminal status — on the embedded transport
(relay over the events table) and on Redis (channels_redis pushes).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
from django.db import connection
from rest_framework_simplejwt.tokens import AccessToken

from models_mgmt.choices import TERMINAL_JOB_STATUSES, JobStatus
from models_mgmt.models import ProgressEvent, TrainingJob

from .conftest import LONG, assert_job_seqs_gap_free, trainer_with_model

websockets = pytest.importorskip("websockets")
pytestmark = pytest.mark.slow
REDIS_URL = "redis://127.0.0.1:6379/12"  # no other test uses this database
CLIENTS = 5


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).flushdb()


@pytest.fixture(params=["embedded", "redis"])
def transport(request):
    if request.param == "redis":
        try:
            flush_redis()
        except Exception as exc:
            pytest.fail(f"Redis at 127.0.0.1:6379 is needed for the Redis transport test: {exc}")
    try:
        yield request.param
    finally:
        if request.param == "redis":
            flush_redis()


class Client:
    """Follows one job feed, reconnecting with lastSeq after any drop until the terminal event."""

    def __init__(self, port: int, token: str, job_id: int):
        self.port, self.token, self.job_id = port, token, job_id
        self.events: list[dict] = []
        self.connections = 0

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else 0

    def done(self) -> bool:
        return bool(self.events) and self.events[-1]["status"] in TERMINAL_JOB_STATUSES

    async def run(self, deadline: float) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        while not self.done():
            if time.monotonic() > deadline:
                raise AssertionError(f"client gave up at seq {self.last_seq} after {self.connections} connections")
            url = f"ws://127.0.0.1:{self.port}/ws/model-management/jobs/{self.job_id}/?lastSeq={self.last_seq}"
            try:
                async with websockets.connect(url, additional_headers=headers, open_timeout=5) as ws:
                    self.connections += 1
                    async for message in ws:
                        self.events.append(json.loads(message))
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
                await asyncio.sleep(0.2)  # the server is down (or still starting): try again


def start_job_over_http(port: int, token: str, model: str, body: dict) -> int:
    # Over the web server's HTTP, so the job goes to the broker the processes use (Redis or the ORM).
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/model-management/models/{model}/fine-tune",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        return json.loads(response.read())["id"]


async def follow_through_a_restart(processes, web, port: int, token: str, job_id: int) -> list[Client]:
    clients = [Client(port, token, job_id) for _ in range(CLIENTS)]
    deadline = time.monotonic() + 300
    tasks = [asyncio.create_task(c.run(deadline)) for c in clients]
    # Kill the server once every client is following the running job.
    while not all(c.events and c.events[-1]["status"] == JobStatus.RUNNING and c.last_seq >= 4 for c in clients):
        if any(t.done() for t in tasks) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    killed_at = {id(c): c.last_seq for c in clients}
    processes.kill(web)
    await asyncio.sleep(2)  # the worker goes on emitting while nobody serves the feed
    await asyncio.to_thread(processes.web, port)
    seq_at_restart = await asyncio.to_thread(latest_seq, job_id)
    await asyncio.gather(*tasks)
    for c in clients:
        c.killed_at = killed_at[id(c)]
    return clients, seq_at_restart


def latest_seq(job_id: int) -> int:
    try:
        return TrainingJob.objects.values_list("event_seq", flat=True).get(pk=job_id)
    finally:
        connection.close()  # this ran in a helper thread


def test_clients_resume_after_the_web_server_restarts(live, transport):
    trainer, model = trainer_with_model(f"web-restart-{transport}")
    token = str(AccessToken.for_user(trainer))
    extra = {"REDIS_URL": REDIS_URL} if transport == "redis" else {}
    processes = live(TRAINING_WORKERS="1", **extra)
    port = processes.web()
    web = processes.processes[-1]
    processes.qcluster()
    # Long enough to outlast a web server restart on a busy machine (workers warm up at start now, so a
    # job no longer spends its first seconds importing torch).
    job_id = start_job_over_http(port, token, model.name, {**LONG, "epochs": 30})

    clients, seq_at_restart = asyncio.run(follow_through_a_restart(processes, web, port, token, job_id))

    job = TrainingJob.objects.get(pk=job_id)
    assert job.status == JobStatus.SUCCEEDED, (job.error_code, job.error, processes.output()[-3000:])
    seqs_in_table = assert_job_seqs_gap_free(job_id)
    final = ProgressEvent.objects.get(job_id=job_id, seq=seqs_in_table[-1]).payload
    for client in clients:
        seqs = [e["seq"] for e in client.events]
        assert seqs == seqs_in_table, f"{transport}: {seqs}\n{processes.output()[-3000:]}"
        assert client.events[-1]["status"] == JobStatus.SUCCEEDED and client.events[-1] == final
        assert client.connections >= 2  # it really was cut off and came back
        assert 0 < client.killed_at < seqs[-1]  # ... in the middle of the job
    assert seq_at_restart < seqs_in_table[-1], "the job ended before the server was back: nothing was live after it"
