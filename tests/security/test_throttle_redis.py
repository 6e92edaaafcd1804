"""Throttles with `REDIS_URL`: one sliding window per client in Redis, exact across processes.

Several web processes (or hosts) share Redis; each throttle decision is one Lua script there, so
the rate holds for the sum of their requests, not per process. Without Redis each process keeps its
own window (the embedded default runs one web process); the last test pins that down as documented.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from rest_framework.throttling import ScopedRateThrottle

from models_mgmt.api.throttling import KEY_PREFIX
from models_mgmt.choices import Role
from tests.conftest import bearer
from tests.factories import AIModelFactory, UserFactory, grant
from tests.security.test_throttle_concurrency import THREADS, assert_throttled, get_model, hammer

REDIS_URL = "redis://127.0.0.1:6379/11"  # no other test uses this database
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_db():
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # CI starts Redis (.ci/run): its absence is a failure
        pytest.fail(f"Redis at 127.0.0.1:6379 is needed for the Redis throttle tests: {exc}")
    client.flushdb()
    yield client
    client.flushdb()


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_share_one_window_in_redis(redis_db, settings, monkeypatch):
    settings.REDIS_URL = REDIS_URL
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "user", "3/min")
    owner = UserFactory(role=Role.MAINTAINER)
    model = AIModelFactory(name="busy", owner=owner)
    grant(owner, model, Role.MAINTAINER)

    responses = hammer([get_model(bearer(owner)) for _ in range(THREADS)])

    assert sorted(r.status_code for r in responses) == [200] * 3 + [429] * (THREADS - 3)
    for response in responses:
        if response.status_code == 429:
            assert_throttled(response)  # Retry-After from the oldest request in the Redis window
    assert redis_db.zcard(f"{KEY_PREFIX}throttle_user_{owner.pk}") == 3
    assert 0 < redis_db.ttl(f"{KEY_PREFIX}throttle_user_{owner.pk}") <= 61  # a client that stops leaves nothing
    assert bearer(UserFactory(role=Role.VIEWER)).get("/api/model-management/models").status_code == 200  # per user


# A process standing in for one web process: Django set up on its own, N threads asking the user
# throttle for one client at a moment all processes agreed on; prints how many it let through.
PROCESS = """
import json, os, sys, threading, time
from types import SimpleNamespace
import django
django.setup()
from rest_framework.throttling import SimpleRateThrottle
from models_mgmt.api.throttling import UserRateThrottle
SimpleRateThrottle.THROTTLE_RATES["user"] = sys.argv[2]
start_at, attempts = float(sys.argv[1]), int(sys.argv[3])
request = SimpleNamespace(user=SimpleNamespace(is_authenticated=True, pk=4242), META={"REMOTE_ADDR": "10.0.0.1"})
allowed = []
def ask():
    time.sleep(max(0.0, start_at - time.time()))
    for _ in range(attempts):
        allowed.append(UserRateThrottle().allow_request(request, None))
threads = [threading.Thread(target=ask) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(sum(allowed)))
"""


def allowed_by_processes(redis_url: str, processes: int = 3, rate: int = 25, attempts: int = 10) -> list[int]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "REDIS_URL": redis_url}
    start_at = time.time() + 8  # every process set up by then, even on a loaded machine
    running = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS, str(start_at), f"{rate}/min", str(attempts)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    counts = []
    for proc in running:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        counts.append(json.loads(out.strip().splitlines()[-1]))
    return counts


def test_the_rate_holds_exactly_across_processes_with_redis(redis_db):
    counts = allowed_by_processes(REDIS_URL)  # 3 processes x 4 threads x 10 attempts = 120 for a rate of 25

    assert sum(counts) == 25, counts
    assert redis_db.zcard(f"{KEY_PREFIX}throttle_user_4242") == 25


def test_without_redis_each_process_keeps_its_own_window():
    counts = allowed_by_processes("")  # the embedded default: local-memory cache, per-process locks

    assert counts == [25, 25, 25]  # exact within each process, the rate on its own in each (documented)
