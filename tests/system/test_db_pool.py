"""PostgreSQL connections stay bounded by the web process's pool under any number of clients (issue 13).

A real web server with DB_POOL_MAX_SIZE=4 gets 32 concurrent API requests, each reading the
database from its own request thread (ASGI runs every sync request in a thread of its own): every
request succeeds (those that find the pool busy wait for a connection) and PostgreSQL never sees
more than 4 connections from the server.
"""

from __future__ import annotations

import http.client
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from django.db import connection
from rest_framework_simplejwt.tokens import AccessToken

from models_mgmt.choices import Role
from tests.factories import AIModelFactory, UserFactory, grant
from tests.live import LiveProcesses

pytestmark = pytest.mark.slow
MAX_SIZE = 4
REQUESTS = 32


class ConnectionWatch:
    """Samples the server's connections to the test database (all but this process's) every 10 ms."""

    def __init__(self, database: str, ours: set[int]) -> None:
        s = connection.settings_dict
        self.dsn = f"host={s['HOST'] or '127.0.0.1'} port={s['PORT'] or 5432} user={s['USER']} dbname=postgres"
        self.database, self.ours = database, list(ours)
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.wait(0.01):
                (count,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND NOT pid = ANY(%s)",
                    (self.database, self.ours),
                ).fetchone()
                self.peak = max(self.peak, count)


def test_connections_stay_within_the_pool_under_32_concurrent_requests(
    requires_postgres, transactional_db, tmp_path, settings
):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    viewer = UserFactory(role=Role.VIEWER)
    models = [AIModelFactory(name=f"pool-{i}") for i in range(4)]
    for model in models:
        grant(viewer, model, Role.VIEWER)
    token = str(AccessToken.for_user(viewer))
    database = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:  # this test process's own backends are not the server's
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [database])
        ours = {row[0] for row in cursor.fetchall()}
    live = LiveProcesses(
        tmp_path / "artifacts",
        tmp_path / "web.log",
        DB_POOL="true",
        DB_POOL_MIN_SIZE="1",
        DB_POOL_MAX_SIZE=str(MAX_SIZE),
        DB_POOL_TIMEOUT="30",
        THROTTLE_USER="100000/min",
    )
    watch = ConnectionWatch(database, ours)
    try:
        port = live.web()
        watch.thread.start()
        barrier = threading.Barrier(REQUESTS)

        def read(i: int) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                barrier.wait()
                conn.request(
                    "GET",
                    f"/api/model-management/models/{models[i % len(models)].name}",
                    headers={"Authorization": f"Bearer {token}"},
                )
                return conn.getresponse().status
            finally:
                conn.close()

        with ThreadPoolExecutor(REQUESTS) as pool:
            statuses = list(pool.map(read, range(REQUESTS)))
    finally:
        watch.stop.set()
        if watch.thread.is_alive():
            watch.thread.join(timeout=5)
        live.stop()
    print(f"{REQUESTS} concurrent requests: peak {watch.peak} server connections (pool max_size {MAX_SIZE})")
    assert statuses == [200] * REQUESTS, (statuses, live.output()[-3000:])
    assert 1 <= watch.peak <= MAX_SIZE, watch.peak
