"""A client follows a whole fine-tune over a websocket: real daphne, real qcluster, both transports.

Without Redis (the embedded default) events cross from the worker to daphne through the events
table and daphne's relay; with Redis they are pushed through channels_redis. Either way every
`seq` of the job must arrive exactly once and in order, ending with the new version.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from models_mgmt.choices import Role
from models_mgmt.services import dataset_import_builtin
from tests.factories import AIModelFactory, UserFactory, grant
from tests.live import LiveProcesses

websockets = pytest.importorskip("websockets")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/13"


def redis_available() -> bool:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        return True
    except Exception:
        return False


@pytest.fixture(params=["embedded", "redis"])
def stack(request, transactional_db, tmp_path, settings):
    """daphne + qcluster as separate processes on the test database."""
    if request.param == "redis":
        if not redis_available():
            pytest.fail("Redis at 127.0.0.1:6379 is needed for the Redis transport test")
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    extra = {"REDIS_URL": REDIS_URL} if request.param == "redis" else {}
    live = LiveProcesses(tmp_path / "artifacts", tmp_path / "stack.log", TRAINING_WORKERS="1", **extra)
    try:
        port = live.web()
        live.qcluster()
        yield request.param, port, live.log_path
    finally:
        live.stop()
    if request.param == "redis":
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()


async def follow(port: int, token: str, model: str) -> list[dict]:
    """Connect to the model feed, start a fine-tune over HTTP, collect until the job ends."""
    headers = {"Authorization": f"Bearer {token}"}
    url = f"ws://127.0.0.1:{port}/ws/model-management/models/{model}/progress/"
    events: list[dict] = []
    async with websockets.connect(url, additional_headers=headers, open_timeout=20) as ws:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/model-management/models/{model}/fine-tune",
            data=json.dumps({"epochs": 6, "startDate": "2013-01-01", "batchSize": 16}).encode(),
            headers={**headers, "Content-Type": "application/json"},
            method="POST",
        )
        response = await asyncio.to_thread(urllib.request.urlopen, request, timeout=30)
        job_id = json.loads(response.read())["id"]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            event = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
            events.append(event)
            if event.get("jobId") == job_id and event["status"] in ("succeeded", "failed", "stopped"):
                return [e for e in events if e.get("jobId") == job_id]
    raise AssertionError(f"the job did not end on the feed; got {len(events)} events")


def test_a_client_follows_a_fine_tune_to_its_new_version(stack):
    mode, port, log = stack
    model = AIModelFactory(name="e2e-model", default_dataset=dataset_import_builtin(name="sp500"))
    grant(model.owner, model, Role.MAINTAINER)
    user = UserFactory(role=Role.TRAINER)
    grant(user, model, Role.TRAINER)
    events = asyncio.run(follow(port, str(AccessToken.for_user(user)), model.name))
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), f"{mode}: {seqs}\n{log.read_text()[-3000:]}"
    statuses = [e["status"] for e in events]
    assert statuses[0] == "queued" and "running" in statuses
    last = events[-1]
    assert (last["status"], last["version"], last["progress"]) == ("succeeded", "v1.0.0", 100)
    progress = [e for e in events if e["type"] == "job.progress"]
    assert progress, "no progress events while training"
    assert all(a["progress"] <= b["progress"] for a, b in pairwise(progress))
    # At most 4 events a second per job: the worker's own emission times are at least 0.25 s apart.
    stamps = [datetime.fromisoformat(e["timestamp"]) for e in progress]
    assert all((b - a).total_seconds() >= 0.25 for a, b in pairwise(stamps))
