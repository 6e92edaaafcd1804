"""Gaps in a job's progress feed on the embedded default with both cores busy (issue 11.4).

Run from the repository root (about 2 minutes)::

    .venv/bin/python bench/progress_gaps.py [--jobs 2] [--epochs 10] [--burners 2]

A throwaway SQLite database and the sp500 dataset; `--burners` processes spin on the CPU (both
cores busy), a fresh `manage.py qcluster` (2 workers) runs the jobs one after another (the first
on a just-started worker). For each job it reads the job's events from the ProgressEvent table
and prints: the largest gap between consecutive events while the job was alive (from its claim to
its terminal event), the time from claim to the first `training` event, and when each phase was
first reported. Target: no gap over 1 s. A benchmark, not a test: it prints PASS/MISS with the
load average and never fails on a miss.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.training_overhead import Fixture, configure_environment, stop_group, wait_until  # noqa: E402

TARGET_GAP_S = 1.0
BURN = "while True: pass"


def timeline(job_id: int) -> dict[str, Any]:
    from models_mgmt.models import ProgressEvent

    events = [e.payload for e in ProgressEvent.objects.filter(job_id=job_id).order_by("seq")]
    stamps = [(dt.datetime.fromisoformat(e["timestamp"]), e) for e in events]
    alive = [(t, e) for t, e in stamps if e["status"] != "queued"]
    claimed = alive[0][0]
    gaps = [(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(alive)]
    worst = max(range(len(gaps)), key=gaps.__getitem__) if gaps else None
    phases: dict[str, float] = {}
    for t, e in alive:
        phases.setdefault(e["phase"], (t - claimed).total_seconds())
    return {
        "events": len(alive),
        "max_gap": gaps[worst] if worst is not None else 0.0,
        "worst_between": (alive[worst][1]["phase"], alive[worst + 1][1]["phase"]) if worst is not None else None,
        "to_training": phases.get("training"),
        "phases": phases,
        "alive_s": (alive[-1][0] - claimed).total_seconds(),
        "final": alive[-1][1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--burners", type=int, default=2, help="CPU-bound processes beside the cluster")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-gaps-"))
    env = configure_environment(work)
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(args.burners)]  # noqa: S603
    cluster = None
    try:
        fixture = Fixture(work)
        from models_mgmt.models import TrainingJob

        log_path = work / "qcluster.log"
        log = log_path.open("ab")
        cluster = subprocess.Popen(  # noqa: S603 -- our own interpreter and manage.py
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env={**os.environ, **env, "LOG_LEVEL": "INFO"},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        load = os.getloadavg()
        print(f"progress_gaps: {dt.datetime.now():%Y-%m-%d %H:%M}  {args.burners} CPU burners  "
              f"load average {load[0]:.2f} {load[1]:.2f}")  # fmt: skip
        model = fixture.model("bench-gaps")
        for n in range(args.jobs):
            job = fixture.start(model, {"epochs": args.epochs, "earlyStoppingPatience": 0, "startDate": "2013-01-01"})
            row = wait_until(
                lambda job_id=job.pk: (r := TrainingJob.objects.get(pk=job_id)).status
                in ("succeeded", "failed", "stopped")
                and r,
                600,
                interval=0.2,
            )
            if not row:
                raise SystemExit(f"job {job.pk} did not finish:\n{log_path.read_text(errors='replace')[-3000:]}")
            t = timeline(job.pk)
            final = t["final"]
            verdict = "PASS" if t["max_gap"] <= TARGET_GAP_S else "MISS"
            between = " -> ".join(t["worst_between"] or ())
            print(f"  job {n + 1} ({'fresh worker' if n == 0 else 'warm worker'}): {row.status}, "
                  f"{t['events']} events over {t['alive_s']:.1f} s alive; largest gap {t['max_gap']:.2f} s "
                  f"({between}) {verdict} (target {TARGET_GAP_S} s)")  # fmt: skip
            print("     first report of each phase after the claim: "
                  + ", ".join(f"{p} {s:.2f}s" for p, s in t["phases"].items()))  # fmt: skip
            print(f"     final event: epoch {final['epoch']}/{final['totalEpochs']}, progress {final['progress']}, "
                  f"eta {final['eta']}, phase {final['phase']}")  # fmt: skip
        log.close()
    finally:
        if cluster is not None:
            stop_group(cluster)
        for burner in burners:
            burner.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
