"""(c) PostgreSQL stops and starts again while a job trains.

Never the shared server: the test runs its own PostgreSQL (initdb + pg_ctl on a free port, in a
temporary directory it removes), migrates it, seeds a model, runs a qcluster on it and stops the
server (`pg_ctl stop -m fast`) mid-training for a few seconds. The job must end succeeded (resumed
if need be) or failed with a reason — never stay running past the reaper — and the rows must stay
consistent: versions unique per model, at most one live job per model, each job's seqs 1..max.
It does not use pytest-django's test database.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.live import ROOT, LiveProcesses, free_port

pytestmark = pytest.mark.slow
psycopg = pytest.importorskip("psycopg")
DATABASE = "faults"
HEARTBEAT_TIMEOUT_S = 10
EPOCHS = 10

SEED = """
from models_mgmt.api.serializers import FineTuningConfigSerializer
from models_mgmt.choices import Role
from models_mgmt.services import dataset_import_builtin, training_job_start
from tests.factories import AIModelFactory, UserFactory, grant
model = AIModelFactory(name="pg-restart", default_dataset=dataset_import_builtin(name="sp500"))
grant(model.owner, model, Role.MAINTAINER)
trainer = UserFactory(role=Role.TRAINER)
grant(trainer, model, Role.TRAINER)
data = FineTuningConfigSerializer(data={body!r}, context={{"model": model}})
data.is_valid(raise_exception=True)
v = data.validated_data
r = v["resolved"]
job = training_job_start(actor=trainer, model=model, config=r.config, dataset=r.dataset, base_version=None)
print("JOB", job.pk)
"""
REAP = "from models_mgmt.training.reaper import training_jobs_reap; print('REAPED', training_jobs_reap())"


class PrivatePostgres:
    """A throwaway PostgreSQL server owned by the `postgres` user when the tests run as root."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = free_port()
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def command(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.as_user, str(self.bindir / tool), *args], capture_output=True, text=True, timeout=120, check=check
        )

    def init(self) -> None:
        self.command("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        self.command("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", DATABASE)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        self.command("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self.command("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.command("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def query(self, sql: str, *args: object) -> list[tuple] | None:
        """Rows, or None while the server does not answer."""
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                return conn.execute(sql, args).fetchall()
        except psycopg.OperationalError:
            return None


@pytest.fixture
def private_postgres():
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bindirs or not all(Path(bindirs[-1], tool).exists() for tool in ("initdb", "pg_ctl", "createdb")):
        pytest.skip("initdb/pg_ctl not found under /usr/lib/postgresql/*/bin/: cannot run a private PostgreSQL")
    server = PrivatePostgres(Path(bindirs[-1]))
    try:
        server.init()
        yield server
    finally:
        server.remove()


@pytest.fixture
def stack(private_postgres, tmp_path):
    processes = LiveProcesses(
        tmp_path / "artifacts",
        tmp_path / "stack.log",
        DATABASE_URL=private_postgres.url,
        TRAINING_WORKERS="1",
        TRAINING_HEARTBEAT_TIMEOUT_S=str(HEARTBEAT_TIMEOUT_S),
    )

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=processes.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    try:
        manage("migrate", "--no-input")
        manage("createcachetable")
        yield processes, manage
    finally:
        processes.stop()


def test_a_job_survives_a_postgres_restart(private_postgres, stack):
    pg = private_postgres
    processes, manage = stack
    cluster = processes.qcluster()
    body = {"epochs": EPOCHS, "batchSize": 8, "earlyStoppingPatience": 0, "startDate": "2013-01-01"}
    out = manage("shell", "-c", SEED.format(body=body))
    job_id = int(out.split("JOB", 1)[1].split()[0])

    def job() -> tuple | None:
        rows = pg.query(
            "select status, epoch, attempts, error_code, error, worker from models_mgmt_trainingjob where id = %s",
            job_id,
        )
        return rows[0] if rows else None

    deadline = time.monotonic() + 180
    while not ((state := job()) and state[0] == "running" and state[1] >= 1):
        assert time.monotonic() < deadline, f"the job never ran an epoch: {state}\n{processes.output()[-3000:]}"
        time.sleep(0.2)

    pg.stop("fast")
    time.sleep(5)
    pg.start()

    # The job must end on its own or through the reaper (which we also run every few seconds).
    deadline = time.monotonic() + 150
    reaped: list[str] = []
    next_reap = time.monotonic() + HEARTBEAT_TIMEOUT_S
    while (state := job()) is None or state[0] not in ("succeeded", "failed", "stopped"):
        assert time.monotonic() < deadline, (
            f"the job is still {state} after the restart; cluster exit code {cluster.poll()}; reaper: {reaped}\n"
            f"{processes.output()[-4000:]}"
        )
        if time.monotonic() > next_reap:
            reaped.append(manage("shell", "-c", REAP).strip())
            next_reap = time.monotonic() + HEARTBEAT_TIMEOUT_S
        time.sleep(0.5)
    status, _, attempts, error_code, error, _ = state
    if status == "succeeded":
        assert 1 <= attempts <= 3
        epochs = pg.query("select epoch from models_mgmt_trainingepoch where job_id = %s order by epoch", job_id)
        assert [e for (e,) in epochs] == list(range(1, EPOCHS + 1))
        versions = pg.query("select version from models_mgmt_modelversion")
        assert versions == [("v1.0.0",)]
    else:
        assert status == "failed" and error_code and error, (state, processes.output()[-3000:])

    # No corrupted rows.
    assert pg.query("select model_id, version from models_mgmt_modelversion group by 1, 2 having count(*) > 1") == []
    assert (
        pg.query(
            "select model_id from models_mgmt_trainingjob where status in ('queued', 'running', 'stopping')"
            " group by 1 having count(*) > 1"
        )
        == []
    )
    streams = pg.query(
        "select job_id, model_id, count(*), count(distinct seq), min(seq), max(seq) from models_mgmt_progressevent"
        " group by job_id, model_id"
    )
    assert streams, "no events at all"
    for job_of, model_of, n, distinct, low, high in streams:
        assert n == distinct == high and low == 1, (
            f"events of job {job_of} / model {model_of}: {n} {distinct} {low}..{high}"
        )
    statuses = pg.query(
        "select payload->>'status' from models_mgmt_progressevent where job_id = %s and type = 'job.status'"
        " order by seq",
        job_id,
    )
    statuses = [s for (s,) in statuses]
    assert statuses[-1] == status and statuses.count("running") == attempts, statuses
