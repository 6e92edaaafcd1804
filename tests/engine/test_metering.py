"""The meter with a fake clock and fake process times gives exact figures; with the real ones, a
real training run never uses more CPU seconds than wall seconds x the CPUs it may run on."""

from __future__ import annotations

import sys
from types import SimpleNamespace

from models_mgmt.engine.metering import (
    SAMPLES,
    TOKENS,
    CostSample,
    Meter,
    ProcessTimes,
    cuda_in_use,
    usable_cpus,
    work_units,
)


class FakeProcess:
    def __init__(self) -> None:
        self.now, self.cpu, self.rss, self.gpu = 100.0, 7.0, 1000, False

    def clock(self) -> float:
        return self.now

    def times(self) -> ProcessTimes:
        return ProcessTimes(cpu_s=self.cpu, peak_rss_bytes=self.rss)


def meter_of(fake: FakeProcess, carried: CostSample | None = None) -> Meter:
    return Meter(
        carried=carried, clock=fake.clock, times=fake.times, gpu_in_use=lambda: fake.gpu, reset_peak=lambda: True
    )


def test_a_fake_clock_gives_exact_figures():
    fake = FakeProcess()
    meter = meter_of(fake)
    meter.start()
    fake.now, fake.cpu, fake.rss = 160.0, 97.0, 5000
    assert meter.sample() == CostSample(wall_s=60.0, cpu_s=90.0, gpu_s=0.0, peak_rss_bytes=5000)
    fake.gpu = True
    fake.now, fake.cpu = 190.0, 100.0
    meter.set_units(512 * 3)
    sample = meter.sample()
    assert sample == CostSample(wall_s=90.0, cpu_s=93.0, gpu_s=30.0, peak_rss_bytes=5000, units=1536)


def test_gpus_held_by_child_ranks_count_wall_times_gpus_from_each_change():
    fake = FakeProcess()
    meter = meter_of(fake)
    meter.start()
    fake.now = 110.0
    meter.set_external_gpus(4)  # the ranks start: the 10 s before count nothing
    fake.now = 115.0
    assert meter.sample().gpu_s == 20.0  # 5 s x 4 GPUs
    fake.now = 120.0
    meter.set_external_gpus(0)  # the ranks end: 5 s more x 4
    fake.now = 150.0
    assert meter.sample().gpu_s == 40.0
    fake.gpu = True  # this process's own use counts besides the ranks'
    meter.set_external_gpus(2)
    fake.now = 160.0
    assert meter.sample().gpu_s == 40.0 + 10.0 * 3


def test_a_resumed_run_adds_to_what_earlier_attempts_used():
    fake = FakeProcess()
    carried = CostSample(wall_s=10.0, cpu_s=4.0, gpu_s=1.0, peak_rss_bytes=9000, units=100)
    meter = meter_of(fake, carried)
    assert meter.sample() == carried  # not started: what was carried
    meter.start()
    fake.now, fake.cpu, fake.rss = 105.0, 9.0, 2000
    meter.set_units(50)  # a result that counts fewer than before never lowers the units
    assert meter.sample() == CostSample(wall_s=15.0, cpu_s=6.0, gpu_s=1.0, peak_rss_bytes=9000, units=100)
    meter.add_units(20)
    assert meter.sample().units == 120


def test_work_units_are_tokens_for_a_language_model_else_samples_times_epochs():
    class Result:
        train_samples, epochs_run = 300, 4

    class LlmResult(Result):
        tokens_seen = 12345

    assert work_units(Result()) == (1200, SAMPLES)
    assert work_units(LlmResult()) == (12345, TOKENS)


def test_cpu_seconds_never_exceed_wall_times_cores_on_a_real_run(bars, spec, tmp_path):
    import torch

    from models_mgmt.engine.training import run_training

    torch.set_num_threads(1)
    meter = Meter()
    meter.start()
    samples = []
    run_training(spec, data=bars, work_dir=tmp_path, on_progress=lambda _: samples.append(meter.sample()))
    samples.append(meter.sample())
    assert samples[-1].cpu_s > 0 and samples[-1].peak_rss_bytes > 0
    for sample in samples:
        assert sample.cpu_s <= sample.wall_s * usable_cpus()


def test_the_gpu_counts_while_this_process_holds_tensors_on_it_not_for_a_context_alone(monkeypatch):
    allocated = {0: 0, 1: 0}
    cuda = SimpleNamespace(
        is_initialized=lambda: True, device_count=lambda: 2, memory_allocated=lambda device: allocated[device]
    )
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    assert not cuda_in_use()  # a context left by an earlier job, nothing allocated
    allocated[1] = 4096
    assert cuda_in_use()
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=SimpleNamespace(is_initialized=lambda: False)))
    assert not cuda_in_use()
