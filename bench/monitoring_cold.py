"""Cold and warm GET metrics / GET drift on the demo data, against a real daphne.

Run from the repository root (about 2 minutes on 2 cores)::

    .venv/bin/python bench/monitoring_cold.py [--epochs 5] [--warm 10]

Sets up a throwaway SQLite database and artifacts folder, runs `seed_demo` (trains v1.0.0 of both
demo models), starts `daphne techanal.asgi:application` on a free port and, as the `demo` user:

* cold: the first GET metrics and the first GET drift of `techanal-signal` after the server started
  (nothing imported in the server; the default-window report warmed by `drift_reports_warm`, as
  the qcluster of `make run` does after seed_demo's activations), then a window nobody computed;
* warm: the same calls repeated (`--warm` times, median);
* after new bars: one bar appended through POST datasets/sp500/bars, then GET drift again (the
  cache must not serve the old report) and once more (warm again).

Targets (issue 11.11): cold within 1 s, warm within 300 ms. A benchmark, not a test: it prints
PASS/MISS with the machine's load average and never fails on a miss.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.predict import environment, free_port  # noqa: E402 - after the path set-up above

MODEL = "techanal-signal"
COLD_TARGET_MS, WARM_TARGET_MS = 1000.0, 300.0


def call(port: int, method: str, path: str, token: str | None = None, body: dict | None = None) -> tuple[float, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    began = time.perf_counter()
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    payload = json.loads(response.read() or b"null")
    elapsed = (time.perf_counter() - began) * 1000
    conn.close()
    if response.status >= 400:
        raise RuntimeError(f"{method} {path}: {response.status} {payload}")
    return elapsed, payload


def wait_until_up(port: int, deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/health/")
            conn.getresponse().read()  # any answer (503 = no worker running here) means it is up
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("daphne did not start")


def verdict(value: float, target: float) -> str:
    return f"{value:8.1f} ms  {'PASS' if value <= target else 'MISS'} (target {target:.0f} ms)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the demo versions")
    parser.add_argument("--warm", type=int, default=10, help="warm repetitions")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-monitoring-"))
    env = {**os.environ, **environment(work), "DEMO_PASSWORD": "bench-password"}
    python = str(ROOT / ".venv" / "bin" / "python")
    try:
        for step in (["migrate", "--noinput"], ["createcachetable"]):  # as bin/run does
            subprocess.run([python, "manage.py", *step], cwd=ROOT, env=env, check=True, capture_output=True)  # noqa: S603
        seed = [python, "manage.py", "seed_demo", "--epochs", str(args.epochs)]
        subprocess.run(seed, cwd=ROOT, env=env, check=True, capture_output=True)  # noqa: S603
        # What the qcluster of `make run` does after seed_demo's activations: the drift_reports_warm task.
        warm = [python, "manage.py", "shell", "-c", "from models_mgmt.tasks import drift_reports_warm as w; w()"]
        subprocess.run(warm, cwd=ROOT, env=env, check=True, capture_output=True)  # noqa: S603
        port = free_port()
        daphne = [
            str(ROOT / ".venv" / "bin" / "daphne"),
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "techanal.asgi:application",
        ]
        server = subprocess.Popen(daphne, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        try:
            wait_until_up(port)
            _, tokens = call(port, "POST", "/api/auth/token/", body={"username": "demo", "password": "bench-password"})
            token = tokens["access"]
            base = f"/api/model-management/models/{MODEL}"
            load = os.getloadavg()
            print(f"monitoring_cold: {time.strftime('%Y-%m-%d %H:%M')}  load average {load[0]:.2f} {load[1]:.2f}")
            cold_metrics, _ = call(port, "GET", f"{base}/metrics", token)
            cold_drift, report = call(port, "GET", f"{base}/drift", token)
            uncached, _ = call(port, "GET", f"{base}/drift?start=2018-06-01&end=2018-10-31", token)
            warm_metrics = statistics.median(call(port, "GET", f"{base}/metrics", token)[0] for _ in range(args.warm))
            warm_drift = statistics.median(call(port, "GET", f"{base}/drift", token)[0] for _ in range(args.warm))
            _, dataset = call(port, "GET", "/api/model-management/datasets/sp500", token)
            last = dataset["recentBars"][-1]
            next_day = dt.date.fromisoformat(dataset["lastDate"]) + dt.timedelta(days=3)
            bar = {**{k: last[k] for k in ("open", "high", "low", "close", "volume")}, "date": next_day.isoformat()}
            call(port, "POST", "/api/model-management/datasets/sp500/bars", token, {"bars": [bar]})
            after_bars, fresh = call(port, "GET", f"{base}/drift", token)
            warm_again = statistics.median(call(port, "GET", f"{base}/drift", token)[0] for _ in range(3))
            rows = [
                ("GET metrics cold", verdict(cold_metrics, COLD_TARGET_MS), ""),
                (
                    "GET drift   cold",
                    verdict(cold_drift, COLD_TARGET_MS),
                    f"cache {report['cache']}: warmed by a worker",
                ),
                ("GET drift   new window", verdict(uncached, COLD_TARGET_MS), "computed in the web process"),
                ("GET metrics warm (p50)", verdict(warm_metrics, WARM_TARGET_MS), ""),
                ("GET drift   warm (p50)", verdict(warm_drift, WARM_TARGET_MS), ""),
                ("GET drift after a bar", verdict(after_bars, COLD_TARGET_MS), f"cache {fresh['cache']}, no worker"),
                ("GET drift   warm again", verdict(warm_again, WARM_TARGET_MS), ""),
            ]
            for label, figure, note in rows:
                print(f"  {label:<24}{figure}  {note}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
