"""Training overhead benchmark: what the engine and the job path cost on top of a bare PyTorch loop.

Run from the repository root::

    .venv/bin/python bench/training_overhead.py [--epochs 20] [--repeats 3] [--jobs 10] [--skip-queue]

Measures, on the same MultiTaskNet, the same normalised S&P 500 training samples (`arch`'s daily
bars, via the engine's `build_split`), the same hyperparameters and the same number of epochs:

(a) a bare loop: AdamW, seeded shuffled mini-batches, BCEWithLogits over the three heads, nothing else;
(b) the engine's `fit` with a checkpoint after every epoch and progress/epoch callbacks (validation
    every epoch, early stopping off);
(c) the whole job path: `training_job_start` + `training_job_execute` in this process, against a
    throwaway SQLite database (claim, bars from the database, `run_training`, ONNX artifact,
    version registration), with the time spent inside `fit` timed separately;
(d) enqueue-to-running latency of a real `manage.py qcluster` (django-q2, ORM broker): the
    TrainingJob row's `started_at - created_at` over --jobs small jobs submitted one after another.

This is a benchmark, not a test: it prints figures and PASS/MISS against the targets, and never
fails on a miss. Everything it writes lives in one temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.figures import percentile  # noqa: E402 - after the path set-up above

TARGET_ENGINE = 0.97  # (b)/(a) throughput
TARGET_JOB = 0.95  # (c)/(a) throughput
QUEUE_START_DATE = "2017-01-01"


def configure_environment(work: Path) -> dict[str, str]:
    """Environment for this process and the qcluster: throwaway database, artifacts, no Redis."""
    values = {
        "DJANGO_SETTINGS_MODULE": "techanal.settings",
        "DATABASE_URL": f"sqlite:///{work / f'bench-{os.getpid()}.sqlite3'}",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "false",
        "ARTIFACTS_DIR": str(work / "artifacts"),
        "TRAINING_WORKERS": "2",
        "MODEL_TRAINING_ENABLED": "true",
        "LOG_LEVEL": "WARNING",
        "CODE_REVISION": "bench",  # no `git rev-parse` per version registration
    }
    os.environ.update(values)
    os.environ.pop("REDIS_URL", None)
    return values


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


@contextlib.contextmanager
def timed_attribute(module: Any, name: str, sink: list[tuple[float, float]]) -> Iterator[None]:
    """Replace module.name by a wrapper that appends each call's (wall, CPU) seconds to `sink`."""
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            sink.append((time.perf_counter() - wall, time.process_time() - cpu))

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


# --- (a) bare loop ------------------------------------------------------------------------------


def run_bare(spec: Any, split: Any) -> dict[str, float]:
    import torch
    from torch import nn

    from models_mgmt.engine.trainer import build_model

    torch.set_num_threads(spec.num_threads)
    x = torch.from_numpy(split.normalization.apply(split.x_train))
    y = torch.from_numpy(split.y_train)
    started, cpu = time.perf_counter(), time.process_time()
    model = build_model(spec, x.shape[1])
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay, foreach=True
    )
    generator = torch.Generator().manual_seed(spec.seed)
    loss_fn = nn.BCEWithLogitsLoss()
    n, size = len(x), spec.batch_size
    model.train()
    for _ in range(spec.epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, size):
            batch = order[start : start + size]
            loss = loss_fn(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu, "samples": n}


# --- (b) engine fit -----------------------------------------------------------------------------


def run_engine(spec: Any, split: Any, work: Path, *, extras: bool = True) -> dict[str, float]:
    """`extras` False: no checkpoint and no callbacks (the diagnostic b0 run)."""
    from models_mgmt.engine import checkpoint as checkpoint_module
    from models_mgmt.engine import trainer

    seen: list[Any] = []

    def on_progress(report: Any) -> None:  # what a relay does, minus the database
        seen.append(f"{report.progress:.1f}% loss {report.loss:.4f} eta {report.eta_s}")

    def on_epoch(report: Any) -> None:
        seen.append({"epoch": report.epoch, "train": report.train_loss, "val": report.val_loss, **report.metrics})

    checkpoints: list[tuple[float, float]] = []
    checkpoint = work / "engine" / "checkpoint.pt"
    options = {"checkpoint_path": checkpoint, "on_progress": on_progress, "on_epoch": on_epoch} if extras else {}
    # Checkpoints are written by a background thread; this times those writes (off the loop).
    with timed_attribute(checkpoint_module, "save_checkpoint", checkpoints):
        started, cpu = time.perf_counter(), time.process_time()
        outcome = trainer.fit(spec, split, **options)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    shutil.rmtree(checkpoint.parent, ignore_errors=True)
    if outcome.epochs_run != spec.epochs:
        raise SystemExit(f"fit ran {outcome.epochs_run} of {spec.epochs} epochs: early stopping must be off")
    epochs_s = sum(row["duration_s"] for row in outcome.history)  # train steps + validation, per epoch
    return {
        "seconds": seconds,
        "cpu": cpu,
        "samples": len(split.x_train),
        "checkpoint_s": sum(wall for wall, _ in checkpoints),
        "epoch_loops_s": epochs_s,
        "callbacks": len(seen),
    }


# --- (c) whole job path -------------------------------------------------------------------------


class Fixture:
    """The throwaway product state: database, sp500 dataset, a maintainer and a model."""

    def __init__(self, work: Path):
        import django
        from django.core.management import call_command

        django.setup()
        with open(os.devnull, "w") as quiet:
            call_command("migrate", verbosity=0, stdout=quiet)
            call_command("createcachetable", verbosity=0, stdout=quiet)
        from django.contrib.auth import get_user_model

        from models_mgmt.services import dataset_import_builtin
        from models_mgmt.services.roles import roles_ensure

        self.work = work
        self.dataset = dataset_import_builtin(name="sp500")
        groups = roles_ensure()
        self.user = get_user_model().objects.create_user(username="bench", password=secrets.token_urlsafe(16))
        self.user.groups.add(groups["maintainer"])
        self.user = get_user_model().objects.get(pk=self.user.pk)  # fresh permission cache
        self.models: dict[str, Any] = {}

    def model(self, name: str) -> Any:
        from models_mgmt.services import ai_model_create

        if name not in self.models:
            self.models[name] = ai_model_create(
                actor=self.user, name=name, family="multitask-mlp", default_dataset=self.dataset
            )
        return self.models[name]

    def config(self, model: Any, body: dict[str, Any]) -> dict[str, Any]:
        from models_mgmt.api.serializers import FineTuningConfigSerializer

        data = FineTuningConfigSerializer(data=body, context={"model": model})
        if not data.is_valid():
            raise SystemExit(f"invalid config {body}: {data.errors}")
        return data.validated_data

    def start(self, model: Any, body: dict[str, Any]) -> Any:
        from models_mgmt.services import training_job_start

        v = self.config(model, body)
        return training_job_start(
            actor=self.user,
            model=model,
            config=v["resolved"].config,
            dataset=v["resolved"].dataset,
            base_version=v["resolved"].base_version,
        )


def run_job(fixture: Fixture, body: dict[str, Any]) -> dict[str, float]:
    from models_mgmt.engine import artifact, trainer
    from models_mgmt.models import TrainingJob
    from models_mgmt.training.worker import training_job_execute

    model = fixture.model("bench-job")
    fits: list[tuple[float, float]] = []
    artifacts: list[tuple[float, float]] = []
    started = time.perf_counter()
    job = fixture.start(model, body)
    with timed_attribute(trainer, "fit", fits), timed_attribute(artifact, "write_artifact", artifacts):
        outcome = training_job_execute(job_id=job.pk)
    seconds = time.perf_counter() - started
    job = TrainingJob.objects.select_related("version").get(pk=job.pk)
    if outcome.status != "succeeded":
        raise SystemExit(f"job {job.pk} ended {job.status}: {job.error_code} {job.error}")
    return {
        "seconds": seconds,
        "fit_s": sum(wall for wall, _ in fits),
        "fit_cpu": sum(cpu for _, cpu in fits),
        "artifact_s": sum(wall for wall, _ in artifacts),
        "samples": job.version.metadata["trainSamples"],
        "epochs": job.version.metadata["epochs"],
    }


# --- (d) queue latency --------------------------------------------------------------------------


def run_queue(fixture: Fixture, env: dict[str, str], jobs: int, work: Path) -> dict[str, Any]:
    from django_q.models import OrmQ

    from models_mgmt.choices import TERMINAL_JOB_STATUSES
    from models_mgmt.models import TrainingJob

    OrmQ.objects.all().delete()  # the tasks (c) enqueued (already run in-process) would only add noise
    model = fixture.model("bench-queue")
    body = {"epochs": 1, "earlyStoppingPatience": 0, "startDate": QUEUE_START_DATE}
    log_path = work / "qcluster.log"
    log = log_path.open("ab")
    process = subprocess.Popen(  # noqa: S603 -- our own interpreter and manage.py
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env={**os.environ, **env, "LOG_LEVEL": "INFO"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: killpg reaches the workers too
    )
    latencies: list[float] = []
    failed: list[str] = []
    try:
        ready = wait_until(lambda: "running" in log_path.read_text(errors="replace"), 90)
        if not ready:
            raise SystemExit(f"qcluster did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
        for _ in range(jobs):
            job = fixture.start(model, body)

            def finished(job_id: int = job.pk) -> Any:
                row = TrainingJob.objects.get(pk=job_id)
                return row if row.status in TERMINAL_JOB_STATUSES else None

            row = wait_until(finished, 120)
            if not row:
                raise SystemExit(f"job {job.pk} did not finish:\n{log_path.read_text(errors='replace')[-3000:]}")
            if row.status != "succeeded":
                failed.append(f"{row.pk}:{row.status}:{row.error_code}")
            latencies.append((row.started_at - row.created_at).total_seconds())
    finally:
        stop_group(process)
        log.close()
    return {"latencies": latencies, "failed": failed}


def stop_group(process: subprocess.Popen) -> None:
    """SIGKILL the cluster's whole process group (cluster, sentinel, workers) until none is left:
    a worker forked while the first signal was delivered would otherwise outlive it."""
    for _ in range(20):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.5)
    process.wait(timeout=30)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


# --- report -------------------------------------------------------------------------------------


def verdict(ratio: float, target: float) -> str:
    return "PASS" if ratio >= target else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=10, help="jobs submitted to the qcluster for (d)")
    parser.add_argument("--skip-queue", action="store_true", help="skip (d), the qcluster latency")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    env = configure_environment(work)
    begun = time.perf_counter()
    try:
        report(args, work, env)
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ntotal benchmark wall time: {time.perf_counter() - begun:.1f} s")


def report(args: argparse.Namespace, work: Path, env: dict[str, str]) -> None:
    import torch

    print(f"TechAnal training overhead benchmark, {date.today().isoformat()}")
    print(
        f"host: {platform.node()} | {os.cpu_count()} CPU core(s), shared with other work -- figures are noisy | "
        f"python {platform.python_version()} | torch {torch.__version__} | "
        f"cuda {'yes' if torch.cuda.is_available() else 'no'}"
    )
    setup_started = time.perf_counter()
    fixture = Fixture(work)
    from models_mgmt.engine.bars import load_builtin
    from models_mgmt.engine.spec import TrainingSpec

    body = {"epochs": args.epochs, "earlyStoppingPatience": 0, "dataset": "sp500"}
    config = fixture.config(fixture.model("bench-job"), body)["resolved"].config
    spec = TrainingSpec.from_config(config)  # the very spec the job path trains with
    bars = load_builtin("sp500")
    split = spec.split(bars)
    torch.set_num_threads(spec.num_threads)
    samples = len(split.x_train)
    print(
        f"data: sp500 {bars.index[0]}..{bars.index[-1]} ({len(bars)} bars) -> {samples} training / "
        f"{len(split.x_val)} validation samples, {split.x_train.shape[1]} features"
    )
    print(
        f"spec: epochs {spec.epochs}, batch {spec.batch_size}, lr {spec.learning_rate}, hidden {spec.hidden_sizes}, "
        f"dropout {spec.dropout}, patience {spec.early_stopping_patience}, threads {spec.num_threads}; "
        f"repeats {args.repeats} (median, order alternated); setup {time.perf_counter() - setup_started:.1f} s"
    )

    # Warm-up: first calls pay for lazy imports (ONNX export, onnxruntime) and allocator growth.
    warm = dataclasses.replace(spec, epochs=1)
    run_bare(warm, split)
    run_engine(warm, split, work)
    run_job(fixture, {**body, "epochs": 1})

    runs: dict[str, list[dict[str, float]]] = {"a": [], "b": [], "b0": [], "c": []}
    actions = {
        "a": lambda: run_bare(spec, split),
        "b": lambda: run_engine(spec, split, work),
        "b0": lambda: run_engine(spec, split, work, extras=False),
        "c": lambda: run_job(fixture, body),
    }
    for repeat in range(args.repeats):
        order = ["a", "b", "b0", "c"] if repeat % 2 == 0 else ["c", "b0", "b", "a"]
        for key in order:
            runs[key].append(actions[key]())
        line = "  ".join(f"{k}={runs[k][-1]['seconds']:.2f}s" for k in ("a", "b", "b0", "c"))
        print(
            f"  repeat {repeat + 1}/{args.repeats} (order {','.join(order)}): {line}  "
            f"c.fit={runs['c'][-1]['fit_s']:.2f}s"
        )

    epochs = spec.epochs
    c_samples = int(runs["c"][0]["samples"])
    if c_samples != samples or int(runs["c"][0]["epochs"]) != epochs:
        print(f"  NOTE: the job trained {c_samples} samples x {runs['c'][0]['epochs']} epochs (a/b: {samples})")

    def med(key: str, field: str) -> float:
        return median([r[field] for r in runs[key]])

    def rate(seconds: float, n: int = samples) -> float:
        return n * epochs / seconds

    a_s, b_s, c_s, c_fit = med("a", "seconds"), med("b", "seconds"), med("c", "seconds"), med("c", "fit_s")
    b_ckpt, b_loops, c_art = med("b", "checkpoint_s"), med("b", "epoch_loops_s"), med("c", "artifact_s")
    print(
        f"\nthroughput = training samples x epochs / seconds = {samples} x {epochs} / s; median of {args.repeats}; "
        "CPU = this process's CPU seconds; b0 = diagnostic: fit without checkpoints and callbacks"
    )
    print(f"  (a)  bare PyTorch loop      {a_s:6.2f} s wall  {rate(a_s):7.0f} samples/s   CPU {med('a', 'cpu'):.2f} s")
    print(
        f"  (b)  engine fit             {b_s:6.2f} s wall  {rate(b_s):7.0f} samples/s   CPU {med('b', 'cpu'):.2f} s   "
        f"[epoch loops incl. validation {b_loops:.2f} s, checkpoint writes (background thread) {b_ckpt:.2f} s, "
        f"rest {b_s - b_loops - b_ckpt:.2f} s]"
    )
    b0_s = med("b0", "seconds")
    print(
        f"  (b0) fit, no ckpt/callbacks {b0_s:6.2f} s wall  {rate(b0_s):7.0f} samples/s   CPU {med('b0', 'cpu'):.2f} s"
    )
    print(
        f"  (c)  job path, fit only     {c_fit:6.2f} s wall  {rate(c_fit, c_samples):7.0f} samples/s   "
        f"CPU {med('c', 'fit_cpu'):.2f} s"
    )
    print(
        f"  (c)  job path, end to end   {c_s:6.2f} s wall  {rate(c_s, c_samples):7.0f} samples/s   "
        f"[artifact+ONNX {c_art:.2f} s, claim/bars/split/eval/registration {c_s - c_fit - c_art:.2f} s]"
    )

    # Throughput ratio x/a = (samples_x / t_x) / (samples_a / t_a). "paired" is the median of the
    # per-repeat ratios (a and x measured back to back), which cancels slow drifts of a shared machine.
    def ratios(key: str, field: str, n: int) -> tuple[float, float, float]:
        of_medians = (n / med(key, field)) / (samples / a_s)
        paired = median([(n / x[field]) / (samples / a["seconds"]) for x, a in zip(runs[key], runs["a"], strict=True)])
        cpu_field = {"seconds": "cpu", "fit_s": "fit_cpu"}.get(field)
        cpu = (n / med(key, cpu_field)) / (samples / med("a", "cpu")) if cpu_field in runs[key][0] else math.nan
        return of_medians, paired, cpu

    print("\nratios, throughput vs (a)     wall(medians)  wall(paired)   CPU     target   verdict on wall(medians)")
    for label, key, field, n, target, note in (
        ("b/a", "b", "seconds", samples, TARGET_ENGINE, ""),
        ("b0/a", "b0", "seconds", samples, TARGET_ENGINE, "  (diagnostic: fit minus checkpoints and callbacks)"),
        ("c/a training loop", "c", "fit_s", c_samples, TARGET_JOB, ""),
        ("c/a end to end", "c", "seconds", c_samples, TARGET_JOB, "  (informational: + artifact/registration)"),
    ):
        of_medians, paired, cpu = ratios(key, field, n)
        cpu_text = f"{cpu:6.3f}" if not math.isnan(cpu) else "     -"
        print(
            f"  {label:<27} {of_medians:6.3f}         {paired:6.3f}      {cpu_text}   >= {target:.2f}  "
            f"{verdict(of_medians, target)}{note}"
        )

    if args.skip_queue:
        print("\n(d) queue latency: skipped (--skip-queue)")
        return
    started = time.perf_counter()
    queue = run_queue(fixture, env, args.jobs, work)
    lat = queue["latencies"]
    print(
        f"\n(d) enqueue -> running latency (started_at - created_at), qcluster with 2 workers, ORM broker, "
        f"{len(lat)} jobs of 1 epoch from {QUEUE_START_DATE}, submitted one after another "
        f"({time.perf_counter() - started:.1f} s incl. cluster start)"
    )
    print(
        f"  p50 {percentile(lat, 50) * 1000:.0f} ms   p95 {percentile(lat, 95) * 1000:.0f} ms   "
        f"max {max(lat) * 1000:.0f} ms   min {min(lat) * 1000:.0f} ms"
    )
    if queue["failed"]:
        print(f"  NOTE: jobs not succeeded: {', '.join(queue['failed'])}")


if __name__ == "__main__":
    main()
