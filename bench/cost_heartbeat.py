"""What writing a job's cost adds to each heartbeat (issue 15 part 3).

Run from the repository root (about 10 s)::

    .venv/bin/python bench/cost_heartbeat.py [--beats 500]

A throwaway SQLite database (the embedded default) and one running job; `JobProgress.emit()` (the
heartbeat: progress row, heartbeat, feed event) is timed `--beats` times without a meter, then
`--beats` times with one (the same plus the meter's sample and the JobCost upsert), alternating in
blocks of 50 so a change in machine load hits both alike. Prints the median and p95 of each and the
difference. A benchmark, not a test: it never fails.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.training_overhead import Fixture, configure_environment  # noqa: E402

BLOCK = 50


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beats", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        work = Path(tmp)
        configure_environment(work)
        fixture = Fixture(work)
        from models_mgmt.engine.metering import Meter
        from models_mgmt.models import JobCost
        from models_mgmt.services.training_jobs import training_job_claim
        from models_mgmt.training.progress import JobProgress

        job = fixture.start(fixture.model("bench-cost"), {"epochs": 1})
        claimed = training_job_claim(job_id=job.pk)
        assert claimed is not None
        meter = Meter()
        meter.start()
        plain = JobProgress(job_id=job.pk, worker=claimed.worker)
        costed = JobProgress(job_id=job.pk, worker=claimed.worker, meter=meter)
        timings: dict[str, list[float]] = {"without cost": [], "with cost": []}
        for block in range(0, args.beats, BLOCK):
            for name, progress in (("without cost", plain), ("with cost", costed))[:: 1 if block % 2 else -1]:
                for _ in range(min(BLOCK, args.beats - block)):
                    started = time.perf_counter()
                    progress.emit()
                    timings[name].append(time.perf_counter() - started)
        assert JobCost.objects.filter(job=job).exists()
        print(f"heartbeat (JobProgress.emit) on SQLite, {args.beats} beats each, load {os.getloadavg()[0]:.2f}")
        for name, values in timings.items():
            print(f"  {name:13s} median {statistics.median(values) * 1000:6.2f} ms   p95 {p95(values) * 1000:6.2f} ms")
        delta = statistics.median(timings["with cost"]) - statistics.median(timings["without cost"])
        print(f"  cost write adds {delta * 1000:.2f} ms per heartbeat (median)")


if __name__ == "__main__":
    main()
