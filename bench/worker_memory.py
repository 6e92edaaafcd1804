"""Training worker memory: peak RSS above the worker's idle baseline during a demo job (issue 13.5).

Run from the repository root, alone (about 1-2 minutes)::

    .venv/bin/python bench/worker_memory.py [--epochs 20] [--jobs 2]

A throwaway SQLite database with the sp500 dataset and a fresh `manage.py qcluster` (2 workers,
`TRAINING_WORKER_WARMUP` on as in production, so each worker has imported torch, pandas and
onnxruntime and done its first ONNX export before any job). Once every process of the cluster has
kept its RSS for 3 s (warm and idle), that is each process's baseline; then the demo job runs (the
job `seed_demo` trains: the sp500 model's first version, 1999-2012, `--epochs` epochs, default
config otherwise) while every process of the cluster is sampled from /proc every 20 ms. Reported:
the baseline and peak RSS of the worker that ran the job (`TrainingJob.worker`), peak - baseline
against the seed's "< 100 MB for engine operations", and the same for the whole cluster. The
second job runs on a worker that has trained before (what a long-running worker looks like).
A benchmark, not a test: it prints PASS/MISS with the load average and never fails on a miss.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.training_overhead import Fixture, configure_environment, stop_group, wait_until  # noqa: E402

TARGET_MB = 100.0
DEMO_WINDOW = ("1999-01-01", "2012-12-31")  # seed_demo's FIRST_VERSION_WINDOW


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except ProcessLookupError:
                continue
    return pids


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Sampler:
    """Every process of the cluster's group, every `interval` seconds: the peak RSS per pid."""

    def __init__(self, pgid: int, interval: float = 0.02):
        self.pgid, self.interval = pgid, interval
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in group_pids(self.pgid):
                value = rss_mb(pid)
                if value is not None and value > self.peaks.get(pid, 0.0):
                    self.peaks[pid] = value
            time.sleep(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def settled(pgid: int, hold_s: float = 3.0, timeout: float = 300.0) -> dict[int, float]:
    """Each process's RSS once none of them moved more than 1 MB for `hold_s` seconds."""
    deadline, last, since = time.time() + timeout, None, time.time()
    while time.time() < deadline:
        now = {pid: v for pid in group_pids(pgid) if (v := rss_mb(pid)) is not None}
        if last is None or now.keys() != last.keys() or any(abs(now[p] - last[p]) > 1.0 for p in now):
            last, since = now, time.time()
        elif time.time() - since >= hold_s:
            return now
        time.sleep(0.25)
    raise SystemExit("the cluster's memory never settled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    env = configure_environment(work)
    cluster = None
    try:
        fixture = Fixture(work)
        from models_mgmt.models import TrainingJob

        log_path = work / "qcluster.log"
        log = log_path.open("ab")
        cluster = subprocess.Popen(  # noqa: S603 -- our own interpreter and manage.py
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env={**os.environ, **env},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        load = os.getloadavg()
        print(
            f"worker_memory: {dt.datetime.now():%Y-%m-%d %H:%M}  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        model = fixture.model("bench-mem")
        for n in range(args.jobs):
            baseline = settled(cluster.pid)
            body = {"epochs": args.epochs, "startDate": DEMO_WINDOW[0], "endDate": DEMO_WINDOW[1]}
            with Sampler(cluster.pid) as sampler:
                job = fixture.start(model, body)
                row = wait_until(
                    lambda job_id=job.pk: (r := TrainingJob.objects.get(pk=job_id)).status
                    in ("succeeded", "failed", "stopped")
                    and r,
                    600,
                    interval=0.2,
                )
            if not row:
                raise SystemExit(f"job {job.pk} did not finish:\n{log_path.read_text(errors='replace')[-3000:]}")
            worker_pid = int(row.worker.rsplit(":", 1)[1])
            base, peak = baseline.get(worker_pid, float("nan")), sampler.peaks.get(worker_pid, float("nan"))
            group_base = sum(baseline.values())
            group_peak_sum = sum(max(sampler.peaks.get(p, 0.0), v) for p, v in baseline.items())
            verdict = "PASS" if peak - base <= TARGET_MB else "MISS"
            print(f"  job {n + 1} ({'first job of the worker' if n == 0 else 'worker trained before'}): {row.status}, "
                  f"{args.epochs} epochs, {(row.finished_at - row.started_at).total_seconds():.1f} s")  # fmt: skip
            print(f"     worker pid {worker_pid}: idle {base:.1f} MB, peak {peak:.1f} MB, "
                  f"peak - idle {peak - base:.1f} MB  {verdict} (target <= {TARGET_MB:.0f} MB)")  # fmt: skip
            print(f"     whole cluster ({len(baseline)} processes): idle {group_base:.1f} MB, "
                  f"sum of peaks {group_peak_sum:.1f} MB")  # fmt: skip
        load = os.getloadavg()
        print(f"  load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        log.close()
    finally:
        if cluster is not None:
            stop_group(cluster)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
