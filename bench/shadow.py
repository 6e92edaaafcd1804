"""Shadow-scoring overhead: predict p95 with and without a running shadow experiment, in the same
server run (issue 15: shadow scoring adds at most 10 % to predict p95).

Run from the repository root, alone::

    .venv/bin/python bench/shadow.py [--requests 600] [--rounds 3] [--procs 1]

Sets up a throwaway SQLite database and artifacts directory (removed at the end), trains two small
real versions (2 epochs each on S&P 500 2013-2018), activates v1.0.0, starts the production web
server (uvicorn, as bench/predict.py does) and drives it with one keep-alive client sending a
100-bar window. Phases alternate, `--rounds` times: no experiment, then an experiment shadowing
v1.1.0 (started and stopped through the API), each after a short warm-up, so a drift in machine
load touches both alike. Prints client-side p50/p95 of each condition over all its rounds, the
ratio of the p95s (target <= 1.10), and the load average (`uptime`) before and after. A
benchmark, not a test: it prints PASS/MISS and never fails on a miss.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.figures import percentile  # noqa: E402 - after the path set-up above
from bench.predict import MODEL, environment, free_port, prepare, run_clients, start_server, web_processes  # noqa: E402

TARGET_RATIO = 1.10


def call(port: int, token: str, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request(method, f"/api/model-management/{path}", body=json.dumps(body or {}).encode(), headers=headers)
    response = conn.getresponse()
    payload = json.loads(response.read() or b"null")
    conn.close()
    if response.status >= 300:
        raise SystemExit(f"{method} {path}: {response.status} {payload}")
    return payload


def challenger_run_us(window: list[dict[str, Any]], runs: int = 2000) -> tuple[float, float]:
    """p50 and p95 (microseconds) of what shadow scoring adds to a request: one session.run of the
    challenger (plus rounding its outputs) on the feature row predict already computed."""
    import numpy as np

    from models_mgmt.models import ModelVersion
    from models_mgmt.monitoring import serving

    challenger = ModelVersion.objects.get(model__name=MODEL, version="v1.1.0")
    served = serving.session_for(challenger.model_id, challenger.version, challenger.checksum, challenger.artifact_path)
    row = serving.feature_row({c: np.asarray([b[c] for b in window]) for c in serving.FEATURE_INPUTS}).reshape(1, -1)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        outputs = served.run(row)[0]
        {task: round(float(p), 6) for task, p in zip(served.tasks, outputs, strict=True)}
        times.append((time.perf_counter() - began) * 1e6)
    return percentile(times, 50), percentile(times, 95)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()  # noqa: S607


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=600, help="requests per condition per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--procs", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    server = None
    try:
        env = environment(work)
        print("preparing: migrate, import sp500, train 2 versions (2 epochs on 2013-2018), activate v1.0.0 ...")
        token, window = prepare(versions=2)
        port = free_port()
        server = start_server(env, port, args.procs)
        print(f"uvicorn ({len(web_processes(server.pid))} web process(es)) on 127.0.0.1:{port}")
        print(f"uptime before: {uptime()}")
        body = json.dumps({"bars": window}).encode()
        latencies: dict[str, list[float]] = {"without": [], "with": []}
        errors = 0
        for round_ in range(1, args.rounds + 1):
            for condition in ("without", "with"):
                experiment = None
                if condition == "with":
                    experiment = call(port, token, "POST", f"models/{MODEL}/experiments", {"challenger": "v1.1.0"})
                run_clients(port, token, body, 1, 30, 60.0)  # warm-up: sessions, caches
                result = run_clients(port, token, body, 1, args.requests, 300.0)
                errors += len(result["errors"])
                latencies[condition].extend(result.pop("latencies"))
                print(
                    f"round {round_} {condition:>7} experiment: {result['requests']} requests  "
                    f"p50 {result['p50']:.2f} ms  p95 {result['p95']:.2f} ms"
                )
                if experiment is not None:
                    call(port, token, "POST", f"experiments/{experiment['id']}/stop")
                    from models_mgmt.models import Prediction

                    shadowed = Prediction.objects.filter(
                        experiment_id=experiment["id"], challenger_outputs__isnull=False
                    ).count()
                    print(f"   the ledger holds the challenger's outputs for {shadowed} of these requests (+ warm-up)")
        print(f"uptime after: {uptime()}")
        p95 = {c: percentile(v, 95) for c, v in latencies.items()}
        p50 = {c: percentile(v, 50) for c, v in latencies.items()}
        ratio = p95["with"] / p95["without"]
        for condition in ("without", "with"):
            print(
                f"{condition:>7} experiment: {len(latencies[condition])} requests  p50 {p50[condition]:.2f} ms  "
                f"p95 {p95[condition]:.2f} ms"
            )
        shadow_us = challenger_run_us(window)
        print(
            f"the added work itself, in this process: the challenger's session.run on one feature row "
            f"p50 {shadow_us[0]:.1f} us, p95 {shadow_us[1]:.1f} us "
            f"({shadow_us[1] / 1000 / p95['without'] * 100:.2f} % of the p95 without)"
        )
        verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
        print(f"p95 ratio with/without shadow: {ratio:.3f} (target <= {TARGET_RATIO:.2f}) {verdict}; errors {errors}")
    finally:
        if server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
