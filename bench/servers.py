"""ASGI servers side by side on the same app and PostgreSQL: daphne, uvicorn, gunicorn + uvicorn, granian.

Run from the repository root (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth)::

    .venv/bin/python bench/servers.py --procs 1
    .venv/bin/python bench/servers.py --procs 2 [--servers daphne,uvicorn,granian] [--no-pool]

Creates a throwaway database `bench_srv_<pid>` (dropped WITH (FORCE) at the end), migrates, builds a
small registry with bench/api_load.py's generator (a maintainer with object permissions through a
group, --models models x 3 versions), then:

* starts every server with `--procs` worker processes (daphne has no workers: `--procs` daphne
  processes on their own ports, clients spread round-robin, as bench/api_load.py runs it);
* times `GET /api/ping/` (authenticated, reads nothing: the floor) and `GET models/:name` at 1 and
  16 clients (keep-alive http.client threads, JWT bearer), server after server, each cell twice (in
  one order, then the reverse; the mean of the two is printed, so a change of background load on the
  shared machine falls on every server alike); p50/p95, req/s and the ratios to daphne;
* checks websockets through each: a finished job's feed sends its current state; --sockets clients
  on a model feed receive its current state, then the events of a fine-tune started and stopped over
  HTTP (delivered by each process's relay over the events table: no Redis here);
* reports the servers' RSS (all their processes) after the load.

A benchmark, not a test: it prints figures and exits 0 unless a server fails to start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
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

from bench.api_load import (  # noqa: E402 - after the path set-up above
    API,
    admin,
    environment,
    free_port,
    generate,
    loadavg,
    run_load,
    wait_http,
)

APP = "techanal.asgi:application"
BIN = Path(sys.executable).parent


def commands(server: str, procs: int) -> list[list[str]]:
    """One command per port; every server but daphne runs its `procs` workers on one port."""
    if server == "daphne":
        # -v 0: no access log, like the others (bin/serve's daphne wrote one line per request to stdout)
        return [[str(BIN / "daphne"), "-v", "0", "-b", "127.0.0.1", "-p", "{port}", APP] for _ in range(procs)]
    if server == "uvicorn":
        return [
            [
                *(str(BIN / "uvicorn"), APP, "--host", "127.0.0.1", "--port", "{port}", "--workers", str(procs)),
                *("--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio", "--lifespan", "off"),
                *("--no-access-log", "--log-level", "warning"),
            ]
        ]
    if server == "gunicorn+uvicorn":
        return [
            [
                *(str(BIN / "gunicorn"), APP, "-k", "uvicorn_worker.UvicornWorker", "-w", str(procs)),
                *("-b", "127.0.0.1:{port}", "--log-level", "warning"),
            ]
        ]
    if server == "granian":
        return [
            [
                *(str(BIN / "granian"), "--interface", "asginl", "--host", "127.0.0.1", "--port", "{port}"),
                *("--workers", str(procs), "--loop", "uvloop", "--no-access-log", "--log-level", "warning", APP),
            ]
        ]
    raise SystemExit(f"unknown server {server}")


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def rss_mb(pids: set[int]) -> tuple[float, int]:
    """Total RSS of these processes (MB) and how many of them hold the app (RSS > 40 MB)."""
    total, workers = 0.0, 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    mb = int(line.split()[1]) / 1024
                    total += mb
                    workers += mb > 40
    return total, workers


# --- websockets ---------------------------------------------------------------------------------


async def websocket_check(port: int, token: str, model: str, job_id: int, sockets: int) -> str:
    """A terminal job's feed, then `sockets` model feeds following a fine-tune started over HTTP."""
    import http.client

    import websockets

    headers = {"Authorization": f"Bearer {token}"}
    base = f"ws://127.0.0.1:{port}/ws/model-management"
    async with websockets.connect(f"{base}/jobs/{job_id}/", additional_headers=headers, open_timeout=10) as ws:
        state = json.loads(await asyncio.wait_for(ws.recv(), 10))
        job_ok = state.get("jobId") == job_id and state.get("status") in ("succeeded", "failed", "stopped")

    feeds = [
        await websockets.connect(f"{base}/models/{model}/progress/", additional_headers=headers, open_timeout=10)
        for _ in range(sockets)
    ]
    try:
        firsts = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for ws in feeds]
        current = all(first.get("modelName") == model for first in firsts)

        def post(path: str) -> dict[str, Any]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            body = json.dumps({"epochs": 5}).encode() if path.endswith("fine-tune") else None
            conn.request("POST", path, body=body, headers={**headers, "Content-Type": "application/json"})
            response = conn.getresponse()
            payload = json.loads(response.read() or b"{}")
            conn.close()
            if response.status not in (200, 202):
                raise SystemExit(f"POST {path}: {response.status} {payload}")
            return payload

        async def until(ws: Any, job: int, statuses: set[str], began: float) -> float:
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if event.get("jobId") == job and event.get("status") in statuses:
                    return (time.perf_counter() - began) * 1000

        began = time.perf_counter()
        new_job = (await asyncio.to_thread(post, f"{API}/models/{model}/fine-tune"))["id"]
        queued = await asyncio.gather(*(until(ws, new_job, {"queued"}, began) for ws in feeds))
        began = time.perf_counter()
        await asyncio.to_thread(post, f"{API}/models/{model}/fine-tune/stop")
        stopped = await asyncio.gather(*(until(ws, new_job, {"stopped"}, began) for ws in feeds))
    finally:
        for ws in feeds:
            await ws.close()
    return (
        f"job feed {'ok' if job_ok else 'FAILED'}; {sockets} model feeds: current state "
        f"{'ok' if current else 'FAILED'}, fine-tune queued seen by all after ≤ {max(queued):.0f} ms, "
        f"stopped after ≤ {max(stopped):.0f} ms (relay over the events table)"
    )


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=1, help="worker processes per server")
    parser.add_argument("--servers", default="daphne,uvicorn,gunicorn+uvicorn,granian")
    parser.add_argument("--clients", default="1,16")
    parser.add_argument("--models", type=int, default=70)
    parser.add_argument("--requests", type=int, default=600, help="requests per cell (split among clients)")
    parser.add_argument("--max-seconds", type=float, default=3.0, help="cap per cell")
    parser.add_argument("--sockets", type=int, default=6)
    parser.add_argument("--no-pool", action="store_true", help="DB_POOL=false (close per request)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop the servers, drop the database
    servers = args.servers.split(",")
    clients_list = [int(c) for c in args.clients.split(",")]

    print(f"servers: {date.today()}  {platform.node()}  {os.cpu_count()} CPUs  load average {loadavg()}")
    database = f"bench_srv_{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="bench-srv-"))
    running: list[subprocess.Popen] = []
    try:
        admin(f'CREATE DATABASE "{database}"')
        env = environment(work, database, 0)
        env["DB_POOL"] = "false" if args.no_pool else "true"
        os.environ["DB_POOL"] = "false"  # this process: plain connections
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        with open(os.devnull, "w") as quiet:
            call_command("migrate", verbosity=0, stdout=quiet)
            call_command("createcachetable", verbosity=0, stdout=quiet)
        registry = generate(args.models, 3)
        from models_mgmt.models import AIModel, TrainingJob

        names = registry["names"]
        job_ids = {n: TrainingJob.objects.filter(model__name=n).values_list("pk", flat=True).first() for n in names}
        assert AIModel.objects.count() == len(names)
        connections.close_all()
        pool = "off (CONN_MAX_AGE=0)" if args.no_pool else "DB_POOL_MAX_SIZE=4 per process (the default)"
        print(f"{args.models} models x 3 versions; {args.procs} process(es) per server; pool {pool}")

        headers = {"Authorization": f"Bearer {registry['token']}", "Content-Type": "application/json"}
        endpoints = {
            "GET /api/ping/": lambda ci, k: "/api/ping/",
            "GET models/:name": lambda ci, k: f"{API}/models/{names[(ci * 7 + k) % len(names)]}",
        }
        results: dict[tuple[str, str, int], dict[str, Any]] = {}
        ports: dict[str, list[int]] = {}
        started: dict[str, list[subprocess.Popen]] = {}
        began = time.perf_counter()
        for server in servers:  # all at once: idle servers cost nothing, and cells can alternate
            log = (work / f"{server}.log").open("wb")
            for command in commands(server, args.procs):
                port = free_port()
                process = subprocess.Popen(  # noqa: S603 (the venv's servers)
                    [part.format(port=port) for part in command],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                running.append(process)
                started.setdefault(server, []).append(process)
                ports.setdefault(server, []).append(port)
        for server in servers:
            try:
                for port in ports[server]:
                    wait_http(port, "/api/ping/", seconds=120)  # 401 once up (health is 503: no worker runs)
            except SystemExit:
                print(f"{server} did not start:\n{(work / f'{server}.log').read_text(errors='replace')[-2000:]}")
                raise
        print(f"all servers up in {time.perf_counter() - began:.1f} s (started together)", flush=True)
        for server in servers:  # warm-up: imports, pool, caches in every process
            for label, url in endpoints.items():
                plan = lambda ci, k, u=url, lb=label: [(lb, "GET", u(ci, k), None, (200,))]  # noqa: E731
                run_load(ports[server], headers, 4 * args.procs, 10, 20, plan)
        # The machine is shared: each cell runs every server back to back, in one order and then in
        # the reverse one, so a change of background load falls on all of them alike.
        for clients in clients_list:
            for label, url in endpoints.items():
                plan = lambda ci, k, u=url, lb=label: [(lb, "GET", u(ci, k), None, (200,))]  # noqa: E731
                for order in (servers, servers[::-1]):
                    for server in order:
                        out = run_load(
                            ports[server], headers, clients, max(5, args.requests // clients), args.max_seconds, plan
                        )[label]
                        seen = results.setdefault((server, label, clients), {"runs": []})
                        seen["runs"].append(out)
        for r in results.values():
            runs = r["runs"]
            r.update({key: sum(run[key] for run in runs) / len(runs) for key in ("p50", "p95", "rps")})
            r["errors"] = [e for run in runs for e in run["errors"]]
        notes: dict[str, str] = {}
        for s, server in enumerate(servers):
            pids = set().union(*(descendants(p.pid) for p in started[server]))
            rss, workers = rss_mb(pids)
            name = names[-1 - s]
            ws = asyncio.run(websocket_check(ports[server][0], registry["token"], name, job_ids[name], args.sockets))
            notes[server] = f"{workers} app process(es), RSS {rss:.0f} MB in all after the load; {ws}"
            print(f"  {server}: {notes[server]}", flush=True)
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
        running.clear()

        print(
            f"\n{args.procs} process(es) per server; ratio = this server / daphne (req/s: > 1 faster; p95: < 1 faster)"
        )
        print("| server | endpoint | clients | errors | p50 ms | p95 ms | req/s | req/s ÷ daphne | p95 ÷ daphne |")
        print("|" + "---|" * 9)
        for clients in clients_list:
            for label in endpoints:
                base = results.get(("daphne", label, clients))
                for server in servers:
                    r = results[(server, label, clients)]
                    ratio_rps = f"{r['rps'] / base['rps']:.2f}" if base else "-"
                    ratio_p95 = f"{r['p95'] / base['p95']:.2f}" if base else "-"
                    print(
                        f"| {server} | {label} | {clients} | {len(r['errors'])} | {r['p50']:.1f} | {r['p95']:.1f} "
                        f"| {r['rps']:.0f} | {ratio_rps} | {ratio_p95} |"
                    )
                    for error in r["errors"][:2]:
                        print(f"    error: {error}")
    finally:
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        with contextlib.suppress(Exception):
            admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)
        print(f"\nload average at the end: {loadavg()}; database {database} dropped")


if __name__ == "__main__":
    main()
