"""API load benchmark on PostgreSQL: read and write endpoints under concurrency, and MLflow beside it.

Run from the repository root (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth)::

    .venv/bin/python bench/api_load.py [--models 1000 --versions 20 --clients 1,16,64 --procs 2]
    .venv/bin/python bench/api_load.py --skip-mlflow

Creates a throwaway database (dropped at the end), generates a registry with bulk_create (models x
versions with realistic metrics, one active version per model, three terminal jobs per model,
object permissions granted to a group the benchmark user is in), starts `--procs` real daphne
processes (`techanal.asgi:application`; clients spread over them round-robin) and drives them with
N client threads, each with one keep-alive http.client connection and a JWT bearer token. Prints
p50/p95/p99 latency and throughput per endpoint and client count.

Then, unless --skip-mlflow, the same registry is put into an MLflow tracking server (its own
throwaway PostgreSQL database; `--workers` = --procs): the first model through MLflow's REST API
(timed), the rest by copying those rows in SQL inside MLflow's own tables; the equivalent operations
are timed through MLflow's REST API at --mlflow-clients and printed beside TechAnal's with the
ratio MLflow / TechAnal. A benchmark, not a test: PASS/MISS is informational and it exits 0.
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
MLFLOW_CANDIDATES = [ROOT / "var/mlflow-venv/bin/mlflow", ROOT / ".venv/bin/mlflow"]

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

    def take_peak(self) -> int:
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
    return {
        label: {
            "clients": clients,
            "n": len(values),
            "errors": errors.get(label, []),
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "p99": percentile(values, 99),
            "rps": len(values) / elapsed,
        }
        for label, values in samples.items()
    }


def print_table(title: str, rows: list[tuple[str, dict[str, Any]]], target: bool = False) -> None:
    peak = WATCH.take_peak() if WATCH else 0
    print(f"\n{title}  (load average after: {loadavg()}; peak PostgreSQL connections of the servers: {peak})")
    head = "| operation | clients | requests | errors | p50 ms | p95 ms | p99 ms | req/s |"
    print(head + (" p95 ≤ 50 ms @16, 0 errors |" if target else ""))
    print("|" + "---|" * (8 + target))
    for label, r in rows:
        line = (
            f"| {label} | {r['clients']} | {r['n']} | {len(r['errors'])} | {r['p50']:.1f} | {r['p95']:.1f} | "
            f"{r['p99']:.1f} | {r['rps']:.0f} |"
        )
        if target:
            verdict = ""
            if r["clients"] == TARGET_CLIENTS:
                verdict = "PASS" if r["p95"] <= TARGET_P95_MS and not r["errors"] else "MISS"
            line += f" {verdict} |"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--mlflow-clients", default="1,16")
    parser.add_argument("--procs", type=int, default=2, help="daphne processes, and MLflow --workers")
    parser.add_argument("--requests", type=int, default=400, help="requests per cell (split among clients)")
    parser.add_argument("--max-seconds", type=float, default=6.0, help="cap per cell")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=0,
        help="CONN_MAX_AGE of the daphne processes (default 0; the product's default 60 exhausts PostgreSQL "
        "connections under concurrent load: see bench/README.md)",
    )
    args = parser.parse_args()
    clients_list = [int(c) for c in args.clients.split(",")]
    if args.models < 64 + 1:
        raise SystemExit("--models must be > 64 (write clients use one model each)")

    print(f"api_load: {date.today()}  {platform.node()}  {os.cpu_count()} CPUs  load average {loadavg()}")
    print(
        f"registry {args.models} models x {args.versions} versions; {args.procs} daphne process(es) "
        f"with CONN_MAX_AGE={args.conn_max_age}; "
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

        ports = []
        for _ in range(args.procs):
            port = free_port()
            log = (work / f"daphne-{port}.log").open("wb")
            processes.append(
                subprocess.Popen(  # noqa: S603 (the venv's daphne)
                    [str(ROOT / ".venv/bin/daphne"), "-b", "127.0.0.1", "-p", str(port), "techanal.asgi:application"],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    start_new_session=True,
                )
            )
            ports.append(port)
        for port in ports:
            wait_http(port, "/api/health/")
        headers = {"Authorization": f"Bearer {registry['token']}", "Content-Type": "application/json"}
        names = registry["names"]
        readers = random.Random(7)  # noqa: S311
        reads = {
            "GET models": lambda ci, k: f"{API}/models?page={1 + (ci + k) % (len(names) // PAGE)}",
            "GET models/:name": lambda ci, k: f"{API}/models/{readers.choice(names)}",
            "GET models/:name/versions": lambda ci, k: f"{API}/models/{readers.choice(names)}/versions",
            "GET models/:name/metrics": lambda ci, k: f"{API}/models/{readers.choice(names)}/metrics",
            "GET models/:name/comparison": lambda ci, k: f"{API}/models/{readers.choice(names)}/comparison",
        }
        # warm-up: imports, connections, caches in every process
        for label, url in reads.items():
            run_load(
                ports,
                headers,
                args.procs * 2,
                5,
                30,
                lambda ci, k, label=label, url=url: [(label, "GET", url(ci, k), None, (200,))],
            )
        results: dict[tuple[str, int], dict[str, Any]] = {}
        for clients in clients_list:
            rows = []
            for label, url in reads.items():
                out = run_load(
                    ports,
                    headers,
                    clients,
                    max(5, args.requests // clients),
                    args.max_seconds,
                    lambda ci, k, label=label, url=url: [(label, "GET", url(ci, k), None, (200,))],
                )
                results[(label, clients)] = out[label]
                rows.append((label, out[label]))
            print_table(f"TechAnal reads, {clients} client(s)", rows, target=True)

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
            rows = []
            for plan in (fine_tune, activate):
                out = run_load(ports, headers, clients, max(4, args.requests // 2 // clients), args.max_seconds, plan)
                for label, r in out.items():
                    results[(label, clients)] = r
                    rows.append((label, r))
            print_table(f"TechAnal writes, {clients} client(s) (each client its own model)", rows, target=True)

        if args.skip_mlflow:
            return
        mlflow = next((p for p in MLFLOW_CANDIDATES if p.exists()), None)
        if mlflow is None:
            print("\nMLflow: not installed (see bench/README.md); skipped")
            return
        for process in processes:  # one server at a time on the 2 cores
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        processes.clear()
        admin(f'CREATE DATABASE "{ml_database}"')
        created.append(ml_database)
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
                env={k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))},
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
        pairs = {
            "list models": "GET models",
            "list a model's versions": "GET models/:name/versions",
            "the champion / active version": "GET models/:name",
            "register a version": "POST fine-tune",
            "move the alias / activate": "POST versions/:v/activate",
        }
        for label, url in ml_reads.items():  # warm-up
            run_load(
                [ml_port],
                ml_headers,
                args.procs * 2,
                5,
                30,
                lambda ci, k, label=label, url=url: [(label, "GET", url(ci, k), None, (200,))],
            )
        ml_results: dict[tuple[str, int], dict[str, Any]] = {}

        def register(ci: int, k: int) -> list[Request]:
            payload = {"name": names[ci], "source": f"s3://bench-artifacts/{names[ci]}/load-{ci}-{k}"}
            return [
                (
                    "register a version",
                    "POST",
                    "/api/2.0/mlflow/model-versions/create",
                    json.dumps(payload).encode(),
                    (200,),
                )
            ]

        def move_alias(ci: int, k: int) -> list[Request]:
            payload = {"name": names[ci], "alias": "champion", "version": str(args.versions - 1 + k % 2)}
            return [
                (
                    "move the alias / activate",
                    "POST",
                    "/api/2.0/mlflow/registered-models/alias",
                    json.dumps(payload).encode(),
                    (200,),
                )
            ]

        for clients in [int(c) for c in args.mlflow_clients.split(",")]:
            rows = []
            for label, url in ml_reads.items():
                out = run_load(
                    [ml_port],
                    ml_headers,
                    clients,
                    max(5, args.requests // clients),
                    args.max_seconds,
                    lambda ci, k, label=label, url=url: [(label, "GET", url(ci, k), None, (200,))],
                )
                rows.append((label, out[label]))
            for plan in (register, move_alias):
                out = run_load(
                    [ml_port], ml_headers, clients, max(4, args.requests // 2 // clients), args.max_seconds, plan
                )
                rows.extend(out.items())
            for label, r in rows:
                ml_results[(label, clients)] = r
            print_table(f"MLflow, {clients} client(s)", rows)

        print(
            "\nMLflow vs TechAnal, same registry, same PostgreSQL, same number of server processes "
            "(ratio = MLflow / TechAnal; > 1: TechAnal faster)"
        )
        print(
            "| operation | MLflow endpoint / TechAnal endpoint | clients | MLflow p50 | TechAnal p50 | p50 ratio "
            "| MLflow p95 | TechAnal p95 | p95 ratio | MLflow req/s | TechAnal req/s |"
        )
        print("|" + "---|" * 11)
        for (label, clients), ml in ml_results.items():
            ours = results.get((pairs[label], clients))
            if ours is None:
                continue
            print(
                f"| {label} | {pairs[label]} | {clients} | {ml['p50']:.1f} | {ours['p50']:.1f} | "
                f"{ml['p50'] / ours['p50']:.2f} | {ml['p95']:.1f} | {ours['p95']:.1f} | {ml['p95'] / ours['p95']:.2f} "
                f"| {ml['rps']:.0f} | {ours['rps']:.0f} |"
            )
    finally:
        if WATCH:
            WATCH.stop()
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        for name in created:
            with contextlib.suppress(Exception):
                admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)
        print(f"\nload average at the end: {loadavg()}; throwaway databases dropped")


if __name__ == "__main__":
    main()
