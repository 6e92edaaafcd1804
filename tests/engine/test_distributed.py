"""Distributed training: the device and torchrun settings, and (slow) real torchrun groups on the CPU."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from models_mgmt.engine import placement
from models_mgmt.engine.artifact import verify_artifact
from models_mgmt.engine.distributed import DistributedError, run_distributed
from models_mgmt.engine.placement import DeviceUnavailable, DistributedSettings, device_label, resolve_device
from models_mgmt.engine.spec import TrainingSpec
from models_mgmt.engine.training import run_training
from tests.live import processes_naming, wait_until_gone


def test_settings_round_trip_the_wire_and_count_the_world():
    settings = DistributedSettings.from_wire({"nprocPerNode": 4, "nnodes": 2, "rdzvEndpoint": "10.0.0.5:29400"})
    assert settings.world_size == 8
    assert settings.to_wire() == {"nprocPerNode": 4, "nnodes": 2, "rdzvEndpoint": "10.0.0.5:29400"}
    assert DistributedSettings.from_wire({"nprocPerNode": 2}) == DistributedSettings(2)


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ({"nprocPerNode": 0}, "nprocPerNode"),
        ({"nprocPerNode": 65}, "nprocPerNode"),
        ({"nprocPerNode": 1, "nnodes": 0}, "nnodes"),
        ({"nprocPerNode": 1, "nnodes": 2}, "rdzvEndpoint"),
        ({"nprocPerNode": 1, "nnodes": 2, "rdzvEndpoint": "nohost"}, "host:port"),
        ({"nprocPerNode": 1, "nnodes": 2, "rdzvEndpoint": "h:99999"}, "host:port"),
        ({"nprocPerNode": 1, "nnodes": 2, "rdzvEndpoint": "h:²"}, "host:port"),
        ({"nprocPerNode": 32, "nnodes": 4, "rdzvEndpoint": "h:1"}, "at most 64"),
    ],
)
def test_settings_refuse_what_no_machine_can_run(wire, message):
    with pytest.raises(ValueError, match=message):
        DistributedSettings.from_wire(wire)


@pytest.mark.parametrize(
    "endpoint",
    ["h:²", "h:٣", "-h:29500", "h :1", "a\nb:1", "h:", ":1", "h:0", "h:65536", "[::1:1", "x" * 254 + ":1", 1],
)
def test_an_endpoint_torchrun_cannot_take_is_refused(endpoint):
    assert placement.endpoint_problem(endpoint)


@pytest.mark.parametrize("endpoint", ["h:1", "trainer-1.example.org:29500", "10.0.0.5:65535", "[::1]:29400"])
def test_host_names_ipv4_and_bracketed_ipv6_endpoints_are_taken(endpoint):
    assert placement.endpoint_problem(endpoint) is None


def test_auto_picks_cuda_only_when_a_gpu_is_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", ranks=2) == "cuda"
    assert resolve_device("cpu") == "cpu"


def test_devices_the_machine_cannot_honour_are_refused_with_what_to_do(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailable, match="no usable GPU"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(DeviceUnavailable, match="3 ranks on one host need 3 GPUs but this worker has 2"):
        resolve_device("cuda", ranks=3)
    monkeypatch.setattr(placement, "usable_cpus", lambda: 2)
    with pytest.raises(DeviceUnavailable, match="3 CPU ranks on one host need 3 CPUs but this worker may use 2"):
        resolve_device("cpu", ranks=3)
    with pytest.raises(DeviceUnavailable, match="one of auto, cpu, cuda"):
        resolve_device("tpu")


def test_device_labels_name_the_device_ranks_backend_and_hosts():
    assert device_label("cpu", None) == "cpu"
    assert device_label("cuda", None) == "cuda:0"
    assert device_label("cuda:1", None) == "cuda:1"
    assert device_label("cpu", DistributedSettings(2)) == "cpu x2 gloo"
    assert device_label("cuda", DistributedSettings(4, nnodes=2, rdzv_endpoint="h:29400")) == "cuda x8 nccl (2 nodes)"


def test_the_module_loads_no_torch():
    import subprocess
    import sys

    code = "import sys, models_mgmt.engine.placement, models_mgmt.engine.distributed; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _weights_digest(model) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.numpy().tobytes())
    return digest.hexdigest()


def test_training_on_the_cpu_device_is_the_default_run_bit_for_bit(split, spec):
    from models_mgmt.engine.trainer import fit

    default = fit(spec, split)
    on_cpu = fit(spec, split, device="cpu")
    assert _weights_digest(on_cpu.model) == _weights_digest(default.model)
    timeless = [{k: v for k, v in row.items() if k != "duration_s"} for row in on_cpu.history]
    assert timeless == [{k: v for k, v in row.items() if k != "duration_s"} for row in default.history]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_training_on_cuda_keeps_the_weights_on_the_cpu_afterwards(split, spec, tmp_path):
    from models_mgmt.engine.trainer import fit

    on_cpu = fit(spec, split)
    on_gpu = fit(spec, split, device="cuda", checkpoint_path=tmp_path / "checkpoint.pt")
    assert all(t.device.type == "cpu" for t in on_gpu.model.state_dict().values())
    assert abs(on_gpu.best_val_loss - on_cpu.best_val_loss) < 0.02


# --- real torchrun groups on the CPU (gloo) ---------------------------------------------------------
# 400 bars of the S&P 500, the same global batch (32) and seed as the one-process run they are compared to.

LOSS_TOLERANCE = 0.03  # the global batches hold other samples than one process's, so not equal
SCORE_TOLERANCE = 0.08


@pytest.fixture(scope="module")
def small_bars(sp500):
    return sp500.iloc[-400:].copy()


def _spec(epochs: int = 3) -> TrainingSpec:
    return TrainingSpec(epochs=epochs, batch_size=32, early_stopping_patience=0, hidden_sizes=(16, 8))


@pytest.fixture(scope="module")
def one_process(small_bars, tmp_path_factory):
    torch.set_num_threads(1)
    return run_training(_spec(), data=small_bars, work_dir=tmp_path_factory.mktemp("one"))


def _losses(result) -> tuple[list[float], list[float]]:
    return [row["train_loss"] for row in result.history], [row["val_loss"] for row in result.history]


def _assert_matches(result, reference, label: str) -> None:
    train, val = _losses(result)
    ref_train, ref_val = _losses(reference)
    print(f"\n1 process: train loss {ref_train}, val loss {ref_val}, metrics {reference.metrics}")
    print(f"{label}: train loss {train}, val loss {val}, metrics {result.metrics}")
    assert result.status == "succeeded" and result.epochs_run == reference.epochs_run
    assert result.train_samples == reference.train_samples and result.validation_window == reference.validation_window
    assert max(abs(a - b) for a, b in zip(train + val, ref_train + ref_val, strict=True)) < LOSS_TOLERANCE
    assert abs(result.metrics["overallScore"] - reference.metrics["overallScore"]) < SCORE_TOLERANCE
    assert verify_artifact(result.artifact_dir)


def _rank_pid(work_dir: Path, rank: int) -> int:
    pids = [int(p.read_text()) for p in (work_dir / "ddp" / "pids").glob(f"*-rank{rank}-*")]
    return max(pids, key=lambda pid: Path(f"/proc/{pid}").exists())


@pytest.mark.slow
def test_two_processes_match_one_at_the_same_global_batch_and_seed(small_bars, one_process, tmp_path):
    phases, epochs, gpus = [], [], []
    result = run_distributed(
        _spec(),
        data=small_bars,
        work_dir=tmp_path,
        distributed=DistributedSettings(2),
        device="cpu",
        on_phase=phases.append,
        on_epoch=epochs.append,
        on_gpus=gpus.append,
    )
    _assert_matches(result, one_process, "2 processes")
    assert phases == ["building_features", "training", "evaluating", "backtesting", "exporting"]
    assert [report.epoch for report in epochs] == [1, 2, 3]
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert (tmp_path / "checkpoint.pt").exists() and result.artifact_dir == str(tmp_path / "artifact")
    assert gpus == [0]  # the CPU holds no GPU: only the end is said
    assert wait_until_gone(tmp_path) == []


def _free_port() -> int:
    """A free port below the kernel's ephemeral range: no connection is handed it between this check
    and torchrun's bind (a port from bind(0) is ephemeral, and could be)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    chooser = random.Random()
    for _ in range(100):
        port = chooser.randrange(max(1024, low - 12000), low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")


def _in_thread(run) -> tuple[threading.Thread, dict[str, object]]:
    """run() in a daemon thread (a test that fails never waits on it at exit); what it returned or raised."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["result"] = run()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def _logs(*paths: Path) -> str:
    """The last lines of each log, for a failure's message."""
    return "\n".join(
        f"--- {path.name}:\n"
        + ("\n".join(path.read_text(errors="replace").splitlines()[-30:]) if path.exists() else "")
        for path in paths
    )


@pytest.mark.slow
def test_two_hosts_rendezvous_on_localhost(small_bars, one_process, tmp_path):
    settings = DistributedSettings(1, nnodes=2, rdzv_endpoint=f"127.0.0.1:{_free_port()}")
    stop = threading.Event()  # set only when the test fails: the primary then ends its group
    thread, outcome = _in_thread(
        lambda: run_distributed(
            _spec(), data=small_bars, work_dir=tmp_path, distributed=settings, device="cpu", should_stop=stop
        )
    )
    command_file = tmp_path / "ddp" / "secondary_command.txt"
    secondary = None
    try:
        deadline = time.monotonic() + 60
        while not command_file.exists() and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.1)
        # the other "host": its own shell, its own session, the logged command as an operator would run it
        secondary_log = tmp_path / "secondary.log"
        with secondary_log.open("wb") as log:
            secondary = subprocess.Popen(
                ["bash", "-c", command_file.read_text()],
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        assert secondary.wait(timeout=240) == 0, _logs(tmp_path / "ddp" / "torchrun.log", secondary_log)
        thread.join(timeout=240)
    finally:
        if secondary is not None and secondary.poll() is None:
            os.killpg(secondary.pid, signal.SIGKILL)
        if thread.is_alive():
            stop.set()
            thread.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    _assert_matches(outcome["result"], one_process, "2 hosts x 1 rank")
    assert wait_until_gone(tmp_path) == []


@pytest.mark.slow
def test_a_stop_ends_a_group_still_waiting_for_its_other_hosts(small_bars, tmp_path):
    settings = DistributedSettings(1, nnodes=2, rdzv_endpoint=f"127.0.0.1:{_free_port()}")
    stop = threading.Event()
    thread, outcome = _in_thread(
        lambda: run_distributed(
            _spec(), data=small_bars, work_dir=tmp_path, distributed=settings, device="cpu", should_stop=stop
        )
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ddp" / "torchrun.log").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()  # no second host ever comes: torchrun waits in rendezvous, no rank reads the stop
        thread.join(timeout=120)  # normally STOP_GRACE_S and a second
    finally:
        stop.set()
        thread.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.status == "stopped" and result.epochs_run == 0 and result.artifact_dir is None
    assert wait_until_gone(tmp_path) == []


@pytest.mark.slow
def test_a_rank_that_finds_bad_data_fails_as_in_process_without_a_restart(small_bars, one_process, tmp_path):
    other = dataclasses.replace(_spec(), learning_rate=_spec().learning_rate * 2)  # the checkpoint: another run
    with pytest.raises(ValueError, match="checkpoint was written for other data or settings") as refused:
        run_distributed(
            other,
            data=small_bars,
            work_dir=tmp_path,
            distributed=DistributedSettings(2),
            device="cpu",
            resume_from=one_process.checkpoint_path,
            max_restarts=3,
        )
    assert not isinstance(refused.value, DistributedError)
    events = tmp_path / "ddp" / "events.jsonl"
    attempts = {json.loads(line)["attempt"] for line in events.read_text().splitlines() if line.strip()}
    assert attempts <= {0, 1}  # ended at the first attempt's error, not restarted three times
    assert wait_until_gone(tmp_path) == []


def _kill_rank_one_after_epoch(work_dir: Path, epoch: int, killed: list[int]):
    def on_epoch(report) -> None:
        if report.epoch == epoch and not killed:
            pid = _rank_pid(work_dir, 1)
            os.kill(pid, signal.SIGKILL)  # raises if the rank were gone: it is killed while training
            killed.append(pid)

    return on_epoch


@pytest.mark.slow
def test_a_killed_rank_restarts_the_group_from_the_checkpoint(small_bars, tmp_path):
    killed: list[int] = []
    epochs: list[int] = []
    kill = _kill_rank_one_after_epoch(tmp_path, 2, killed)

    def on_epoch(report) -> None:
        epochs.append(report.epoch)
        kill(report)

    result = run_distributed(
        _spec(epochs=100),
        data=small_bars,
        work_dir=tmp_path,
        distributed=DistributedSettings(2),
        device="cpu",
        on_epoch=on_epoch,
        max_restarts=1,
    )
    assert killed and result.status == "succeeded" and result.epochs_run == 100
    assert [row["epoch"] for row in result.history] == list(range(1, 101))
    assert epochs == list(range(1, 101))  # each epoch reported once, restart or not
    lines = (tmp_path / "ddp" / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines if line.strip()]  # a restarted rank 0 first ends the last line
    restarted = [e["report"]["epoch"] for e in events if e["kind"] == "epoch" and e["attempt"] == 1]
    assert restarted and restarted[0] > 1  # the second attempt began from a checkpoint, not from epoch 1
    assert wait_until_gone(tmp_path) == []


@pytest.mark.slow
def test_a_killed_rank_without_restarts_fails_with_a_reason_and_leaves_no_process(small_bars, tmp_path):
    killed: list[int] = []
    with pytest.raises(DistributedError, match="torchrun group failed") as failure:
        run_distributed(
            _spec(epochs=100),
            data=small_bars,
            work_dir=tmp_path,
            distributed=DistributedSettings(2),
            device="cpu",
            on_epoch=_kill_rank_one_after_epoch(tmp_path, 2, killed),
            max_restarts=0,
        )
    print(f"\n{failure.value}")
    assert killed and "0 restart(s) allowed" in str(failure.value)
    assert "last log lines" in str(failure.value)
    assert wait_until_gone(tmp_path) == []


@pytest.mark.slow
def test_a_stop_reaches_every_rank_and_leaves_a_checkpoint(small_bars, tmp_path):
    stop = threading.Event()
    result = run_distributed(
        _spec(epochs=100),
        data=small_bars,
        work_dir=tmp_path,
        distributed=DistributedSettings(2),
        device="cpu",
        on_epoch=lambda report: stop.set() if report.epoch == 2 else None,
        should_stop=stop,
    )
    # the group ended normally: both ranks left the loop before the same batch and met at the barrier
    assert result.status == "stopped" and 2 <= result.epochs_run < 100
    assert result.artifact_dir is None and result.checkpoint_path == str(tmp_path / "checkpoint.pt")
    # the checkpoint resumes in-process (the same format); `epochs` may change on resume
    again = _spec(epochs=result.epochs_run + 1)
    resumed = run_training(again, data=small_bars, work_dir=tmp_path / "again", resume_from=tmp_path)
    assert resumed.status == "succeeded" and resumed.history[: result.epochs_run] == result.history
    assert wait_until_gone(tmp_path) == []


LAUNCHER = """
import sys
from models_mgmt.engine.bars import load_builtin
from models_mgmt.engine.distributed import run_distributed
from models_mgmt.engine.placement import DistributedSettings
from models_mgmt.engine.spec import TrainingSpec

spec = TrainingSpec(epochs=400, batch_size=32, early_stopping_patience=0, hidden_sizes=(16, 8))
bars = load_builtin("sp500").iloc[-400:].copy()
run_distributed(spec, data=bars, work_dir=sys.argv[1], distributed=DistributedSettings(2), device="cpu")
"""


@pytest.mark.slow
def test_a_killed_launcher_leaves_no_torchrun_and_no_rank(tmp_path):
    root = Path(__file__).resolve().parents[2]
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(tmp_path)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdin=subprocess.DEVNULL,
    )
    try:
        events = tmp_path / "ddp" / "events.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and launcher.poll() is None:
            if events.exists() and '"kind": "epoch"' in events.read_text():
                break
            time.sleep(0.2)
        group = set(processes_naming(tmp_path, exclude={launcher.pid}))
        assert launcher.poll() is None and len(group) >= 3  # torchrun and two ranks
    finally:
        launcher.kill()  # SIGKILL: no finally runs; the kernel and the ranks' watchdog must end the rest
        launcher.wait()
    assert wait_until_gone(tmp_path) == []


def test_the_lifeline_runs_its_command_only_while_its_parent_lives():
    here = str(os.getpid())
    child = [sys.executable, "-c", "import os; print(os.getppid())"]
    lifeline = [sys.executable, "-m", "models_mgmt.engine.lifeline"]
    ran = subprocess.run([*lifeline, here, *child], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert ran.returncode == 0 and ran.stdout.strip() == here  # exec'd in place: this process is its parent
    gone = subprocess.run([*lifeline, "1", *child], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert gone.returncode == 1 and gone.stdout == ""  # not the parent it was told: it starts nothing


def test_settings_a_group_cannot_run_are_refused_before_any_process_starts(small_bars, tmp_path):
    with pytest.raises(ValueError, match="= 2 must divide batchSize"):
        run_distributed(
            TrainingSpec(batch_size=33), data=small_bars, work_dir=tmp_path, distributed=DistributedSettings(2),
            device="cpu",
        )  # fmt: skip
    with pytest.raises(ValueError, match="resolve_device's answer"):
        run_distributed(_spec(), data=small_bars, work_dir=tmp_path, distributed=DistributedSettings(2), device="auto")
    with pytest.raises(ValueError):
        run_distributed(
            _spec(), data=small_bars.iloc[:30], work_dir=tmp_path, distributed=DistributedSettings(2), device="cpu"
        )
    assert not (tmp_path / "ddp").exists()


def test_a_restarted_groups_repeated_phases_and_epochs_are_relayed_once(tmp_path):
    from models_mgmt.engine.distributed import _Relay
    from models_mgmt.engine.reporting import EpochReport

    def epoch(n: int, attempt: int) -> str:
        report = EpochReport(n, 0.7, 0.6, {}, 0.1, n, True)
        return json.dumps({"kind": "epoch", "attempt": attempt, "report": dataclasses.asdict(report)})

    def phase(name: str, attempt: int) -> str:
        return json.dumps({"kind": "phase", "attempt": attempt, "phase": name})

    events = tmp_path / "events.jsonl"
    phases, epochs = [], []
    relay = _Relay(events, None, lambda r: epochs.append(r.epoch), phases.append)
    lines = [phase("building_features", 0), phase("training", 0), epoch(1, 0), epoch(2, 0)]
    lines += [phase("building_features", 1), phase("training", 1), epoch(2, 1), epoch(3, 1), phase("evaluating", 1)]
    events.write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])  # a line half written
    relay.poll()
    with events.open("a") as stream:
        stream.write(lines[3][10:] + "\n" + lines[4][:15])  # rank 0 died mid-write; the next one ends the line
        stream.write("\n" + "\n".join(lines[4:]) + "\n")
    relay.poll()
    assert phases == ["building_features", "training", "evaluating"]
    assert epochs == [1, 2, 3]
