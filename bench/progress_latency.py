"""Progress-feed latency benchmark: worker emits an event -> a websocket client receives it.

Run from the repository root (Redis must listen on 127.0.0.1:6379 for the "redis" mode)::

    .venv/bin/python bench/progress_latency.py [--events 200] [--rate 20] [--clients 1,50]
                                               [--modes embedded,redis] [--redis-db 9]

For each mode a real web server (uvicorn serving `techanal.asgi:application` with bin/serve's flags;
called "daphne" below and in the output, the first wave's server) is started in its own process group on a
free 127.0.0.1 port, against one throwaway SQLite database (migrate + createcachetable) in a
temporary folder:

* "embedded": no REDIS_URL -- in-memory channel layer; daphne's relay polls the events table;
* "redis": REDIS_URL=redis://127.0.0.1:6379/<--redis-db> for daphne and the worker -- the worker
  pushes each event through channels_redis on commit (the database stays SQLite).

For each client count N, a fresh model and job are created through the services (start + claim:
the job is running), N `websockets` clients connect to `/ws/model-management/jobs/<id>/` with
`Authorization: Bearer <access token>` and read the current state, then "the worker" -- a separate
process (this script with --worker) with its own database connection -- emits --events
`job.progress` events at --rate per second the way `JobProgress.emit` does (lock the job row,
write progress + heartbeat, `publish_job_event`), then moves the job to succeeded (one more event:
the feed's terminal status, after which daphne closes the sockets).

Emit time = the moment the event's transaction committed (a `transaction.on_commit` callback
registered before `publish_job_event`'s own, so it runs first: before the Redis push). Latency =
client receive time - emit time (same machine, same clock), over every event of every client.
Each client must receive every seq exactly once and in order: lost, duplicates and out-of-order
messages are counted per client and summed.

This is a benchmark, not a test: it prints figures and PASS/MISS against the targets
(p95 <= 250 ms, 0 lost) and exits 0 on a miss. The temporary folder is removed at the end and the
Redis database it used is flushed (it refuses to run the redis mode on a non-empty database).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.figures import percentile  # noqa: E402 - after the path set-up above

TARGET_P95_MS = 250.0
HOST = "127.0.0.1"
REDIS_PORT = 6379
# The product's web server as bin/serve starts it (one process, as `make run`).
WEB_SERVER = [
    sys.executable, "-m", "uvicorn", "techanal.asgi:application", "--loop", "uvloop",
    "--http", "techanal.http_server:ApiHttpToolsProtocol", "--ws", "websockets-sansio", "--lifespan", "off",
    "--no-access-log",
]  # fmt: skip
GRACE_S = 10.0  # after the worker ends, how long clients may still wait for the last events


# --- environment ----------------------------------------------------------------------------------


def base_environment(work: Path) -> dict[str, str]:
    """What the bench process, daphne and the worker share: database, key, no .env, no Redis."""
    return {
        "DJANGO_SETTINGS_MODULE": "techanal.settings",
        "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "ENV_FILE": "/nonexistent",
        "ARTIFACTS_DIR": str(work / "artifacts"),
        "LOG_LEVEL": "WARNING",
        "CODE_REVISION": "bench",
    }


def mode_environment(base: dict[str, str], mode: str, redis_db: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(base)
    if mode == "redis":
        env["REDIS_URL"] = f"redis://{HOST}:{REDIS_PORT}/{redis_db}"
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, the process's whole group (it was started in its own session)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=3)
            break
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


# --- the worker (a separate process) ------------------------------------------------------------


def worker_main(job_id: int, events: int, rate: float) -> None:
    """Emit `events` progress events, then the terminal status; print one JSON line per event."""
    import django

    django.setup()
    from django.db import connection, transaction
    from django.utils import timezone

    from models_mgmt.choices import JobStatus
    from models_mgmt.models import TrainingJob
    from models_mgmt.realtime.events import publish_job_event
    from models_mgmt.services import training_job_transition

    records: list[dict[str, float]] = []

    def emit(index: int) -> None:
        marks: dict[str, float] = {"called": time.time()}
        with transaction.atomic():
            transaction.on_commit(lambda: marks.__setitem__("committed", time.time()))
            job = TrainingJob.objects.select_for_update().select_related("model", "version").get(pk=job_id)
            if index < events:
                job.progress = 100.0 * (index + 1) / (events + 1)
                job.step = index + 1
                job.heartbeat_at = timezone.now()
                job.save(update_fields=["progress", "step", "heartbeat_at"])
                payload = publish_job_event(job, "job.progress", {"loss": round(1.0 / (index + 2), 6)})
            else:
                training_job_transition(job, JobStatus.SUCCEEDED)
                payload = {"seq": job.event_seq}
        marks["returned"] = time.time()
        records.append({"seq": payload["seq"], **marks})

    begun = time.monotonic()
    for index in range(events + 1):
        delay = begun + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        emit(index)
    connection.close()
    for record in records:
        print(json.dumps(record))


# --- the clients ----------------------------------------------------------------------------------


class Client:
    def __init__(self) -> None:
        self.first_seq: int | None = None  # the current state sent on connect
        self.received: list[tuple[int, float]] = []  # (seq, receive time) of later messages
        self.close_code: int | None = None
        self.error: str | None = None
        self.ready = asyncio.Event()


async def run_client(client: Client, url: str, token: str, deadline: float) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    try:
        async with connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=30, max_queue=None
        ) as ws:
            try:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        client.error = "deadline"
                        break
                    try:
                        raw = await asyncio.wait_for(ws.recv(), timeout=remaining)
                    except TimeoutError:
                        client.error = "deadline"
                        break
                    now = time.time()
                    seq = json.loads(raw).get("seq")
                    if client.first_seq is None:
                        client.first_seq = seq
                        client.ready.set()
                    else:
                        client.received.append((seq, now))
            except ConnectionClosed as closed:
                client.close_code = closed.rcvd.code if closed.rcvd else None
    except Exception as exc:  # reported in the table, not raised
        client.error = f"{type(exc).__name__}: {exc}"
    finally:
        client.ready.set()


async def measure(
    url: str, token: str, clients: int, worker_cmd: list[str], env: dict[str, str], events: int, rate: float
) -> dict[str, Any]:
    budget = 60 + (events + 1) / rate + GRACE_S
    deadline = time.monotonic() + budget
    group = [Client() for _ in range(clients)]
    tasks = [asyncio.create_task(run_client(c, url, token, deadline)) for c in group]
    connect_started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in group)), timeout=60)
    connect_s = time.perf_counter() - connect_started
    failed = [c.error for c in group if c.first_seq is None]
    if failed:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise SystemExit(f"{len(failed)} of {clients} clients did not get the current state: {failed[:3]}")

    worker = await asyncio.create_subprocess_exec(
        *worker_cmd, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(worker.communicate(), timeout=60 + (events + 1) / rate)
    except TimeoutError:
        worker.kill()
        raise SystemExit("the worker did not finish in time") from None
    if worker.returncode != 0:
        raise SystemExit(f"the worker failed ({worker.returncode}):\n{err.decode(errors='replace')[-3000:]}")
    emitted = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    # The terminal status closes every socket; wait for that (bounded), then stop whoever is left.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=GRACE_S)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"clients": group, "emitted": emitted, "connect_s": connect_s}


def analyse(result: dict[str, Any]) -> dict[str, Any]:
    emitted = {e["seq"]: e for e in result["emitted"]}
    expected = sorted(emitted)
    latencies: list[float] = []
    lost = duplicates = out_of_order = unexpected = 0
    errors: list[str] = []
    for client in result["clients"]:
        seen: set[int] = set()
        highest = client.first_seq or 0
        for seq, at in client.received:
            if seq in seen:
                duplicates += 1
                continue
            seen.add(seq)
            if seq < highest:
                out_of_order += 1
            highest = max(highest, seq)
            if seq in emitted:
                latencies.append((at - emitted[seq]["committed"]) * 1000)
            else:
                unexpected += 1
        lost += sum(1 for seq in expected if seq not in seen)
        if client.error:
            errors.append(client.error)
    publish_ms = [(e["returned"] - e["called"]) * 1000 for e in result["emitted"]]
    push_ms = [(e["returned"] - e["committed"]) * 1000 for e in result["emitted"]]
    return {
        "events": len(expected),
        "latencies": latencies,
        "lost": lost,
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "unexpected": unexpected,
        "errors": errors,
        "publish_ms": publish_ms,
        "after_commit_ms": push_ms,
        "connect_s": result["connect_s"],
    }


# --- fixture (this process) -----------------------------------------------------------------------


class Fixture:
    def __init__(self) -> None:
        import django
        from django.core.management import call_command

        django.setup()
        with open(os.devnull, "w") as quiet:
            call_command("migrate", verbosity=0, stdout=quiet)
            call_command("createcachetable", verbosity=0, stdout=quiet)
        from django.contrib.auth import get_user_model

        from models_mgmt.services import dataset_import_builtin
        from models_mgmt.services.roles import roles_ensure

        self.dataset = dataset_import_builtin(name="sp500")
        groups = roles_ensure()
        user = get_user_model().objects.create_user(username="bench", password=secrets.token_urlsafe(16))
        user.groups.add(groups["maintainer"])
        self.user = get_user_model().objects.get(pk=user.pk)

    def token(self) -> str:
        from rest_framework_simplejwt.tokens import AccessToken

        return str(AccessToken.for_user(self.user))

    def running_job(self, name: str) -> int:
        """A new model with a running job (start + claim, as a worker would)."""
        from models_mgmt.api.serializers import FineTuningConfigSerializer
        from models_mgmt.services import ai_model_create, training_job_start
        from models_mgmt.services.training_jobs import training_job_claim

        model = ai_model_create(actor=self.user, name=name, family="multitask-mlp", default_dataset=self.dataset)
        data = FineTuningConfigSerializer(data={"epochs": 1, "dataset": "sp500"}, context={"model": model})
        if not data.is_valid():
            raise SystemExit(f"invalid config: {data.errors}")
        v = data.validated_data
        job = training_job_start(
            actor=self.user,
            model=model,
            config=v["resolved"].config,
            dataset=v["resolved"].dataset,
            base_version=v["resolved"].base_version,
        )
        if training_job_claim(job_id=job.pk) is None:
            raise SystemExit(f"job {job.pk} could not be claimed")
        return job.pk


# --- daphne ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def daphne(env: dict[str, str], log_path: Path):
    port = free_port()
    log = log_path.open("ab")
    process = subprocess.Popen(  # noqa: S603 -- the project's own daphne
        [*WEB_SERVER, "--host", HOST, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"daphne exited:\n{log_path.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"daphne did not listen:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield port, process.pid
    finally:
        stop_group(process)
        log.close()


# --- report ---------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


def load() -> str:
    with contextlib.suppress(OSError):
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "load average n/a"


def versions() -> str:
    from importlib.metadata import version

    parts = []
    for name in ("django", "channels", "channels-redis", "daphne", "websockets", "redis"):
        with contextlib.suppress(Exception):
            parts.append(f"{name} {version(name)}")
    return ", ".join(parts)


def redis_client(db: int) -> Any:
    import redis

    return redis.Redis(host=HOST, port=REDIS_PORT, db=db, socket_connect_timeout=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200, help="progress events per run (plus the terminal one)")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second the worker emits")
    parser.add_argument("--clients", default="1,50", help="comma-separated client counts")
    parser.add_argument("--modes", default="embedded,redis", help="comma-separated: embedded, redis")
    parser.add_argument("--redis-db", type=int, default=9)
    parser.add_argument("--worker", nargs=3, metavar=("JOB_ID", "EVENTS", "RATE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(int(args.worker[0]), int(args.worker[1]), float(args.worker[2]))
        return

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    if any(m not in ("embedded", "redis") for m in modes) or not counts or args.events < 1 or args.rate <= 0:
        parser.error("modes: embedded,redis; clients: positive integers; events >= 1; rate > 0")

    begun = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-progress-"))
    base = base_environment(work)
    os.environ.update(base)
    os.environ.pop("REDIS_URL", None)  # this process only sets up data and mints tokens
    used_redis = False
    try:
        print(f"TechAnal progress-feed latency benchmark, {date.today().isoformat()}")
        print(
            f"host: {platform.node()} | {os.cpu_count()} CPU core(s), shared with other work -- figures are noisy | "
            f"python {platform.python_version()} | {versions()} | {load()}"
        )
        setup_started = time.perf_counter()
        fixture = Fixture()
        print(
            f"database: SQLite (WAL) in {work} for both modes; worker: separate process emitting {args.events} "
            f"job.progress events at {args.rate:g}/s + the terminal status; "
            f"setup {time.perf_counter() - setup_started:.1f} s"
        )
        rows: list[tuple[str, int, dict[str, Any]]] = []
        for mode in modes:
            if mode == "redis":
                try:
                    db = redis_client(args.redis_db)
                    info = db.info("server")
                    if db.dbsize():
                        print(f"\nredis mode skipped: redis db {args.redis_db} is not empty (choose --redis-db)")
                        continue
                except Exception as exc:
                    print(f"\nredis mode skipped: no Redis at {HOST}:{REDIS_PORT} ({exc})")
                    continue
                used_redis = True
                print(f"redis: server {info.get('redis_version')} at {HOST}:{REDIS_PORT}, db {args.redis_db}")
            env = mode_environment(base, mode, args.redis_db)
            with daphne(env, work / f"daphne-{mode}.log") as (port, daphne_pid):
                for clients in counts:
                    job_id = fixture.running_job(f"bench-{mode}-{clients}")
                    url = f"ws://{HOST}:{port}/ws/model-management/jobs/{job_id}/"
                    worker_cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(job_id)]
                    worker_cmd += [str(args.events), str(args.rate)]
                    started, cpu = time.perf_counter(), cpu_seconds(daphne_pid)
                    result = asyncio.run(
                        measure(url, fixture.token(), clients, worker_cmd, env, args.events, args.rate)
                    )
                    stats = analyse(result)
                    stats["daphne_cpu_s"] = cpu_seconds(daphne_pid) - cpu
                    rows.append((mode, clients, stats))
                    print(
                        f"  {mode:<8} {clients:>3} client(s): {time.perf_counter() - started:5.1f} s "
                        f"(connect {stats['connect_s']:.2f} s, daphne CPU {stats['daphne_cpu_s']:.1f} s, {load()})"
                        + (f"  client errors: {stats['errors'][:3]}" if stats["errors"] else "")
                    )
                    if stats["unexpected"]:
                        print(f"    NOTE: {stats['unexpected']} message(s) with a seq the worker did not emit")
        print_table(rows)
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        shutil.rmtree(work, ignore_errors=True)
        if used_redis:
            with contextlib.suppress(Exception):
                redis_client(args.redis_db).flushdb()
    print(f"\ntotal benchmark wall time: {time.perf_counter() - begun:.1f} s")


def print_table(rows: list[tuple[str, int, dict[str, Any]]]) -> None:
    print(
        "\nlatency = client receive time - commit time of the event (ms), all events of all clients; "
        f"target p95 <= {TARGET_P95_MS:.0f} ms and 0 lost (informational)"
    )
    header = (
        f"{'mode':<9}{'clients':>8}{'events':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"
        f"{'lost':>7}{'dup':>6}{'ooo':>6}  target"
    )
    print(header)
    print("-" * len(header))
    for mode, clients, s in rows:
        lat = s["latencies"]
        p95 = percentile(lat, 95)
        ok = p95 <= TARGET_P95_MS and s["lost"] == 0
        print(
            f"{mode:<9}{clients:>8}{s['events']:>8}{percentile(lat, 50):>9.1f}{p95:>9.1f}"
            f"{(max(lat) if lat else math.nan):>9.1f}{s['lost']:>7}{s['duplicates']:>6}{s['out_of_order']:>6}  "
            f"{'PASS' if ok else 'MISS'}"
        )
    print(
        "\nworker side (ms per event): publish = the whole emit transaction incl. commit and any push; "
        "after commit = the Redis push (0 without Redis)\ndaphne side: CPU seconds of the run (connects included) "
        "per message delivered to a client"
    )
    for mode, clients, s in rows:
        pub, after = s["publish_ms"], s["after_commit_ms"]
        delivered = max(len(s["latencies"]), 1)
        print(
            f"  {mode:<8} {clients:>3} client(s): publish p50 {percentile(pub, 50):.1f} p95 {percentile(pub, 95):.1f} "
            f"max {max(pub):.1f} | after commit p50 {percentile(after, 50):.1f} p95 {percentile(after, 95):.1f} "
            f"max {max(after):.1f} | daphne {s['daphne_cpu_s'] * 1000 / delivered:.2f} ms CPU per message"
        )


if __name__ == "__main__":
    main()
