"""Predict benchmark: latency and throughput of POST models/:name/predict on the production web
server (uvicorn with `--procs` worker processes, as `bin/serve-prod` runs it), and each web
process's resident memory under that load.

Run from the repository root, alone::

    .venv/bin/python bench/predict.py [--requests 400] [--clients 1,16] [--procs N] [--server uvicorn|daphne]

Sets up a throwaway SQLite database and artifacts directory in a temporary folder (removed at the
end), trains a small real version (2 epochs on S&P 500 2013-2018) and activates it, starts the
server on a free 127.0.0.1 port (default: uvicorn with the flags `bin/serve` uses and `--procs`
workers, default the number of CPUs; `--server daphne` for one daphne process, the first wave's
server), and drives it with N concurrent clients (threads, one keep-alive http.client connection
each) sending a 100-bar window. Prints client-side p50/p95/p99 and throughput per client count,
the server-side `latencyMs`, and the largest VmRSS (from /proc) of the web processes that serve
requests. When RSS is over the target it measures what takes it, each step in a fresh interpreter.
A benchmark, not a test: it prints PASS/MISS and never fails on a miss.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.figures import percentile  # noqa: E402 - after the path set-up above

TARGET_P95_MS = 20.0
TARGET_RSS_MB = 128.0  # per web process (issue 13)
TARGET_16_RPS = 240.0  # 10x the first wave's 24 req/s at 16 clients
MODEL = "bench-model"


def environment(work: Path) -> dict[str, str]:
    values = {
        "DJANGO_SETTINGS_MODULE": "techanal.settings",
        "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "false",
        "ARTIFACTS_DIR": str(work / "artifacts"),
        "LOG_LEVEL": "WARNING",
        "THROTTLE_USER": "10000000/min",  # measure serving, not the throttle
        "JWT_ACCESS_MINUTES": "120",
        "CODE_REVISION": "bench",
    }
    os.environ.update(values)
    os.environ.pop("REDIS_URL", None)
    return {**os.environ, **values}


def prepare(versions: int = 1) -> tuple[str, list[dict[str, Any]]]:
    """Migrate, import S&P 500, train `versions` versions (v1.0.0, v1.1.0, ...) and activate v1.0.0;
    return an access token and a bar window."""
    import django

    django.setup()
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import RefreshToken

    from models_mgmt import services
    from models_mgmt.api.serializers import FineTuningConfigSerializer
    from models_mgmt.choices import Role
    from models_mgmt.engine.bars import load_builtin
    from models_mgmt.services.roles import roles_ensure
    from models_mgmt.training.worker import training_job_execute

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("bench", password=secrets.token_urlsafe(12))
    user.groups.add(roles_ensure()[Role.MAINTAINER])
    user = get_user_model().objects.get(pk=user.pk)
    dataset = services.dataset_import_builtin(name="sp500")
    model = services.ai_model_create(actor=user, name=MODEL, family="multitask-mlp", default_dataset=dataset)
    trained = []
    for _ in range(versions):
        data = FineTuningConfigSerializer(data={"epochs": 2, "startDate": "2013-01-01"}, context={"model": model})
        data.is_valid(raise_exception=True)
        job = services.training_job_start(
            actor=user, model=model, config=data.validated_data["resolved"].config, dataset=dataset, base_version=None
        )
        trained.append(training_job_execute(job_id=job.pk).version)
    services.model_version_activate(actor=user, model=model, version=trained[0])
    frame = load_builtin("sp500").iloc[-100:]
    window = [
        {"date": d.isoformat(), "open": r.open, "high": r.high, "low": r.low, "close": r.close, "volume": r.volume}
        for d, r in zip(frame.index, frame.itertuples(index=False), strict=True)
    ]
    return str(RefreshToken.for_user(user).access_token), window


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], port: int, procs: int, server: str = "uvicorn") -> subprocess.Popen:
    """The web server as bin/serve runs it (or one daphne), in its own session; returns once
    /api/health/ answers and, for uvicorn, every worker has had time to come up."""
    if server == "daphne":
        command = [str(ROOT / ".venv/bin/daphne"), "-b", "127.0.0.1", "-p", str(port), "techanal.asgi:application"]
    else:
        command = [
            sys.executable, "-m", "uvicorn", "techanal.asgi:application", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(procs), "--loop", "uvloop",
            "--http", "techanal.http_server:ApiHttpToolsProtocol", "--ws", "websockets-sansio",
            "--lifespan", "off", "--no-access-log",
        ]  # fmt: skip
    process = subprocess.Popen(  # noqa: S603 (the venv's server)
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    for _ in range(300):
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/health/")
            conn.getresponse().read()
            break
        time.sleep(0.1)
    else:
        raise SystemExit("the web server did not start")
    time.sleep(2 if server == "uvicorn" else 0)  # every worker up, not just the first to answer
    return process


def web_processes(pid: int) -> list[int]:
    """The processes that serve requests: uvicorn's workers (children of its supervisor), else pid."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [int(c) for c in children.read_text().split()] if children.exists() else []
    return found or [pid]


def web_rss(pid: int) -> tuple[float, float]:
    """The largest (VmRSS, VmHWM) among the web processes, in MB."""
    values = [rss_mb(p) for p in web_processes(pid)]
    return max(v[0] for v in values), max(v[1] for v in values)


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Vm")
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def run_clients(port: int, token: str, body: bytes, clients: int, per_client: int, max_s: float) -> dict[str, Any]:
    latencies: list[float] = []
    server_ms: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + max_s
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, theirs = [], []
        for _ in range(per_client):
            if time.monotonic() > deadline:
                break
            began = time.perf_counter()
            conn.request("POST", f"/api/model-management/models/{MODEL}/predict", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            mine.append((time.perf_counter() - began) * 1000)
            if response.status != 200:
                with lock:
                    errors.append(f"{response.status}: {payload[:200]!r}")
            else:
                theirs.append(json.loads(payload)["latencyMs"])
        conn.close()
        with lock:
            latencies.extend(mine)
            server_ms.extend(theirs)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "throughput": len(latencies) / elapsed,
        "server_p50": statistics.median(server_ms) if server_ms else float("nan"),
        "latencies": latencies,
    }


BREAKDOWN = """
import os, sys, json, gc
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS'):
            return int(line.split()[1]) / 1024
steps = [('python interpreter', rss())]
import django; django.setup(); steps.append(('django.setup() (settings, apps, models)', rss()))
from techanal.asgi import application; import models_mgmt.api.urls, techanal.urls
steps.append(('ASGI app + URLconf (DRF, channels, guardian, simplejwt, spectacular)', rss()))
import uvicorn, uvloop, httptools; steps.append(('uvicorn, uvloop, httptools (the server)', rss()))
import numpy; steps.append(('numpy', rss()))
import onnxruntime; steps.append(('onnxruntime import', rss()))
from models_mgmt.monitoring import serving
served = serving.session_for(1, 'v', 'c', sys.argv[1])
steps.append(('one ONNX InferenceSession', rss()))
row = numpy.zeros(len(serving.FEATURE_NAMES))
for _ in range(200): served.run(row[None, :])
steps.append(('200 inferences', rss()))
steps.append(('(not here: pandas +32.6 MB, scipy.stats +55.9 MB -- no longer imported by predict)', rss()))
print(json.dumps(steps))
"""


def breakdown(env: dict[str, str], artifact: str) -> list[tuple[str, float]]:
    done = subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, "-c", BREAKDOWN, artifact], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        print(done.stderr[-2000:])
        return []
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per client count (split among clients)")
    parser.add_argument("--clients", default="1,16")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="cap per client count")
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 1, help="uvicorn worker processes")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    daphne = None
    try:
        env = environment(work)
        print("preparing: migrate, import sp500, train 2 epochs on 2013-2018, activate ...", flush=True)
        token, window = prepare()
        from models_mgmt.models import ModelVersion

        artifact = ModelVersion.objects.get(model__name=MODEL).artifact_path
        port = free_port()
        daphne = start_server(env, port, args.procs, args.server)
        load = os.getloadavg()
        served_by = f"{args.server} ({len(web_processes(daphne.pid))} web process(es)) on 127.0.0.1:{port}"
        print(f"{served_by}; idle RSS {web_rss(daphne.pid)[0]:.1f} MB per process (largest); "
              f"load average {load[0]:.2f} {load[1]:.2f}")  # fmt: skip
        body = json.dumps({"bars": window}).encode()
        warm = run_clients(port, token, body, 1, 50, args.max_seconds)
        print(
            f"warm-up: {warm['requests']} requests, errors {len(warm['errors'])}; RSS {web_rss(daphne.pid)[0]:.1f} MB"
        )
        results = []
        for clients in [int(c) for c in args.clients.split(",")]:
            result = run_clients(port, token, body, clients, max(1, args.requests // clients), args.max_seconds)
            result["rss"], result["hwm"] = web_rss(daphne.pid)
            results.append(result)
            print(
                f"{clients:>2} client(s): {result['requests']} requests, errors {len(result['errors'])}  "
                f"p50 {result['p50']:.2f} ms  p95 {result['p95']:.2f} ms  p99 {result['p99']:.2f} ms  "
                f"throughput {result['throughput']:.1f} req/s  (server latencyMs p50 {result['server_p50']:.2f})  "
                f"RSS {result['rss']:.1f} MB (peak {result['hwm']:.1f})"
            )
            for error in result["errors"][:3]:
                print("   error:", error)
        load = os.getloadavg()
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        sixteen = next((r for r in results if r["clients"] == 16), None)
        if sixteen:
            verdict = "PASS" if sixteen["throughput"] >= TARGET_16_RPS else "MISS"
            print(f"target >= {TARGET_16_RPS:.0f} req/s at 16 clients: {sixteen['throughput']:.1f} req/s {verdict}")
        one = next((r for r in results if r["clients"] == 1), None)
        if one:
            verdict = "PASS" if one["p95"] <= TARGET_P95_MS else "MISS"
            print(f"target p95 <= {TARGET_P95_MS} ms at 1 client: {one['p95']:.2f} ms {verdict}")
        steady = max(r["rss"] for r in results)
        print(f"target RSS <= {TARGET_RSS_MB:.0f} MB per web process after the load: {steady:.1f} MB "
              f"{'PASS' if steady <= TARGET_RSS_MB else 'MISS'}")  # fmt: skip
        if steady > TARGET_RSS_MB:
            print("what takes the memory (RSS after each step, fresh interpreter, same settings):")
            previous = 0.0
            for name, value in breakdown(env, artifact):
                print(f"  {value:7.1f} MB  (+{value - previous:6.1f})  {name}")
                previous = value
    finally:
        if daphne is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(daphne.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                daphne.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
