"""One rank of a distributed run: what torchrun starts on every host.

    python -m torch.distributed.run --nproc-per-node N --nnodes M --rdzv-backend c10d \\
        --rdzv-endpoint HOST:PORT --max-restarts R -m models_mgmt.engine.ddp_main WORK_DIR

`run_distributed` (distributed.py) writes the inputs to WORK_DIR/ddp/ (inputs.json, bars.pkl,
init_weights.pt) and reads back what rank 0 writes there: events.jsonl (one JSON object a line:
phases, progress, epochs) and result.json (the TrainingResult), and error.json, which any rank writes
for a ValueError (bad data or settings) so the launcher raises it as run_training would. Every rank trains on its shard
(trainer.DistributedDataParallel); rank 0 alone reports, checkpoints WORK_DIR/checkpoint.pt every
epoch (the in-process format) and, once the group has left, evaluates, backtests and exports
WORK_DIR/artifact in one process. A restarted group (torchrun's --max-restarts) resumes from that
checkpoint. A stop is the file WORK_DIR/ddp/stop, which the ranks poll before every batch.

A rank never outlives what started it: the kernel kills it when its torchrun agent dies
(lifeline.die_with_parent), a watchdog thread kills it when the launcher (TECHANAL_DDP_LAUNCHER_PID,
set by run_distributed on its own host) is gone, and the launcher, as it ends the group, kills any
process left with this module and the work dir on its command line.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from .checkpoint import CHECKPOINT_NAME
from .lifeline import die_with_parent
from .reporting import EpochReport, ProgressReport
from .spec import TrainingSpec

DDP_DIR = "ddp"
INPUTS = "inputs.json"
BARS = "bars.pkl"
INIT_WEIGHTS = "init_weights.pt"
EVENTS = "events.jsonl"
RESULT = "result.json"
ERROR = "error.json"  # a rank's ValueError (bad data or settings): {"type", "message"}
STOP = "stop"
PIDS = "pids"
LAUNCHER_PID_ENV = "TECHANAL_DDP_LAUNCHER_PID"
# A peer that does not answer a collective for this long fails the group (torchrun then restarts it).
COLLECTIVE_TIMEOUT = timedelta(minutes=10)


def _die_with_parents() -> None:
    """Kill this rank when its torchrun agent dies (Linux), and when the launcher's pid is gone."""
    if not die_with_parent(signal.SIGKILL, os.getppid()):  # the agent died before the signal was armed
        os._exit(1)
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if not launcher:
        return

    def watch(pid: int) -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os.kill(os.getpid(), signal.SIGKILL)
            except PermissionError:  # alive, another user's (cannot be ours; keep watching)
                pass
            time.sleep(1.0)

    threading.Thread(target=watch, args=(int(launcher),), name="launcher-watchdog", daemon=True).start()


class Events:
    """Rank 0's reports, one JSON line each, appended and flushed so the launcher can tail them."""

    def __init__(self, path: Path, attempt: int) -> None:
        self.path, self.attempt = path, attempt
        if attempt > 0:  # a rank 0 that died mid-write left a partial line: end it, whatever follows is whole
            with self.path.open("a") as stream:
                stream.write("\n")

    def emit(self, kind: str, **payload: Any) -> None:
        line = json.dumps({"kind": kind, "attempt": self.attempt, **payload})
        with self.path.open("a") as stream:
            stream.write(line + "\n")

    def phase(self, name: str) -> None:
        self.emit("phase", phase=name)

    def progress(self, report: ProgressReport) -> None:
        self.emit("progress", report=asdict(report))

    def epoch(self, report: EpochReport) -> None:
        self.emit("epoch", report=asdict(report))


def _attempt_store(rank: int, attempt: int) -> Any:
    """torchrun's store, under a key prefix of this attempt: a restarted group reading the keys of the
    one before it was handed a dead rank's address and failed to connect."""
    import torch.distributed as dist  # heavy: a rank trains

    # torchrun's agent hosts the store (TORCHELASTIC_USE_AGENT_STORE); otherwise rank 0 does
    hosts = rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() != "true"
    world = int(os.environ["WORLD_SIZE"])
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, is_master=hosts, timeout=COLLECTIVE_TIMEOUT
    )
    return dist.PrefixStore(f"techanal/attempt-{attempt}/", store)


def _spec(data: dict[str, Any]) -> TrainingSpec:
    return TrainingSpec(**{**data, "hidden_sizes": tuple(data["hidden_sizes"])})


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(data))
    os.replace(temp, path)


def main(work_dir: str) -> int:
    _die_with_parents()
    ddp = Path(work_dir) / DDP_DIR
    (ddp / PIDS).mkdir(exist_ok=True)
    # host-rank-pid: the group has begun (a stop no longer needs to end it in rendezvous); tests find ranks by it
    (ddp / PIDS / f"{socket.gethostname()}-rank{os.environ['RANK']}-{os.getpid()}").write_text(str(os.getpid()))
    try:
        return _rank(Path(work_dir))
    except ValueError as exc:
        # Bad data or settings (a checkpoint of another run, say): the launcher ends the group and
        # raises it as run_training would, rather than torchrun restarting a group that fails again.
        if not (ddp / ERROR).exists():
            _write_json_atomically(ddp / ERROR, {"type": type(exc).__name__, "message": str(exc)})
        raise


def _rank(work: Path) -> int:
    import pandas as pd  # heavy: a rank loads the bars
    import torch  # heavy: a rank trains
    import torch.distributed as dist  # heavy: a rank trains

    from .trainer import DistributedDataParallel, fit  # heavy: the trainer pulls torch
    from .training import conclude_training, initial_weights  # heavy: evaluation and export

    ddp = work / DDP_DIR
    inputs = json.loads((ddp / INPUTS).read_text())
    spec = _spec(inputs["spec"])
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))

    if inputs["device"] == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    dist.init_process_group(
        backend,
        store=_attempt_store(rank, attempt),
        rank=rank,
        world_size=int(os.environ["WORLD_SIZE"]),
        timeout=COLLECTIVE_TIMEOUT,
    )
    reporting = rank == 0
    events = Events(ddp / EVENTS, attempt) if reporting else None
    started = time.perf_counter()
    if events is not None:
        events.phase("building_features")
    data = pd.read_pickle(ddp / BARS)  # noqa: S301 -- written by this job's launcher into its own work dir
    split = spec.split(data)
    checkpoint = work / CHECKPOINT_NAME
    # A restarted group resumes where its last checkpoint left it; a first attempt where the job said.
    resume_from = checkpoint if attempt > 0 and checkpoint.exists() else inputs.get("resume_from")
    if resume_from is not None and Path(resume_from).is_dir():
        resume_from = Path(resume_from) / CHECKPOINT_NAME
    init = inputs.get("init_weights")
    starting = initial_weights(init) if init else None
    stop_file = ddp / STOP

    def should_stop() -> bool:
        return stop_file.exists()

    if events is not None:
        events.phase("training")
    try:
        outcome = fit(
            spec,
            split,
            checkpoint_path=checkpoint if reporting else None,
            init_weights=starting,
            resume_from=resume_from,
            on_progress=events.progress if events else None,
            on_epoch=events.epoch if events else None,
            should_stop=should_stop,
            device=device,
            parallel=DistributedDataParallel(device, spec.seed),
        )
        # Every rank leaves the group together: a rank that left alone made rank 0 abort at exit.
        dist.barrier()
    finally:
        dist.destroy_process_group()
    if not reporting:
        return 0
    result = conclude_training(
        spec,
        data=data,
        split=split,
        outcome=outcome,
        starting=starting,
        work=work,
        on_phase=events.phase if events else None,
        should_stop=should_stop,
        started=started,
    )
    _write_json_atomically(ddp / RESULT, asdict(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
