"""bin/serve (what `make run` ends in) stops on SIGTERM or SIGINT to its whole process group within
10 s, leaving no process behind and the running job requeued, not lost (issue 11, item 10).

It used to share its process group with qcluster: `kill -TERM -- -<pgid>` killed django-q2's
sentinel outright and left the cluster's parent waiting on a lock forever.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from models_mgmt.choices import JobStatus, Role
from models_mgmt.models import TrainingJob
from models_mgmt.services import dataset_import_builtin
from tests.factories import AIModelFactory, UserFactory, grant
from tests.live import LiveProcesses, free_port, wait_for

pytestmark = pytest.mark.slow
LONG = {"epochs": 400, "batchSize": 8, "earlyStoppingPatience": 0, "startDate": "2013-01-01"}


def descendants(root: int) -> set[int]:
    """Every process below `root` now (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited (its parent, gone too, no longer reaps it)


def job_in(job_id: int, *, training: bool):
    def check():
        job = TrainingJob.objects.get(pk=job_id)
        if job.status != JobStatus.RUNNING or not job.worker:
            return None
        return job if not training or job.epoch >= 1 else None

    return check


@pytest.mark.parametrize(
    ("signum", "moment"),
    [(signal.SIGTERM, "training"), (signal.SIGINT, "training"), (signal.SIGTERM, "claimed")],
    ids=["SIGTERM-while-training", "SIGINT-while-training", "SIGTERM-while-preparing"],
)
def test_serve_stops_cleanly_on_a_signal_to_its_process_group(
    transactional_db, api, tmp_path, settings, signum, moment
):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    dataset = dataset_import_builtin(name="sp500")
    model = AIModelFactory(name="serve-model", default_dataset=dataset)
    grant(model.owner, model, Role.MAINTAINER)
    trainer = UserFactory(role=Role.TRAINER)
    grant(trainer, model, Role.TRAINER)
    live = LiveProcesses(
        tmp_path / "artifacts",
        tmp_path / "serve.log",
        PYTHON=sys.executable,
        PORT=str(free_port()),
        BIND_ADDRESS="127.0.0.1",
        TRAINING_WORKERS="2",
    )
    try:
        serve = live.start(["bin/serve"])
        response = api(trainer).post(f"/api/model-management/models/{model.name}/fine-tune", LONG, format="json")
        assert response.status_code == 202, response.data
        job = TrainingJob.objects.get(pk=response.data["id"])
        wait_for(job_in(job.pk, training=moment == "training"), 180, f"the job to be {moment}", live.output)
        processes = descendants(serve.pid)
        assert len(processes) >= 5, processes  # daphne, qcluster, its sentinel, workers, pusher, monitor
        started = time.monotonic()
        os.killpg(serve.pid, signum)  # what `kill -TERM -- -<pgid>` and Ctrl-C do
        serve.wait(timeout=60)
        took = time.monotonic() - started
        survivors = {pid for pid in processes if running(pid)}
    finally:
        live.stop()
    print(f"bin/serve stopped in {took:.1f} s after {signal.Signals(signum).name} while {moment}")
    assert not survivors, f"left running: {survivors}\n{live.output()[-3000:]}"
    assert took < 10, live.output()[-3000:]
    assert "killing what is left" not in live.output()  # stopped in order, not by the last resort
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED, (job.status, job.error, live.output()[-3000:])
    assert job.attempts == 0  # a shutdown is not a failed attempt: the next start resumes it
    assert "job.requeued" in set(job.model.audit_events.values_list("action", flat=True))
