"""The worker's side of an `llm-lora` run: the registered base model and the bars in, the engine's
`run_llm_training` in between, the same `TrainingResult` out (the job wrapper in `worker.py`
records it exactly as for the MLP family)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from models_mgmt import selectors
from models_mgmt.artifacts import job_work_dir
from models_mgmt.engine import timeframes
from models_mgmt.engine.checkpoint import CHECKPOINT_NAME
from models_mgmt.engine.config import FineTuningConfig
from models_mgmt.engine.llm.spec import BaseModelRef, LoraSpec
from models_mgmt.engine.llm.training import run_llm_training
from models_mgmt.models import BaseModel, TrainingJob


def _bar_time(value: str | None) -> dt.date | dt.datetime | None:
    return timeframes.parse_bar_time(value) if value else None


def llm_spec_for(config: FineTuningConfig, *, bars_per_year: int = 252) -> LoraSpec:
    base = BaseModel.objects.filter(name=config.base_model or "").first()
    if base is None:
        raise ValueError(f"base model '{config.base_model}' is not registered (any more)")
    ref = BaseModelRef(base.name, base.path, base.ollama_tag, dict(base.files))
    return LoraSpec.from_config(config, ref, bars_per_year=bars_per_year)


def llm_train(job: TrainingJob, config: FineTuningConfig, progress: Any) -> tuple[LoraSpec, Any, Any]:
    spec = llm_spec_for(config, bars_per_year=timeframes.timeframe(job.dataset.timeframe).bars_per_year)
    bars = selectors.dataset_bars_frame(job.dataset, start=_bar_time(config.start_date), end=_bar_time(config.end_date))
    work = job_work_dir(job)
    checkpoint = work / CHECKPOINT_NAME
    result = run_llm_training(
        spec,
        data=bars,
        work_dir=work,
        resume_from=checkpoint if checkpoint.exists() else None,
        on_progress=progress.on_progress,
        on_epoch=progress.on_epoch,
        on_phase=progress.on_phase,
        should_stop=progress.should_stop,
        title=f"TechAnal {job.model.name}: LoRA adapter for {spec.base.name} (job {job.pk})",
    )
    return spec, bars, result
