"""GPU check of the default family: the demo model trained in-process on the CPU and on CUDA, and
through torchrun (DistributedDataParallel) on all GPUs with nccl, samples/s each beside the CPU's.

Run from the repository root::

    .venv/bin/python bench/gpu_check.py                 # about 1 minute on a GPU host, <= 5 minutes
    .venv/bin/python bench/gpu_check.py --epochs 5

The model is the demo model's (seed_demo): the multitask-mlp family's defaults (hidden 64/32,
batch 64, AdamW lr 1e-3, one torch thread) on the S&P 500 built-in bars (arch's daily bars), with
early stopping off. Samples/s = training samples x epochs / the sum of the epoch durations that
the run reported (each epoch's training and its validation; for torchrun, rank 0's epochs, while
every rank trains its shard), so start-up, evaluation and export are not counted; wall seconds
of the whole run are printed beside them. Without a GPU it prints the CPU rows (in-process and
torchrun with 2 gloo ranks) and says that no GPU was there. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _row(label: str, result: Any, wall_s: float, cpu_rate: float | None) -> float:
    trained_s = sum(row["duration_s"] for row in result.history)
    rate = result.train_samples * result.epochs_run / trained_s
    ratio = f"{rate / cpu_rate:6.2f}x" if cpu_rate else "  1.00x"
    print(
        f"{label:<28} {rate:>12,.0f} samples/s {ratio}   wall {wall_s:6.1f} s   "
        f"val loss {result.best_val_loss:.4f}   overallScore {result.metrics['overallScore']:.4f}",
        flush=True,
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import torch

    from models_mgmt.engine.bars import load_builtin
    from models_mgmt.engine.distributed import run_distributed
    from models_mgmt.engine.placement import DistributedSettings, device_label
    from models_mgmt.engine.spec import TrainingSpec
    from models_mgmt.engine.training import run_training

    torch.set_num_threads(1)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    print(
        f"host: {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"GPUs: {gpus} {torch.cuda.get_device_name(0) if gpus else ''}".rstrip()
    )
    spec = TrainingSpec(epochs=args.epochs, early_stopping_patience=0)  # the demo model's family defaults
    bars = load_builtin("sp500")
    print(
        f"data: sp500, {len(bars)} bars; spec: hidden {spec.hidden_sizes}, batch {spec.batch_size}, "
        f"{spec.epochs} epochs"
    )

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        work = Path(scratch)

        def in_process(device: str) -> tuple[Any, float]:
            started = time.perf_counter()
            result = run_training(spec, data=bars, work_dir=work / f"in-{device}", device=device)
            return result, time.perf_counter() - started

        def ranks(device: str, n: int) -> tuple[Any, float]:
            # every rank takes an equal share of each batch: on 3, 5, 6, 7 GPUs the nearest multiple below
            shared = dataclasses.replace(spec, batch_size=max(n, spec.batch_size // n * n))
            if shared.batch_size != spec.batch_size:
                print(f"{n} ranks: batch {shared.batch_size} (a multiple of {n}) instead of {spec.batch_size}")
            started = time.perf_counter()
            result = run_distributed(
                shared, data=bars, work_dir=work / f"ddp-{device}", distributed=DistributedSettings(n), device=device
            )
            return result, time.perf_counter() - started

        cpu_rate = _row("in-process cpu", *in_process("cpu"), None)
        cpu_ranks = min(2, os.cpu_count() or 1)
        _row(f"torchrun {device_label('cpu', DistributedSettings(cpu_ranks))}", *ranks("cpu", cpu_ranks), cpu_rate)
        if not gpus:
            print("no GPU on this machine: the CUDA rows (in-process cuda, torchrun nccl on all GPUs) did not run")
            return
        _row(f"in-process {device_label('cuda', None)}", *in_process("cuda"), cpu_rate)
        _row(f"torchrun {device_label('cuda', DistributedSettings(gpus))}", *ranks("cuda", gpus), cpu_rate)


if __name__ == "__main__":
    main()
