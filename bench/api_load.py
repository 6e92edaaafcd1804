"""API load benchmark on PostgreSQL: read and write endpoints under concurrency, against the stack's floor and MLflow.

Run from the repository root (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth)::

    .venv/bin/python bench/api_load.py [--models 1000 --versions 20 --clients 1,16,64 --procs 2]
    .venv/bin/python bench/api_load.py --skip-mlflow
    .venv/bin/python bench/api_load.py --server uvicorn --procs 4
    .venv/bin/python bench/api_load.py --server-cmd '{bin}/gunicorn -k uvicorn.workers.UvicornWorker -w {procs} \
        -b 127.0.0.1:{port} techanal.asgi:application'

Creates a throwaway database (dropped at the end), generates a registry with bulk_create (models x
versions with realistic metrics, one active version per model, three terminal jobs per model,
object permissions granted to a group the benchmark user is in), starts the server (`--server`:
daphne, the default, uvicorn, granian, or any `--server-cmd` template with {port}; a template with
{procs} is started once and runs its own worker processes, one without it is started `--procs`
times on ports of its own, clients spread over them round-robin) and drives it with N client
threads, each with one keep-alive http.client connection and a JWT bearer token. Every table
starts with the stack's floor, `GET /api/ping/` (authenticated, reads nothing beyond the JWT
user), measured on the same server, processes and clients; every read and write is reported
beside it as p95 / floor p95 and floor req/s / its req/s. Prints p50/p95/p99 latency and
throughput per endpoint and client count, the load average at the start and end of each table
and the peak PostgreSQL connections.

Then, unless --skip-mlflow, the same registry is put into an MLflow tracking server (its own
throwaway PostgreSQL database; `--workers` = --procs): the first model through MLflow's REST API
(timed), the rest by copying those rows in SQL inside MLflow's own tables; the equivalent operations
are timed through MLflow's REST API at --mlflow-clients and printed beside TechAnal's: throughput
TechAnal req/s / MLflow req/s (target >= 3) and the p50/p95 ratios. Last, a Markdown summary
(per operation and client count, with the targets) to paste into bench/README.md. A benchmark,
not a test: PASS/MISS is informational and it exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import random
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.figures import percentile  # noqa: E402 - after the path set-up above

PG = "postgresql://postgres@127.0.0.1:5432"
API = "/api/model-management"
TARGET_P95_MS = 50.0
TARGET_CLIENTS = 16
PAGE = 50  # TechAnal's default page size; MLflow's list is asked for the same
TARGET_FLOOR_RATIO = 2.0  # read p95 <= 2x the floor's p95 at TARGET_CLIENTS
TARGET_MLFLOW_RATIO = 3.0  # TechAnal req/s >= 3x MLflow's for every paired operation
TARGET_REGISTRY = (1000, 20)  # the size the targets are stated for
FLOOR = "GET ping (floor)"
FLOOR_PATH = "/api/ping/"
# Server command templates: {port}, {procs}, {bin} (the checkout's .venv/bin), {python}, {root}.
# With {procs} the command is started once and runs its own worker processes on one port; without
# it, it is started --procs times, each on its own port, and the clients spread over them.
SERVERS = {
    "daphne": "{bin}/daphne -b 127.0.0.1 -p {port} techanal.asgi:application",
    "uvicorn": (
        "{bin}/uvicorn --host 127.0.0.1 --port {port} --workers {procs} --lifespan off --no-access-log "
        "--log-level warning techanal.asgi:application"
    ),
    "granian": (
        "{bin}/granian --interface asgi --host 127.0.0.1 --port {port} --workers {procs} --log-level warning "
        "techanal.asgi:application"
    ),
}
# MLflow lives in its own git-ignored venv (bench/README.md): this checkout's var/, then the main
# checkout's var/ when this is a git worktree, then .venv.
MLFLOW_VENV = "var/mlflow-venv/bin/mlflow"

# One request: (label, method, path, body or None, accepted statuses)
Request = tuple[str, str, str, bytes | None, tuple[int, ...]]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(sql)


class ConnectionWatch:
    """Samples, every 0.25 s, how many PostgreSQL connections the benchmark's databases hold."""

    def __init__(self) -> None:
        self.databases: list[str] = []
        self.peak = 0
        self.run_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psycopg

        with contextlib.suppress(Exception), psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            while not self._stop.wait(0.25):
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY(%s)", (self.databases,)
                ).fetchone()
                self.peak = max(self.peak, row[0])
                self.run_peak = max(self.run_peak, row[0])

    def take_peak(self) -> int:
        """The peak since the last call (and starts the next stretch)."""
        peak, self.peak = self.peak, 0
        return peak

    def stop(self) -> None:
        self._stop.set()


WATCH: ConnectionWatch | None = None


def wait_http(port: int, path: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return
        time.sleep(0.3)
    raise SystemExit(f"no answer on 127.0.0.1:{port}{path} after {seconds:.0f} s")


def mlflow_candidates(explicit: str | None) -> list[Path]:
    """Where the MLflow CLI is looked for, in order (bench/README.md)."""
    candidates = [Path(explicit)] if explicit else []
    candidates.append(ROOT / MLFLOW_VENV)
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        common = subprocess.run(  # noqa: S603 (fixed arguments)
            ["git", "-C", str(ROOT), "rev-parse", "--path-format=absolute", "--git-common-dir"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        candidates.append(Path(common).parent / MLFLOW_VENV)  # the main checkout of this worktree
    candidates.append(ROOT / ".venv/bin/mlflow")
    return candidates


def server_argv(template: str, port: int, procs: int) -> list[str]:
    values = {"port": port, "procs": procs, "bin": ROOT / ".venv/bin", "python": sys.executable, "root": ROOT}
    return shlex.split(template.format(**values))


def start_servers(
    template: str, procs: int, env: dict[str, str], work: Path
) -> tuple[list[subprocess.Popen], list[int]]:
    """Starts the server (once with {procs}, else `procs` times), waits for /api/health/ on each port."""
    instances = 1 if "{procs}" in template else procs
    processes, ports, logs = [], [], []
    for _ in range(instances):
        port = free_port()
        argv = server_argv(template, port, procs)
        if shutil.which(argv[0]) is None:
            raise SystemExit(f"{argv[0]}: not found (install it, or pass --server-cmd; see bench/README.md)")
        log = work / f"server-{port}.log"
        with log.open("wb") as out:
            processes.append(
                subprocess.Popen(  # noqa: S603 (the command this benchmark was told to measure)
                    argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        ports.append(port)
        logs.append(log)
    for port, log, process in zip(ports, logs, processes, strict=True):
        try:
            wait_http(port, "/api/health/")
        except SystemExit:
            print(f"server on port {port} (exit code {process.poll()}), the end of its log:")
            print(log.read_text(errors="replace")[-3000:])
            stop(processes)
            raise
    return processes, ports


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        # what the leader left behind in its group (MLflow's job consumers outlive a SIGTERM)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def group_cpu_ticks(pgids: set[int]) -> int:
    """CPU time (clock ticks) of every live process in these process groups."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # state ppid pgrp ... utime(11) stime(12)
            if int(fields[2]) in pgids:
                total += int(fields[11]) + int(fields[12])
    return total


def settle(processes: list[subprocess.Popen], quiet: float = 0.1, most_s: float = 60) -> str:
    """Waits until the servers' processes use < `quiet` of a core over one second (workers still
    importing, helper processes starting after the first answer), at most `most_s`."""
    pgids = {p.pid for p in processes}
    hz = os.sysconf("SC_CLK_TCK")
    began = time.monotonic()
    used = 0.0
    while time.monotonic() - began < most_s:
        before = group_cpu_ticks(pgids)
        time.sleep(1)
        used = (group_cpu_ticks(pgids) - before) / hz
        if used < quiet:
            return f"servers quiet ({used:.0%} of a core) after {time.monotonic() - began:.0f} s"
    return f"servers still busy after {most_s:.0f} s ({used:.0%} of a core in the last second)"


# --- TechAnal: database, registry -----------------------------------------------------------------


def environment(work: Path, database: str, conn_max_age: int) -> dict[str, str]:
    values = {
        "DJANGO_SETTINGS_MODULE": "techanal.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ENV_FILE": "/nonexistent",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "ARTIFACTS_DIR": str(work / "artifacts"),
        "LOG_LEVEL": "WARNING",
        "MODEL_TRAINING_ENABLED": "true",  # no worker runs: started jobs stay queued
        "THROTTLE_USER": "1000000/min",  # measure serving, not the throttles
        "THROTTLE_TRAINING": "1000000/min",  # fine-tune has its own scope (30/hour by default)
        "JWT_ACCESS_MINUTES": "120",
        "CODE_REVISION": "bench",
    }
    os.environ.update(values)
    os.environ.pop("REDIS_URL", None)
    # The web processes only: under ASGI each request runs in its own thread (asgiref's
    # ThreadSensitiveContext), so persistent connections (the settings' default 60 s) pile up, one
    # per request thread, until PostgreSQL refuses clients. Django's advice under ASGI: 0, or a pool.
    return {**os.environ, **values, "CONN_MAX_AGE": str(conn_max_age)}


def version_row(rng: random.Random, i: int, n_versions: int) -> dict[str, Any]:
    """Realistic stored metrics of one trained version (what training_job_execute records)."""
    pattern, signal_acc, risk = (round(rng.uniform(0.48, 0.68), 4) for _ in range(3))
    overall = round((pattern + signal_acc + risk) / 3, 4)
    year = 2008 + i % 10
    return {
        "accuracy": overall,
        "response_time_ms": round(rng.uniform(0.3, 2.5), 3),
        "training_data_size": rng.randint(2000, 4000),
        "performance_metrics": {
            "patternRecognition": pattern,
            "signalAccuracy": signal_acc,
            "riskAssessment": risk,
            "overallScore": overall,
        },
        "baselines": {
            task: {"majority": round(rng.uniform(0.5, 0.55), 4), "persistence": round(rng.uniform(0.45, 0.55), 4)}
            for task in ("signal", "risk", "pattern")
        },
        "backtest": {
            "sharpe": round(rng.gauss(0.6, 0.4), 3),
            "cumulativeReturn": round(rng.gauss(0.12, 0.1), 4),
            "maxDrawdown": round(-abs(rng.gauss(0.15, 0.05)), 4),
            "trades": rng.randint(20, 200),
            "hitRate": round(rng.uniform(0.45, 0.6), 4),
            "buyAndHold": 0.31,
        },
        "metadata": {
            "loss": round(rng.uniform(0.55, 0.69), 4),
            "epochs": rng.randint(10, 100),
            "trainSamples": rng.randint(2000, 4000),
            "trainWindow": [f"{year - 8}-01-02", f"{year}-12-31"],
            "validationWindow": [f"{year + 1}-01-02", f"{year + 1}-12-31"],
            "hyperparameters": {"hiddenSizes": [64, 32], "dropout": 0.1, "horizon": 5, "breakoutWindow": 20},
            "featureCount": 17,
            "codeRevision": "bench",
        },
        "trained_at": datetime(2026, 1 + i * 11 // n_versions, 1 + i % 28, 12, 0).astimezone(),
    }


def generate(n_models: int, n_versions: int) -> dict[str, Any]:
    """The registry, with bulk_create. Returns the users, tokens and names the load needs."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType
    from guardian.models import GroupObjectPermission
    from rest_framework_simplejwt.tokens import RefreshToken

    from models_mgmt.choices import ROLE_OBJECT_PERMS, JobStatus, Role, VersionStatus
    from models_mgmt.models import AIModel, ModelVersion, TrainingJob
    from models_mgmt.services import dataset_import_builtin
    from models_mgmt.services.roles import roles_ensure

    rng = random.Random(20261126)  # noqa: S311
    users = get_user_model().objects
    owner = users.create_user("bench-owner", password=secrets.token_urlsafe(12))
    user = users.create_user("bench", password=secrets.token_urlsafe(12))
    team = Group.objects.create(name="bench-team")
    user.groups.add(roles_ensure()[Role.MAINTAINER], team)
    root = users.create_superuser("bench-root", password=secrets.token_urlsafe(12))
    dataset = dataset_import_builtin(name="sp500")

    models = AIModel.objects.bulk_create(
        AIModel(
            name=f"bench-{i:04d}",
            family="multitask-mlp",
            base_model="",
            description=f"generated model {i} for the API load benchmark",
            default_dataset=dataset,
            owner=owner,
        )
        for i in range(n_models)
    )
    previous: list[ModelVersion | None] = [None] * n_models
    last_ready: list[ModelVersion] = []
    for v in range(n_versions):  # one bulk_create per version index: parents get their pk first
        status = VersionStatus.ACTIVE if v == n_versions - 1 else VersionStatus.READY
        if v == n_versions - 2:
            status = VersionStatus.DEPRECATED
        batch = ModelVersion.objects.bulk_create(
            ModelVersion(
                model=model,
                version=f"v1.{v}.0",
                status=status,
                parent=previous[m],
                dataset=dataset,
                activated_at=version_data["trained_at"] if status != VersionStatus.READY else None,
                **version_data,
            )
            for m, model in enumerate(models)
            for version_data in [version_row(rng, v, n_versions)]
        )
        previous = list(batch)
        if v == n_versions - 1:
            last_ready = list(batch)
    jobs = []
    for m, model in enumerate(models):
        config = {"epochs": 20, "learningRate": 0.001, "batchSize": 64, "validationSplit": 0.2, "dataset": "sp500"}
        for status, extra in (
            (JobStatus.SUCCEEDED, {"version": last_ready[m], "progress": 100.0, "epoch": 20}),
            (JobStatus.FAILED, {"error_code": "training_error", "error": "loss became NaN at epoch 3", "epoch": 3}),
            (JobStatus.STOPPED, {"epoch": 7, "progress": 35.0}),
        ):
            jobs.append(
                TrainingJob(
                    model=model,
                    created_by=user,
                    dataset=dataset,
                    config=config,
                    status=status,
                    total_epochs=20,
                    attempts=1,
                    **extra,
                )
            )
    TrainingJob.objects.bulk_create(jobs, batch_size=2000)

    content_type = ContentType.objects.get_for_model(AIModel)
    perms = Permission.objects.filter(content_type=content_type, codename__in=ROLE_OBJECT_PERMS[Role.MAINTAINER])
    GroupObjectPermission.objects.bulk_create(
        (
            GroupObjectPermission(permission=p, content_type=content_type, object_pk=str(model.pk), group=team)
            for model in models
            for p in perms
        ),
        batch_size=5000,
    )
    user = users.get(pk=user.pk)  # fresh permission cache
    return {
        "user": user,
        "root": root,
        "token": str(RefreshToken.for_user(user).access_token),
        "names": [m.name for m in models],
        "last": f"v1.{n_versions - 1}.0",
        "before": f"v1.{n_versions - 2}.0",
        "perm_rows": GroupObjectPermission.objects.count(),
    }


def permission_filtering(registry: dict[str, Any], repeats: int = 15) -> list[str]:
    """How guardian's object-permission filter performs on the generated registry (in-process)."""
    from django.db import connection, reset_queries

    from models_mgmt import selectors

    def median_ms(fn: Callable[[], Any]) -> float:
        fn()
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            fn()
            times.append((time.perf_counter() - began) * 1000)
        return statistics.median(times)

    lines = []
    for who, user in (("bench (group object perms)", registry["user"]), ("superuser (no filter)", registry["root"])):
        page = median_ms(lambda user=user: list(selectors.ai_model_list(user)[:PAGE]))
        count = median_ms(lambda user=user: selectors.ai_models_visible(user).count())
        lines.append(f"  {who:<28} first page of {PAGE} (with prefetches): {page:6.2f} ms   count(*): {count:6.2f} ms")
    reset_queries()
    sql, params = selectors.ai_models_visible(registry["user"]).values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM ({sql}) q", params)  # noqa: S608
        plan = cursor.fetchone()[0][0]
    lines.append(
        f"  EXPLAIN ANALYZE of the visible-models count: {plan['Execution Time']:.2f} ms execution, "
        f"{plan['Planning Time']:.2f} ms planning"
    )
    return lines


# --- load driver ----------------------------------------------------------------------------------


def run_load(
    ports: list[int],
    headers: dict[str, str],
    clients: int,
    per_client: int,
    max_s: float,
    plan: Callable[[int, int], list[Request]],
) -> dict[str, dict[str, Any]]:
    """`clients` threads, one keep-alive connection each (ports round-robin); `plan(client, k)`
    gives the k-th step's requests. Returns per label: latencies (ms), errors, throughput."""
    samples: dict[str, list[float]] = {}
    errors: dict[str, list[str]] = {}
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    deadline: list[float] = [0.0]

    def client(ci: int) -> None:
        port = ports[ci % len(ports)]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: dict[str, list[float]] = {}
        bad: dict[str, list[str]] = {}
        start_gate.wait()
        for k in range(per_client):
            if time.monotonic() > deadline[0]:
                break
            for label, method, path, body, accepted in plan(ci, k):
                began = time.perf_counter()
                try:
                    conn.request(method, path, body=body, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                    status = response.status
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    status, payload = 0, repr(exc).encode()
                mine.setdefault(label, []).append((time.perf_counter() - began) * 1000)
                if status not in accepted:
                    bad.setdefault(label, []).append(f"{status}: {payload[:160]!r}")
        conn.close()
        with lock:
            for label, values in mine.items():
                samples.setdefault(label, []).extend(values)
            for label, values in bad.items():
                errors.setdefault(label, []).extend(values)

    threads = [threading.Thread(target=client, args=(ci,)) for ci in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.monotonic() + max_s
    start_gate.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    # A cell that interleaves several operations (fine-tune then stop) splits its elapsed time
    # among them by their share of the summed latencies: each req/s is that operation's own rate.
    busy = sum(sum(values) for values in samples.values()) or 1.0
    return {
        label: {
            "clients": clients,
            "n": len(values),
            "errors": errors.get(label, []),
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "p99": percentile(values, 99),
            "rps": len(values) / (elapsed * sum(values) / busy) if values else 0.0,
        }
        for label, values in samples.items()
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def read_targets(r: dict[str, Any], floor: dict[str, Any]) -> str:
    """The read targets at TARGET_CLIENTS: p95 <= 50 ms and <= 2x the floor's p95, no errors."""
    if r["clients"] != TARGET_CLIENTS:
        return ""
    clean = not r["errors"]
    return (
        f"p95 ≤ {TARGET_P95_MS:.0f} ms: {verdict(clean and r['p95'] <= TARGET_P95_MS)}; "
        f"≤ {TARGET_FLOOR_RATIO:.0f}× floor: {verdict(clean and r['p95'] <= TARGET_FLOOR_RATIO * floor['p95'])}"
    )


class Table:
    """One printed table: load average at its start and end, peak PostgreSQL connections in it."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.load_start = loadavg()
        if WATCH:
            WATCH.take_peak()
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def add(self, out: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        self.rows.extend(out.items())
        return out

    def print(self, floor: dict[str, Any] | None = None, reads: bool = False) -> None:
        peak = WATCH.take_peak() if WATCH else 0
        print(
            f"\n{self.title}  (load average at the start {self.load_start}, at the end {loadavg()}; "
            f"peak PostgreSQL connections: {peak})"
        )
        head = "| operation | clients | requests | errors | p50 ms | p95 ms | p99 ms | req/s |"
        columns = 8
        if floor:
            head += " p95 ÷ floor p95 | floor req/s ÷ req/s |"
            columns += 2
        if reads:
            head += f" targets @{TARGET_CLIENTS} |"
            columns += 1
        print(head)
        print("|" + "---|" * columns)
        for label, r in self.rows:
            line = (
                f"| {label} | {r['clients']} | {r['n']} | {len(r['errors'])} | {r['p50']:.1f} | {r['p95']:.1f} | "
                f"{r['p99']:.1f} | {r['rps']:.0f} |"
            )
            if floor:
                line += f" {r['p95'] / floor['p95']:.2f} | {floor['rps'] / r['rps']:.2f} |"
            if reads:
                line += f" {read_targets(r, floor) if floor and label != FLOOR else ''} |"
            print(line)
            for error in r["errors"][:2]:
                print(f"    error ({label}): {error}")
        sys.stdout.flush()


# --- MLflow ---------------------------------------------------------------------------------------


def mlflow_call(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(
        method, path, body=json.dumps(body) if body is not None else None, headers={"Content-Type": "application/json"}
    )
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    if response.status != 200:
        raise SystemExit(f"MLflow {method} {path}: {response.status} {payload[:300]!r}")
    return json.loads(payload or b"{}")


def mlflow_tags(rng: random.Random, v: int, n_versions: int) -> list[dict[str, str]]:
    """The same stored metrics as TechAnal's versions, as model-version tags (MLflow's place for them)."""
    row = version_row(rng, v, n_versions)
    flat = {
        "accuracy": row["accuracy"],
        "response_time_ms": row["response_time_ms"],
        **{f"metric.{k}": x for k, x in row["performance_metrics"].items()},
        **{f"backtest.{k}": x for k, x in row["backtest"].items()},
        "validation_loss": row["metadata"]["loss"],
        "train_window": ",".join(row["metadata"]["trainWindow"]),
        "dataset": "sp500",
    }
    return [{"key": k, "value": str(x)} for k, x in flat.items()]


def mlflow_load(port: int, database: str, names: list[str], n_versions: int) -> list[str]:
    """The first model through the REST API (timed); the others by copying its rows in SQL."""
    import psycopg

    rng = random.Random(20261126)  # noqa: S311
    first = names[0]
    began = time.perf_counter()
    mlflow_call(
        port,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        {"name": first, "description": "generated model 0 for the API load benchmark"},
    )
    for v in range(n_versions):
        mlflow_call(
            port,
            "POST",
            "/api/2.0/mlflow/model-versions/create",
            {
                "name": first,
                "source": f"s3://bench-artifacts/{first}/v1.{v}.0",
                "tags": mlflow_tags(rng, v, n_versions),
            },
        )
    mlflow_call(
        port,
        "POST",
        "/api/2.0/mlflow/registered-models/alias",
        {"name": first, "alias": "champion", "version": str(n_versions)},
    )
    rest_s = time.perf_counter() - began
    began = time.perf_counter()
    copied = []
    with psycopg.connect(f"{PG}/{database}", autocommit=False) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.columns WHERE table_schema='public' AND column_name='name' "
                "AND table_name IN ('registered_models','registered_model_tags','model_versions',"
                "'model_version_tags','registered_model_aliases')"
            )
        ]
        order = [
            "registered_models",
            "registered_model_tags",
            "model_versions",
            "model_version_tags",
            "registered_model_aliases",
        ]
        for table in [t for t in order if t in tables]:
            columns = [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema='public' "
                    "AND table_name=%s ORDER BY ordinal_position",
                    (table,),
                )
            ]
            select = ", ".join("'bench-' || lpad(g::text, 4, '0')" if c == "name" else f"t.{c}" for c in columns)
            cursor = conn.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select} "  # noqa: S608 (fixed table names)
                f"FROM {table} t, generate_series(1, %s) g WHERE t.name = %s",
                (len(names) - 1, first),
            )
            copied.append(f"{table} +{cursor.rowcount}")
        conn.commit()
    sql_s = time.perf_counter() - began
    per_version = rest_s / (n_versions + 2) * 1000
    return [
        f"MLflow load: model {first} through the REST API: {rest_s:.2f} s for 1 model + {n_versions} versions "
        f"(with {len(mlflow_tags(rng, 0, 1))} tags each) + alias = {per_version:.1f} ms per call, i.e. "
        f"~{per_version * len(names) * (n_versions + 2) / 1000 / 60:.1f} min for the whole registry one call at a "
        f"time; the other {len(names) - 1} models copied from its rows in SQL in {sql_s:.1f} s ({', '.join(copied)})"
    ]


# --- main -----------------------------------------------------------------------------------------


# MLflow operation -> the TechAnal operation it is paired with
PAIRS = {
    "list models": "GET models",
    "list a model's versions": "GET models/:name/versions",
    "the champion / active version": "GET models/:name",
    "register a version": "POST fine-tune",
    "move the alias / activate": "POST versions/:v/activate",
}


def get_plan(label: str, url: Callable[[int, int], str]) -> Callable[[int, int], list[Request]]:
    return lambda ci, k: [(label, "GET", url(ci, k), None, (200,))]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--mlflow-clients", default="1,16")
    parser.add_argument(
        "--server",
        choices=[*SERVERS, "cmd"],
        default="daphne",
        help="the ASGI server (daphne: one process per port; uvicorn, granian: --procs workers on one port; "
        "they must be installed in .venv); cmd: --server-cmd",
    )
    parser.add_argument(
        "--server-cmd",
        help="a server command template with {port} (and {procs}, {bin} = .venv/bin, {python}, {root}); with "
        "{procs} it is started once and runs its own workers, without it --procs times on ports of their own. "
        "Implies --server cmd",
    )
    parser.add_argument(
        "--procs", type=int, default=2, help="server processes (instances or {procs} workers), and MLflow --workers"
    )
    parser.add_argument("--requests", type=int, default=400, help="requests per cell (split among clients)")
    parser.add_argument("--max-seconds", type=float, default=6.0, help="cap per cell")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--mlflow", help="the mlflow CLI (default: var/mlflow-venv/bin/mlflow, see bench/README.md)")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=0,
        help="CONN_MAX_AGE of the server processes (default 0; persistent connections exhaust PostgreSQL "
        "under ASGI: see bench/README.md)",
    )
    args = parser.parse_args()
    if args.server_cmd:
        args.server = "cmd"
    elif args.server == "cmd":
        parser.error("--server cmd needs --server-cmd '<command with {port}>'")
    args.template = args.server_cmd or SERVERS[args.server]
    if "{port}" not in args.template:
        parser.error(f"the server command needs {{port}}: {args.template}")
    program = server_argv(args.template, 0, args.procs)[0]
    if shutil.which(program) is None:  # say so before the minute of set-up, not after
        parser.error(f"{program}: not found (install it, or pass --server-cmd; see bench/README.md)")
    args.clients_list = [int(c) for c in args.clients.split(",")]
    args.mlflow_clients_list = [int(c) for c in args.mlflow_clients.split(",")]
    most = max(args.clients_list + ([] if args.skip_mlflow else args.mlflow_clients_list))
    if args.models < most:
        parser.error(f"--models must be ≥ the most clients, {most} (write clients use one model each)")
    return args


def main() -> None:
    args = parse_args()
    # SIGTERM (timeout, kill) unwinds like Ctrl-C: servers stopped, throwaway databases dropped
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    clients_list = args.clients_list
    print(f"api_load: {date.today()}  {platform.node()}  {os.cpu_count()} CPUs  load average {loadavg()}")
    instances = "once, with its own workers" if "{procs}" in args.template else f"{args.procs} times, a port each"
    print(
        f"registry {args.models} models x {args.versions} versions; server {args.server} "
        f"(`{args.template}`, started {instances}; --procs {args.procs}) with CONN_MAX_AGE={args.conn_max_age}; "
        f"clients {args.clients}; ≤ {args.requests} requests or {args.max_seconds:.0f} s per cell"
    )
    tag = f"{os.getpid()}_{secrets.token_hex(3)}"
    database, ml_database = f"bench_api_{tag}", f"bench_mlflow_{tag}"
    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    processes: list[subprocess.Popen] = []
    created: list[str] = []
    try:
        admin(f'CREATE DATABASE "{database}"')
        created.append(database)
        env = environment(work, database, args.conn_max_age)
        global WATCH
        WATCH = ConnectionWatch()
        WATCH.databases.extend([database, ml_database])
        import django

        django.setup()
        from django.core.management import call_command

        began = time.perf_counter()
        with open(os.devnull, "w") as quiet:
            call_command("migrate", verbosity=0, stdout=quiet)
            call_command("createcachetable", verbosity=0, stdout=quiet)
        migrate_s = time.perf_counter() - began
        began = time.perf_counter()
        registry = generate(args.models, args.versions)
        print(
            f"setup: migrate {migrate_s:.1f} s; registry generated in {time.perf_counter() - began:.1f} s "
            f"({args.models * args.versions} versions, {args.models * 3} jobs, "
            f"{registry['perm_rows']} group object-permission rows)"
        )
        print("permission filtering (in-process, guardian get_objects_for_user, median of 15):")
        for line in permission_filtering(registry):
            print(line)
        from django.db import connections

        connections.close_all()

        began = time.perf_counter()
        started, ports = start_servers(args.template, args.procs, env, work)
        processes.extend(started)
        print(
            f"server up in {time.perf_counter() - began:.1f} s: "
            f"{' '.join(server_argv(args.template, ports[0], args.procs))} (ports {', '.join(map(str, ports))})"
        )
        headers = {"Authorization": f"Bearer {registry['token']}", "Content-Type": "application/json"}
        names = registry["names"]
        pages = max(1, -(-len(names) // PAGE))
        readers = random.Random(7)  # noqa: S311
        reads = {
            FLOOR: lambda ci, k: FLOOR_PATH,
            "GET models": lambda ci, k: f"{API}/models?page={1 + (ci + k) % pages}",
            "GET models/:name": lambda ci, k: f"{API}/models/{readers.choice(names)}",
            "GET models/:name/versions": lambda ci, k: f"{API}/models/{readers.choice(names)}/versions",
            "GET models/:name/metrics": lambda ci, k: f"{API}/models/{readers.choice(names)}/metrics",
            "GET models/:name/comparison": lambda ci, k: f"{API}/models/{readers.choice(names)}/comparison",
        }
        # warm-up: imports, connections, caches in every process
        for label, url in reads.items():
            run_load(ports, headers, args.procs * 2, 5, 30, get_plan(label, url))
        print(f"warmed up; {settle(processes)}")
        WATCH.run_peak = 0
        results: dict[tuple[str, int], dict[str, Any]] = {}  # (operation, clients) -> figures, with its "floor"
        floors: dict[tuple[str, int], dict[str, Any]] = {}  # ("reads" | "writes", clients) -> the floor's figures
        tech_load = [loadavg()]
        for clients in clients_list:
            table = Table(f"TechAnal reads, {clients} client(s)")
            for label, url in reads.items():
                out = table.add(
                    run_load(
                        ports,
                        headers,
                        clients,
                        max(5, args.requests // clients),
                        args.max_seconds,
                        get_plan(label, url),
                    )
                )
                if label == FLOOR:
                    floors[("reads", clients)] = out[label]
                else:
                    results[(label, clients)] = {**out[label], "floor": floors[("reads", clients)]}
            table.print(floor=floors[("reads", clients)], reads=True)

        body = json.dumps({"epochs": 5}).encode()

        def fine_tune(ci: int, k: int) -> list[Request]:
            name = names[ci]
            return [
                ("POST fine-tune", "POST", f"{API}/models/{name}/fine-tune", body, (202,)),
                ("POST fine-tune/stop", "POST", f"{API}/models/{name}/fine-tune/stop", None, (200,)),
            ]

        def activate(ci: int, k: int) -> list[Request]:
            version = registry["before"] if k % 2 == 0 else registry["last"]
            path = f"{API}/models/{names[ci]}/versions/{version}/activate"
            return [("POST versions/:v/activate", "POST", path, None, (200,))]

        for clients in clients_list:
            table = Table(f"TechAnal writes, {clients} client(s) (each client its own model)")
            floor = table.add(
                run_load(
                    ports,
                    headers,
                    clients,
                    max(5, args.requests // clients),
                    args.max_seconds,
                    get_plan(FLOOR, reads[FLOOR]),
                )
            )[FLOOR]
            floors[("writes", clients)] = floor
            for plan in (fine_tune, activate):
                out = run_load(ports, headers, clients, max(4, args.requests // 2 // clients), args.max_seconds, plan)
                for label, r in table.add(out).items():
                    results[(label, clients)] = {**r, "floor": floor}
            table.print(floor=floor)
        tech_load.append(loadavg())
        tech_peak = WATCH.run_peak
        stop(processes)  # one server at a time on the 2 cores
        processes.clear()

        ml_results: dict[tuple[str, int], dict[str, Any]] = {}
        ml_note = "MLflow: skipped (--skip-mlflow)"
        if not args.skip_mlflow:
            mlflow = next((p for p in mlflow_candidates(args.mlflow) if p.exists()), None)
            if mlflow is None:
                ml_note = "MLflow: not installed (see bench/README.md); skipped"
                print(f"\n{ml_note}")
            else:
                created.append(ml_database)
                ml_results, ml_note = mlflow_phase(args, mlflow, ml_database, work, names, processes)
                compare(ml_results, results)
        summary(args, results, floors, ml_results, tech_load, tech_peak, ml_note)
    finally:
        if WATCH:
            WATCH.stop()
        stop(processes)
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        for name in created:
            with contextlib.suppress(Exception):
                admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)
        print(f"\nload average at the end: {loadavg()}; throwaway databases dropped")


def mlflow_phase(
    args: argparse.Namespace,
    mlflow: Path,
    ml_database: str,
    work: Path,
    names: list[str],
    processes: list[subprocess.Popen],
) -> tuple[dict[tuple[str, int], dict[str, Any]], str]:
    """MLflow's server on its own PostgreSQL database, loaded with the same registry and timed.
    Its process goes into `processes` (stopped by the caller). Returns the figures and a note."""
    admin(f'CREATE DATABASE "{ml_database}"')
    ml_port = free_port()
    ml_log = (work / "mlflow.log").open("wb")
    version = subprocess.run([str(mlflow), "--version"], capture_output=True, text=True).stdout.strip()  # noqa: S603
    began = time.perf_counter()
    processes.append(
        subprocess.Popen(  # noqa: S603 (the MLflow install named in bench/README.md)
            [
                str(mlflow),
                "server",
                "--backend-store-uri",
                f"postgresql+psycopg2://postgres@127.0.0.1:5432/{ml_database}",
                "--default-artifact-root",
                f"file://{work / 'mlartifacts'}",
                "--host",
                "127.0.0.1",
                "--port",
                str(ml_port),
                "--workers",
                str(args.procs),
            ],
            cwd=work,
            stdout=ml_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))},
                # MLflow 3.x starts a job runner and 7 huey consumers beside the web workers (for
                # scorers and prompt optimisation, nothing the registry calls use); they import
                # MLflow for ~20 s after /health answers. TechAnal's qcluster is not run either.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            },
        )
    )
    try:
        wait_http(ml_port, "/health", seconds=180)
    except SystemExit:
        ml_log.flush()
        print((work / "mlflow.log").read_text(errors="replace")[-3000:])
        raise
    print(
        f"\n{version} server ({mlflow}), {args.procs} workers, backend {PG}/<throwaway>: "
        f"up in {time.perf_counter() - began:.1f} s"
    )
    for line in mlflow_load(ml_port, ml_database, names, args.versions):
        print(line)
    ml_headers = {"Content-Type": "application/json"}
    q = urllib.parse.quote
    pick = random.Random(8)  # noqa: S311
    ml_reads = {
        "list models": lambda ci, k: f"/api/2.0/mlflow/registered-models/search?max_results={PAGE}",
        "list a model's versions": lambda ci, k: (
            "/api/2.0/mlflow/model-versions/search?filter=" + q("name='" + pick.choice(names) + "'")
        ),
        "the champion / active version": lambda ci, k: (
            f"/api/2.0/mlflow/registered-models/alias?name={pick.choice(names)}&alias=champion"
        ),
    }
    for label, url in ml_reads.items():  # warm-up
        run_load([ml_port], ml_headers, args.procs * 2, 5, 30, get_plan(label, url))
    print(f"warmed up; {settle(processes)}")
    if WATCH:
        WATCH.run_peak = 0
    load = [loadavg()]
    ml_results: dict[tuple[str, int], dict[str, Any]] = {}

    def register(ci: int, k: int) -> list[Request]:
        payload = {"name": names[ci], "source": f"s3://bench-artifacts/{names[ci]}/load-{ci}-{k}"}
        path = "/api/2.0/mlflow/model-versions/create"
        return [("register a version", "POST", path, json.dumps(payload).encode(), (200,))]

    def move_alias(ci: int, k: int) -> list[Request]:
        payload = {"name": names[ci], "alias": "champion", "version": str(args.versions - 1 + k % 2)}
        path = "/api/2.0/mlflow/registered-models/alias"
        return [("move the alias / activate", "POST", path, json.dumps(payload).encode(), (200,))]

    for clients in args.mlflow_clients_list:
        table = Table(f"MLflow, {clients} client(s)")
        for label, url in ml_reads.items():
            table.add(
                run_load(
                    [ml_port],
                    ml_headers,
                    clients,
                    max(5, args.requests // clients),
                    args.max_seconds,
                    get_plan(label, url),
                )
            )
        for plan in (register, move_alias):
            table.add(
                run_load([ml_port], ml_headers, clients, max(4, args.requests // 2 // clients), args.max_seconds, plan)
            )
        for label, r in table.rows:
            ml_results[(label, clients)] = r
        table.print()
    load.append(loadavg())
    peak = WATCH.run_peak if WATCH else 0
    note = (
        f"MLflow: {version}, {args.procs} workers, load average {load[0]} at the start of its tables and "
        f"{load[1]} at the end, peak PostgreSQL connections {peak}"
    )
    return ml_results, note


def compare(ml_results: dict[tuple[str, int], dict[str, Any]], results: dict[tuple[str, int], dict[str, Any]]) -> None:
    print(
        "\nMLflow vs TechAnal, same registry, same PostgreSQL, same number of server processes "
        "(every ratio > 1: TechAnal faster; throughput target TechAnal ÷ MLflow ≥ "
        f"{TARGET_MLFLOW_RATIO:.0f})"
    )
    print(
        "| operation | MLflow endpoint / TechAnal endpoint | clients | MLflow p50 | TechAnal p50 "
        "| MLflow ÷ TechAnal p50 | MLflow p95 | TechAnal p95 | MLflow ÷ TechAnal p95 | MLflow req/s | TechAnal req/s "
        f"| TechAnal ÷ MLflow req/s | ≥ {TARGET_MLFLOW_RATIO:.0f}× |"
    )
    print("|" + "---|" * 13)
    for (label, clients), ml in ml_results.items():
        ours = results.get((PAIRS[label], clients))
        if ours is None:
            continue
        ratio = ours["rps"] / ml["rps"]
        print(
            f"| {label} | {PAIRS[label]} | {clients} | {ml['p50']:.1f} | {ours['p50']:.1f} | "
            f"{ml['p50'] / ours['p50']:.2f} | {ml['p95']:.1f} | {ours['p95']:.1f} | {ml['p95'] / ours['p95']:.2f} "
            f"| {ml['rps']:.0f} | {ours['rps']:.0f} | {ratio:.2f} "
            f"| {verdict(ratio >= TARGET_MLFLOW_RATIO and not ours['errors'])}"
            f"{' (TechAnal errors)' if ours['errors'] else ''} |"
        )


def summary(
    args: argparse.Namespace,
    results: dict[tuple[str, int], dict[str, Any]],
    floors: dict[tuple[str, int], dict[str, Any]],
    ml_results: dict[tuple[str, int], dict[str, Any]],
    tech_load: list[str],
    tech_peak: int,
    ml_note: str,
) -> None:
    """The Markdown table for bench/README.md: per operation and client count, with the targets."""
    mine = {tech: ml for ml, tech in PAIRS.items()}
    size = (args.models, args.versions)
    print(
        f"\n#### api_load summary, {date.today()}: {args.models} × {args.versions}, server {args.server} "
        f"(`{args.template}`), --procs {args.procs}, {os.cpu_count()} CPUs\n"
    )
    print(
        f"TechAnal: load average {tech_load[0]} at the start of its tables and {tech_load[1]} at the end, peak "
        f"PostgreSQL connections {tech_peak}. {ml_note}."
        + (
            ""
            if size == TARGET_REGISTRY
            else f" The targets are stated for {TARGET_REGISTRY[0]:,} × {TARGET_REGISTRY[1]}: "
            "the verdicts below are only indicative."
        )
        + " Ratios to the floor (`GET /api/ping/`, measured first in each table, same server and clients): "
        "p95 ÷ floor p95 and floor req/s ÷ req/s (1 = as cheap as the floor). TechAnal ÷ MLflow: req/s ratio.\n"
    )
    print(
        "| operation | clients | p50 ms | p95 ms | req/s | p95 ÷ floor p95 | floor req/s ÷ req/s | MLflow p50 ms "
        "| MLflow p95 ms | MLflow req/s | TechAnal ÷ MLflow req/s | targets |"
    )
    print("|" + "---|" * 12)
    rows: list[tuple[str, dict[str, Any]]] = []
    for kind in ("reads", "writes"):
        rows.extend(
            (f"{FLOOR}, {kind} tables", r) for (k, _), r in sorted(floors.items(), key=lambda x: x[0][1]) if k == kind
        )
    labels = list(dict.fromkeys(label for label, _ in results))
    rows.extend((label, results[(label, c)]) for label in labels for c in args.clients_list if (label, c) in results)
    for label, r in rows:
        floor = r.get("floor")
        cells = [label, str(r["clients"]), f"{r['p50']:.1f}", f"{r['p95']:.1f}", f"{r['rps']:.0f}"]
        cells += [f"{r['p95'] / floor['p95']:.2f}", f"{floor['rps'] / r['rps']:.2f}"] if floor else ["1", "1"]
        targets = [read_targets(r, floor)] if floor and label.startswith("GET") else []
        ml = ml_results.get((mine.get(label, ""), r["clients"]))
        if ml:
            ratio = r["rps"] / ml["rps"]
            cells += [f"{ml['p50']:.1f}", f"{ml['p95']:.1f}", f"{ml['rps']:.0f}", f"{ratio:.2f}"]
            targets.append(
                f"≥ {TARGET_MLFLOW_RATIO:.0f}× MLflow: {verdict(ratio >= TARGET_MLFLOW_RATIO and not r['errors'])}"
            )
        else:
            cells += ["", "", "", ""]
        if r["errors"]:
            targets.append(f"errors: {len(r['errors'])}")
        cells.append("; ".join(t for t in targets if t))
        print("| " + " | ".join(cells) + " |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
