"""Training through a torchrun group: `run_distributed`, with run_training's contract and callbacks.

The ranks are `ddp_main.py`; rank 0 reports, checkpoints and exports (docs/training.md#distributed-
training). Where a run trains and the checks of a group's shape (`DistributedSettings`,
`resolve_device`, `device_label`) are in `placement.py`, which the web process imports without this
module's imports. `DistributedError` is what a process group that failed past its restarts raises;
its text ends with torchrun's last log lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ddp_main
from .checkpoint import CHECKPOINT_NAME
from .placement import DistributedSettings, world_problem
from .reporting import EpochReport, ProgressReport
from .training import PHASES, TrainingResult

if TYPE_CHECKING:
    from .spec import TrainingSpec

logger = logging.getLogger(__name__)

# After a stop, how long the launcher waits for a rank to read it before deciding that none started
# (the group still in rendezvous): ranks write their pid file within seconds of starting.
STOP_GRACE_S = 10.0


class DistributedError(Exception):
    """The process group failed past its restarts; the text ends with torchrun's last log lines."""


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no torchrun log)"
    return "\n".join(text.splitlines()[-lines:])


def _ranks_of(work: Path) -> list[int]:
    """This launcher's ranks of the run in `work` still running: processes with ddp_main and this work
    dir on their command line and this process as their launcher in their environment (another host's
    torchrun, or one that shares this machine in a test, is left alone). Found in /proc rather than by
    the ranks' pid files, which a rank writes only once it has started: one whose torchrun died before
    that is found too."""
    wanted = (b"models_mgmt.engine.ddp_main", str(work).encode())
    launcher = f"{ddp_main.LAUNCHER_PID_ENV}={os.getpid()}".encode()
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            if not all(part in arguments for part in wanted) or b"torch.distributed.run" in arguments:
                continue
            if launcher in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or another user's
            continue
    return found


def _end_group(process: subprocess.Popen[bytes], work: Path, grace_s: float = 10.0) -> None:
    """Stop torchrun's process group and every rank of this host (ranks run in sessions of their own)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # torchrun's handler stops its ranks first
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            # killed while torchrun is not yet reaped: its group id cannot belong to another process
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for pid in _ranks_of(work):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class _Relay:
    """Reads rank 0's event lines as they grow and hands them to run_training's callbacks; a restarted
    group's repeated phases and epochs are passed on once (phases only forward, epochs only new)."""

    def __init__(self, path: Path, on_progress: Any, on_epoch: Any, on_phase: Any) -> None:
        self.path, self.offset, self.pending = path, 0, b""
        self.on_progress, self.on_epoch, self.on_phase = on_progress, on_epoch, on_phase
        self.last_phase = -1  # index in training.PHASES
        self.last_epoch = 0

    def poll(self) -> None:
        try:
            with self.path.open("rb") as stream:
                stream.seek(self.offset)
                chunk = stream.read()
        except FileNotFoundError:
            return
        self.offset += len(chunk)
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                # rank 0 died mid-write; its restarted successor ended the partial line (ddp_main.Events)
                if line.strip():
                    logger.warning("skipping an incomplete event line in %s: %r", self.path, line[:200])
                continue
            kind = event["kind"]
            if kind == "phase" and PHASES.index(event["phase"]) > self.last_phase:
                self.last_phase = PHASES.index(event["phase"])
                if self.on_phase is not None:
                    self.on_phase(event["phase"])
            elif kind == "epoch" and event["report"]["epoch"] > self.last_epoch:
                self.last_epoch = event["report"]["epoch"]
                if self.on_epoch is not None:
                    self.on_epoch(EpochReport(**event["report"]))
            elif kind == "progress" and self.on_progress is not None:
                self.on_progress(ProgressReport(**event["report"]))


def _ranks_began(ddp: Path) -> bool:
    """Whether a rank of this group (on any host: the pid files are in the shared work dir) has started."""
    pids = ddp / ddp_main.PIDS
    return pids.is_dir() and any(pids.iterdir())


def _stopped_before_training(spec: TrainingSpec, data: Any, work: Path, duration_s: float) -> TrainingResult:
    """The result of a run stopped while its group was still in rendezvous: no epoch ran, nothing was
    measured (the losses are NaN); a checkpoint an earlier attempt left is kept for the resume."""
    split = spec.split(data)
    checkpoint = work / CHECKPOINT_NAME
    nothing = math.nan
    return TrainingResult(
        status="stopped",
        epochs_run=0,
        best_epoch=0,
        final_val_loss=nothing,
        best_val_loss=nothing,
        final_train_loss=None,
        start_val_loss=None,
        best_train_loss=None,
        improved_on_start=False,
        weights_changed=False,
        metrics={},
        baselines={},
        backtest={},
        training_duration_s=round(duration_s, 3),
        train_samples=len(split.x_train),
        validation_samples=len(split.x_val),
        embargo_samples=split.embargo_samples,
        train_window=split.train_window,
        validation_window=split.validation_window,
        steps_run=0,
        hyperparameters=spec.hyperparameters(),
        checkpoint_path=str(checkpoint) if checkpoint.exists() else None,
    )


def _result_from(path: Path) -> TrainingResult:
    data = json.loads(path.read_text())
    for window in ("train_window", "validation_window"):
        data[window] = tuple(data[window])
    return TrainingResult(**data)


def _write_inputs(ddp: Path, spec: TrainingSpec, data: Any, device: str, init_weights: Any, resume_from: Any) -> None:
    init: str | None = None
    if isinstance(init_weights, Mapping):
        import torch  # heavy: only the training worker loads torch

        torch.save(dict(init_weights), ddp / ddp_main.INIT_WEIGHTS)
        init = str(ddp / ddp_main.INIT_WEIGHTS)
    elif init_weights is not None:
        init = str(Path(init_weights).resolve())
    data.to_pickle(ddp / ddp_main.BARS)
    inputs = {
        "spec": asdict(spec),
        "device": device,
        "init_weights": init,
        "resume_from": str(Path(resume_from).resolve()) if resume_from is not None else None,
    }
    (ddp / ddp_main.INPUTS).write_text(json.dumps(inputs))


def run_distributed(
    spec: TrainingSpec,
    *,
    data: Any,
    work_dir: str | Path,
    distributed: DistributedSettings,
    device: str,
    init_weights: Any = None,
    resume_from: str | Path | None = None,
    on_progress: Callable[[Any], None] | None = None,
    on_epoch: Callable[[Any], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | Any | None = None,
    on_gpus: Callable[[int], None] | None = None,
    max_restarts: int = 1,
    poll_s: float = 0.2,
) -> TrainingResult:
    """Train through torchrun with run_training's contract (see the module docstring of ddp_main.py).

    `device` is "cpu" or "cuda" (resolve_device's answer). Raises ValueError for bad data or settings
    (checked here before any process starts, or found by a rank: a checkpoint of another run) and
    DistributedError when the group fails past `max_restarts` restarts. A stop asked while the group
    still waits in rendezvous (no rank began within STOP_GRACE_S) ends it: the result is "stopped"
    with no epoch run. Whatever happens, no torchrun or rank of this host outlives the call;
    if this process is killed, torchrun gets SIGTERM from the kernel when the *thread* that called
    this function ends (Linux's parent-death signal follows the forking thread), and the ranks'
    watchdog sees this pid gone."""
    from .trainer import as_stop_check  # heavy: the trainer pulls torch

    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda' (resolve_device's answer), not {device!r}")
    if problem := world_problem(distributed.world_size, spec.batch_size):
        raise ValueError(problem)
    spec.split(data)  # bad data fails here, as in-process, not as a crashed group
    work = Path(work_dir).resolve()
    ddp = work / ddp_main.DDP_DIR
    shutil.rmtree(ddp, ignore_errors=True)  # a previous attempt's events, result and stop
    ddp.mkdir(parents=True)
    _write_inputs(ddp, spec, data, device, init_weights, resume_from)

    # One host: port 0 lets the store pick a free port (what torchrun's --standalone does).
    endpoint = distributed.rdzv_endpoint or "127.0.0.1:0"
    group = [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc-per-node", str(distributed.nproc_per_node),
        "--nnodes", str(distributed.nnodes),
        "--rdzv-backend", "c10d",
        f"--rdzv-endpoint={endpoint}",  # one argument: an endpoint is never read as an option
        "--rdzv-id", f"techanal-{uuid.uuid4().hex[:12]}",
        "--max-restarts", str(max_restarts),
    ]  # fmt: skip
    rank_module = ["-m", "models_mgmt.engine.ddp_main", str(work)]
    # The claiming worker hosts the rendezvous store; the other hosts join it.
    # torchrun dies (SIGTERM, its handler stops its ranks) with the thread that starts it: lifeline.py
    command = [
        sys.executable, "-m", "models_mgmt.engine.lifeline", str(os.getpid()),
        *group, "--rdzv-conf", "is_host=1", *rank_module,
    ]  # fmt: skip
    project = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [project, os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        ddp_main.LAUNCHER_PID_ENV: str(os.getpid()),
    }
    if distributed.nnodes > 1:
        secondary = [*group, "--rdzv-conf", "is_host=0", *rank_module]
        line = f"cd {shlex.quote(project)} && OMP_NUM_THREADS=1 {shlex.join(secondary)}"
        (ddp / "secondary_command.txt").write_text(line + "\n")
        logger.info("distributed run in %s: run on each of the other %d hosts: %s", work, distributed.nnodes - 1, line)

    began = time.monotonic()
    stop = as_stop_check(should_stop)
    gpus_held = 0

    def gpus(n: int) -> None:
        nonlocal gpus_held
        if on_gpus is not None and n != gpus_held:
            on_gpus(n)
        gpus_held = n

    def phase(name: str) -> None:
        # GPU seconds count while the ranks train: not their rendezvous, nor rank 0's evaluation,
        # backtest and export afterwards, which run on one process (the CPU for the backtest)
        gpus(distributed.nproc_per_node if name == "training" and device == "cuda" else 0)
        if on_phase is not None:
            on_phase(name)

    relay = _Relay(ddp / ddp_main.EVENTS, on_progress, on_epoch, phase)
    error_path = ddp / ddp_main.ERROR
    log_path = ddp / "torchrun.log"
    stop_asked: float | None = None  # when
    ended_waiting = False
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 -- this interpreter, torch's launcher, fixed module
            command,
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while process.poll() is None and not error_path.exists():
            relay.poll()
            if stop_asked is None and stop():
                (ddp / ddp_main.STOP).touch()  # the ranks read it before every batch
                stop_asked = time.monotonic()
            elif stop_asked is not None and time.monotonic() - stop_asked > STOP_GRACE_S and not _ranks_began(ddp):
                # No rank to read the stop: torchrun still waits in rendezvous (for other hosts, up to
                # its join timeout). Nothing trained in this attempt, so ending the group loses nothing.
                ended_waiting = True
                break
            time.sleep(poll_s)
        relay.poll()
    finally:
        _end_group(process, work)
        if on_gpus is not None:
            on_gpus(0)  # however it ended, the meter stops counting the ranks' GPUs
    if ended_waiting:
        logger.info("distributed run in %s stopped before any rank started (still in rendezvous)", work)
        return _stopped_before_training(spec, data, work, time.monotonic() - began)
    if error_path.exists():
        raise ValueError(json.loads(error_path.read_text())["message"])
    result_path = ddp / ddp_main.RESULT
    if process.returncode == 0 and result_path.exists():
        # the job's training time is the whole group's, its start and restarts included
        return dataclasses.replace(_result_from(result_path), training_duration_s=round(time.monotonic() - began, 3))
    raise DistributedError(
        f"the torchrun group failed (exit status {process.returncode}, {max_restarts} restart(s) allowed); "
        f"torchrun's last log lines:\n{_log_tail(log_path)}"
    )
