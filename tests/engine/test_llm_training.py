"""The LoRA trainer on a tiny random Llama (CPU, one thread): stop, kill and resume to the same
step and the same adapter, checkpoints, the artifact and its manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from models_mgmt.engine.llm.artifact import verify_manifest
from models_mgmt.engine.llm.training import run_llm_training
from tests.llm_base import tiny_spec, window_bars


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs, no handler catches it."""


def timeless(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in epoch.items() if k != "duration_s"} for epoch in history]


def adapter(result) -> dict[str, torch.Tensor]:
    return load_file(str(Path(result.artifact_dir) / "adapter" / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tiny_base_dir, tmp_path_factory):
    reports = []
    result = run_llm_training(
        tiny_spec(tiny_base_dir),
        data=window_bars(),
        work_dir=tmp_path_factory.mktemp("whole"),
        on_progress=reports.append,
    )
    return result, reports


def test_a_run_reports_every_step_and_writes_the_artifact(uninterrupted):
    result, reports = uninterrupted
    assert result.status == "succeeded" and result.steps_run == 8  # 16 examples / 4 per step * 2 epochs
    assert [(r.epoch, r.step) for r in reports] == [(e, s) for e in (1, 2) for s in (1, 2, 3, 4)]
    assert reports[-1].progress == 100.0 and all(r.steps_per_epoch == 4 for r in reports)
    assert all(0.0 <= v <= 1.0 for v in result.metrics.values())
    assert set(result.metrics) == {"patternRecognition", "signalAccuracy", "riskAssessment", "overallScore"}
    assert set(result.baselines) == set(result.metrics) and "sharpe" in result.backtest
    directory = Path(result.artifact_dir)
    assert verify_manifest(directory) == []
    manifest = json.loads((directory / "manifest.json").read_text())
    assert {"adapter/adapter_model.safetensors", "adapter/adapter_config.json", "Modelfile", "prompt_template.json",
            "training.json", "data_manifest.json"} == set(manifest["files"])  # fmt: skip
    config = json.loads((directory / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["base_model_name_or_path"] == "tiny-llama"
    assert not any("embed" in m or "lm_head" in m for m in config["target_modules"])
    modelfile = (directory / "Modelfile").read_text().splitlines()
    assert "FROM tiny-llama:latest" in modelfile and "ADAPTER ./adapter" in modelfile
    assert 'PARAMETER stop "</s>"' in modelfile
    assert result.lineage["baseModelFiles"]["model.safetensors"] and result.lineage["seed"] == 42
    # only LoRA weights are in the adapter: the base is never copied
    assert all("lora_" in name for name in adapter(result))


def test_stop_then_resume_continues_at_the_same_step_with_the_same_adapter(uninterrupted, tiny_base_dir, tmp_path):
    whole, _ = uninterrupted
    reports = []
    stopped = run_llm_training(
        tiny_spec(tiny_base_dir),
        data=window_bars(),
        work_dir=tmp_path,
        on_progress=reports.append,
        should_stop=lambda: len(reports) >= 3,
    )
    assert stopped.status == "stopped" and stopped.steps_run == 3  # no step after the request
    assert stopped.artifact_dir is None and (tmp_path / "checkpoint.pt").is_file()
    resumed_reports = []
    resumed = run_llm_training(
        tiny_spec(tiny_base_dir),
        data=window_bars(),
        work_dir=tmp_path,
        resume_from=tmp_path,
        on_progress=resumed_reports.append,
    )
    assert (resumed_reports[0].epoch, resumed_reports[0].step) == (1, 4)  # global step 4 follows step 3
    assert resumed.steps_run == whole.steps_run
    mine, theirs = adapter(resumed), adapter(whole)
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert timeless(resumed.history) == timeless(whole.history)


def test_a_killed_run_resumes_from_its_last_checkpoint(uninterrupted, tiny_base_dir, tmp_path):
    whole, _ = uninterrupted

    def die_at_step_7(report):
        if (report.epoch - 1) * report.steps_per_epoch + report.step == 7:
            raise Killed

    with pytest.raises(Killed):
        run_llm_training(tiny_spec(tiny_base_dir), data=window_bars(), work_dir=tmp_path, on_progress=die_at_step_7)
    reports = []
    resumed = run_llm_training(
        tiny_spec(tiny_base_dir),
        data=window_bars(),
        work_dir=tmp_path,
        resume_from=tmp_path,
        on_progress=reports.append,
    )
    # checkpointSteps=2: the last checkpoint before the kill is global step 6 (epoch 2, step 2)
    assert (reports[0].epoch, reports[0].step) == (2, 3)
    mine, theirs = adapter(resumed), adapter(whole)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_a_checkpoint_of_other_settings_is_refused(uninterrupted, tiny_base_dir, tmp_path):
    reports = []
    run_llm_training(
        tiny_spec(tiny_base_dir), data=window_bars(), work_dir=tmp_path,
        on_progress=reports.append, should_stop=lambda: len(reports) >= 1,
    )  # fmt: skip
    with pytest.raises(ValueError, match="other data or settings"):
        run_llm_training(
            tiny_spec(tiny_base_dir, lora_rank=2), data=window_bars(), work_dir=tmp_path, resume_from=tmp_path
        )


def test_an_example_longer_than_max_sequence_length_is_refused(tiny_base_dir, tmp_path):
    with pytest.raises(ValueError, match="raise maxSequenceLength"):
        run_llm_training(tiny_spec(tiny_base_dir, max_sequence_length=64), data=window_bars(), work_dir=tmp_path)


def test_4bit_needs_a_gpu(tiny_base_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this worker has a GPU")
    with pytest.raises(ValueError, match="load4bit needs a CUDA GPU"):
        run_llm_training(tiny_spec(tiny_base_dir, load_4bit=True), data=window_bars(), work_dir=tmp_path)
