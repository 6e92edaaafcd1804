"""The entry point a worker calls for an `llm-lora` job: `run_llm_training`, the twin of
`engine.training.run_training`, returning the same `TrainingResult` (plus lineage), so the
version registry, comparison and dashboard treat both families alike.

    spec = LoraSpec.from_config(config, BaseModelRef(name, path, ollama_tag, files))
    result = run_llm_training(spec, data=bars, work_dir=..., resume_from=..., on_progress=...,
                              on_epoch=..., should_stop=...)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checkpoint import CHECKPOINT_NAME
from ..evaluation import backtest, majority_baselines, task_metrics
from ..reporting import EpochReport, ProgressReport
from ..training import ARTIFACT_DIR, TrainingResult, fit_summary
from .artifact import write_llm_artifact
from .data import build_instruction_data
from .evaluation import option_probabilities
from .spec import LoraSpec
from .tokens import encode_prompts

if TYPE_CHECKING:
    import pandas as pd  # heavy: loaded on first use, not when the module is imported

# Training examples re-scored after training to show the adapter learned them (overfit check).
TRAIN_SCORED_EXAMPLES = 256


@dataclass(frozen=True)
class LlmTrainingResult(TrainingResult):
    lineage: dict[str, Any] = field(default_factory=dict)
    training_metrics: dict[str, float] = field(default_factory=dict)
    tokens_seen: int = 0

    @property
    def extra_metadata(self) -> dict[str, Any]:
        """Version metadata beyond the MLP family's: the family and the overfit check."""
        return {"family": "llm-lora", "trainingMetrics": self.training_metrics, "tokensSeen": self.tokens_seen}


def run_llm_training(
    spec: LoraSpec,
    *,
    data: pd.DataFrame,
    work_dir: str | Path,
    resume_from: str | Path | None = None,
    on_progress: Callable[[ProgressReport], None] | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
    should_stop: Any = None,
    title: str = "TechAnal LoRA adapter",
) -> LlmTrainingResult:
    from .trainer import EVAL_BATCH, fit_lora  # heavy: the trainer pulls torch, transformers and peft

    def phase(name: str) -> None:  # the MLP family's phases (engine.training.PHASES), in order
        if on_phase is not None:
            on_phase(name)

    started = time.perf_counter()
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    phase("building_features")
    examples = build_instruction_data(
        data,
        horizon=spec.horizon,
        breakout_window=spec.breakout_window,
        validation_split=spec.validation_split,
        training_examples=spec.training_examples,
    )
    if resume_from is not None and Path(resume_from).is_dir():
        resume_from = Path(resume_from) / CHECKPOINT_NAME
    phase("training")
    outcome = fit_lora(
        spec,
        examples,
        checkpoint_path=work / CHECKPOINT_NAME,
        resume_from=resume_from,
        on_progress=on_progress,
        on_epoch=on_epoch,
        should_stop=should_stop,
    )
    import torch  # heavy: only the training worker loads torch

    phase("evaluating")
    device = torch.device(outcome.device)
    batch = max(1, min(EVAL_BATCH, spec.batch_size * 2))
    codec, tokenizer, model = outcome.codec, outcome.tokenizer, outcome.model
    timed_start = time.perf_counter()
    val_probabilities = option_probabilities(
        model, codec, encode_prompts(tokenizer, codec, examples.val_prompts), batch_size=batch, device=device
    )
    per_example_ms = (time.perf_counter() - timed_start) * 1000 / max(len(examples.val_prompts), 1)
    scored = slice(-TRAIN_SCORED_EXAMPLES, None)
    train_probabilities = option_probabilities(
        model, codec, encode_prompts(tokenizer, codec, examples.train_prompts[scored]), batch_size=batch, device=device
    )
    split = examples.split
    metrics = task_metrics(val_probabilities, split.y_val)
    baselines = majority_baselines(examples.y_train, split.y_val)
    phase("backtesting")
    trades = backtest(
        val_probabilities[:, 0], split.val_next_return, fee=spec.fee_per_trade, periods_per_year=spec.bars_per_year
    )
    manifest = examples.manifest()
    lineage = {
        "baseModel": spec.base.name,
        "baseModelPath": spec.base.path,
        "ollamaTag": spec.base.ollama_tag,
        "baseModelFiles": dict(spec.base.files),
        "dataWindow": {"train": manifest["trainWindow"], "validation": manifest["validationWindow"]},
        "examplesSha256": {"train": manifest["trainSha256"], "validation": manifest["validationSha256"]},
        "seed": spec.seed,
    }
    summary: dict[str, Any] = {
        **fit_summary(outcome, weights_changed=outcome.weights_changed),
        "metrics": metrics,
        "baselines": baselines,
        "backtest": trades,
        "train_samples": len(examples.train_prompts),
        "validation_samples": len(examples.val_prompts),
        "embargo_samples": split.embargo_samples,
        "train_window": tuple(manifest["trainWindow"]),
        "validation_window": split.validation_window,
        "steps_run": outcome.steps_run,
        "hyperparameters": spec.hyperparameters(),
        "history": outcome.history,
        "checkpoint_path": outcome.checkpoint_path,
        "lineage": lineage,
        "training_metrics": task_metrics(train_probabilities, examples.y_train[scored]),
        "tokens_seen": outcome.tokens_seen,
    }
    artifact = None
    if outcome.status == "succeeded" and outcome.weights_changed:
        phase("exporting")
        stop = [tokenizer.eos_token] if tokenizer.eos_token else []
        spec_doc = {k: v for k, v in asdict(spec).items() if k != "base"}
        artifact = write_llm_artifact(
            work / ARTIFACT_DIR,
            model=model,
            base_tag=spec.base.ollama_tag,
            base_name=spec.base.name,
            stop=stop,
            num_ctx=spec.max_sequence_length,
            training={"family": "llm-lora", "spec": spec_doc, **summary, "scoringMsPerExample": per_example_ms},
            data_manifest=manifest,
            title=title,
        )
    return LlmTrainingResult(
        **summary,
        training_duration_s=round(time.perf_counter() - started, 3),
        artifact_dir=artifact.path if artifact else None,
        checksum=artifact.checksum if artifact else None,
        response_time_ms=round(per_example_ms, 4) if artifact else None,
    )
