"""The LoRA training loop: transformers loads the local base, peft wraps it, a plain PyTorch loop
trains the adapter with the product's rules (those of `engine.trainer` for the MLP family).

* **Local only** -- the base loads with `local_files_only=True` and the Hugging Face offline
  switches set, from a directory checked against its registered sha256s.
* **Loss on answer tokens only** -- prompt tokens carry the ignore label (`tokens.py`).
* **Optimiser steps** -- `batchSize` examples per micro-batch, `gradientAccumulation`
  micro-batches per step; the loss is the mean over the step's answer tokens.
* **Stop within one step** -- the stop check runs before every optimiser step.
* **Checkpoints** every `checkpointSteps` steps, at every epoch end and on a stop: adapter weights,
  optimiser moments, RNG and shuffling state, the epoch's order and position. Resuming continues at
  the same global step and gives the same adapter as a run that was never interrupted.
* **Best trained epoch** on validation loss, as for the MLP family: the untouched base is scored
  first (`start_val_loss`) but the adapter kept is always the best *trained* epoch's; whether it
  beat the base is reported (`improved_on_start`). Early stopping counts epochs without a new best.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CheckpointWriter, load_checkpoint
from ..evaluation import task_metrics
from ..reporting import EpochReport, ProgressReport
from ..trainer import as_stop_check
from .base import verify_base_dir
from .data import InstructionData
from .evaluation import answer_loss, option_probabilities, token_loss_sum
from .spec import LoraSpec
from .tokens import AnswerCodec, encode_examples, encode_prompts

CHECKPOINT_FORMAT = "llm-lora/1"
EVAL_BATCH = 16


@dataclass
class LoraFitOutcome:
    status: str  # "succeeded" | "stopped"
    model: Any  # the peft model holding the best adapter
    tokenizer: Any
    codec: AnswerCodec
    epochs_run: int
    best_epoch: int  # the trained epoch whose adapter was kept (0 only if stopped in epoch 1)
    best_val_loss: float
    final_val_loss: float
    final_train_loss: float | None
    start_val_loss: float | None  # the untouched base on the same validation window
    best_train_loss: float | None  # at best_epoch
    weights_changed: bool  # False: the kept adapter equals its initialisation exactly
    steps_run: int
    tokens_seen: int
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint_path: str | None = None
    device: str = "cpu"


@dataclass
class _State:
    epoch: int = 0  # finished epochs
    step_in_epoch: int = 0  # optimiser steps done in the epoch in progress
    steps_run: int = 0  # global optimiser step
    tokens_seen: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    best_train_loss: float | None = None
    start_val_loss: float | None = None
    bad_epochs: int = 0
    epoch_loss_sum: float = 0.0
    epoch_loss_tokens: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def device_of() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_base(spec: LoraSpec, device: torch.device) -> tuple[Any, Any]:
    """The base model and tokenizer, from the registered directory only: nothing is downloaded."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: only the training worker loads it

    verify_base_dir(spec.base.path, spec.base.files)
    tokenizer = AutoTokenizer.from_pretrained(spec.base.path, local_files_only=True)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if device.type == "cuda":
        kwargs["dtype"] = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        kwargs["dtype"] = torch.float32
    if spec.load_4bit:
        if device.type != "cuda":
            raise ValueError("load4bit needs a CUDA GPU; this worker has none")
        try:
            from transformers import BitsAndBytesConfig  # heavy: only the training worker loads it

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=kwargs["dtype"]
            )
        except ImportError as exc:
            raise ValueError("load4bit needs the bitsandbytes package on the worker") from exc
    model: Any = AutoModelForCausalLM.from_pretrained(spec.base.path, **kwargs)
    if not spec.load_4bit:
        model = model.to(device)
    return model, tokenizer


def wrap_lora(spec: LoraSpec, model: Any) -> Any:
    from peft import LoraConfig, get_peft_model  # heavy: only the training worker loads it

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in spec.target_modules if m not in present]
    if missing:
        raise ValueError(f"the base model has no {', '.join(missing)} projections to adapt")
    if spec.load_4bit:
        from peft import prepare_model_for_kbit_training  # heavy: only the training worker loads it

        model = prepare_model_for_kbit_training(model)
    torch.manual_seed(spec.seed)  # the LoRA A matrices are drawn here
    config = LoraConfig(
        r=spec.lora_rank,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=list(spec.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def adapter_state(model: Any) -> dict[str, torch.Tensor]:
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def load_adapter_state(model: Any, state: dict[str, torch.Tensor]) -> None:
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if set(params) != set(state):
        raise ValueError("checkpoint adapter does not match this LoRA configuration")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name].to(p.device, p.dtype))


def fingerprint(spec: LoraSpec, data: InstructionData) -> str:
    digest = hashlib.sha256(json.dumps(data.manifest(), sort_keys=True).encode())
    digest.update(json.dumps(spec.decisive(), sort_keys=True, default=list).encode())
    return digest.hexdigest()


@contextmanager
def _reproducible(spec: LoraSpec, device: torch.device) -> Iterator[None]:
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    if spec.num_threads:
        torch.set_num_threads(spec.num_threads)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.set_num_threads(previous_threads)


def fit_lora(
    spec: LoraSpec,
    data: InstructionData,
    *,
    checkpoint_path: str | Path | None = None,
    resume_from: str | Path | None = None,
    on_progress: Callable[[ProgressReport], None] | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    should_stop: Any = None,
) -> LoraFitOutcome:
    device = device_of()
    resume = load_checkpoint(resume_from) if resume_from else None
    writer = CheckpointWriter(checkpoint_path) if checkpoint_path else None
    try:
        with _reproducible(spec, device):
            return _fit(
                spec,
                data,
                device=device,
                writer=writer,
                checkpoint_path=Path(checkpoint_path) if checkpoint_path else None,
                resume=resume,
                on_progress=on_progress,
                on_epoch=on_epoch,
                stop=as_stop_check(should_stop),
            )
    finally:
        if writer is not None:
            writer.close()


def _fit(
    spec: LoraSpec,
    data: InstructionData,
    *,
    device: torch.device,
    writer: CheckpointWriter | None,
    checkpoint_path: Path | None,
    resume: dict[str, Any] | None,
    on_progress: Callable[[ProgressReport], None] | None,
    on_epoch: Callable[[EpochReport], None] | None,
    stop: Callable[[], bool],
) -> LoraFitOutcome:
    base, tokenizer = load_base(spec, device)
    codec = AnswerCodec.for_tokenizer(tokenizer)
    train = encode_examples(
        encode_prompts(tokenizer, codec, data.train_prompts), codec, data.y_train, spec.max_sequence_length
    )
    val_prompt_ids = encode_prompts(tokenizer, codec, data.val_prompts)
    val = encode_examples(val_prompt_ids, codec, data.y_val, spec.max_sequence_length)
    model = wrap_lora(spec, base)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=spec.learning_rate, weight_decay=spec.weight_decay)
    generator = torch.Generator().manual_seed(spec.seed)
    print_ = fingerprint(spec, data)
    eval_batch = max(1, min(EVAL_BATCH, spec.batch_size * 2))

    def validate() -> tuple[float, dict[str, float]]:
        loss = answer_loss(model, val, pad_id=codec.pad_id, batch_size=eval_batch, device=device)
        probabilities = option_probabilities(model, codec, val_prompt_ids, batch_size=eval_batch, device=device)
        return loss, task_metrics(probabilities, data.y_val)

    state = _State()
    order: torch.Tensor | None = None
    initial = adapter_state(model)  # the seeded initialisation (LoRA B is zero: the base itself)
    best = initial
    if resume is not None:
        if resume.get("format") != CHECKPOINT_FORMAT or resume.get("fingerprint") != print_:
            raise ValueError("checkpoint was written for other data or settings; it cannot be resumed here")
        load_adapter_state(model, resume["adapter"])
        optimizer.load_state_dict(resume["optimizer"])
        torch.set_rng_state(resume["torch_rng"])
        generator.set_state(resume["generator"])
        order = resume["order"]
        best = resume["best_adapter"]
        state = _State(**resume["state"])
        last_val = state.history[-1]["val_loss"] if state.history else (state.start_val_loss or math.inf)
        last_metrics = state.history[-1]["metrics"] if state.history else {}
    else:
        last_val, last_metrics = validate()
        state.start_val_loss = last_val

    def checkpoint() -> None:
        if writer is None:
            return
        writer.submit(
            {
                "format": CHECKPOINT_FORMAT,
                "fingerprint": print_,
                "adapter": adapter_state(model),
                "best_adapter": best,
                "optimizer": copy.deepcopy(optimizer.state_dict()),
                "torch_rng": torch.get_rng_state(),
                "generator": generator.get_state(),
                "order": order,
                "state": copy.deepcopy(asdict(state)),
            }
        )

    n = len(train)
    micro = spec.batch_size
    per_step = micro * spec.gradient_accumulation
    steps_per_epoch = max(1, math.ceil(n / per_step))
    total_steps = max(1, spec.epochs * steps_per_epoch)
    status = "succeeded"
    last_train_loss = state.history[-1]["train_loss"] if state.history else None
    patience = spec.early_stopping_patience
    started, steps_this_call = time.perf_counter(), 0
    model.train()

    stopped_early = patience > 0 and state.bad_epochs >= patience
    while state.epoch < spec.epochs and not stopped_early:
        epoch = state.epoch + 1
        epoch_started = time.perf_counter()
        if order is None:
            order = torch.randperm(n, generator=generator)
            state.step_in_epoch, state.epoch_loss_sum, state.epoch_loss_tokens = 0, 0.0, 0
        while state.step_in_epoch < steps_per_epoch:
            if stop():
                status = "stopped"
                break
            step = state.step_in_epoch
            chosen = order[step * per_step : (step + 1) * per_step].tolist()
            chunks = [[train[i] for i in chosen[j : j + micro]] for j in range(0, len(chosen), micro)]
            tokens = sum(sum(1 for t in labels[1:] if t != -100) for _, labels in (train[i] for i in chosen))
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for chunk in chunks:
                loss_sum, _ = token_loss_sum(model, chunk, pad_id=codec.pad_id, device=device)
                (loss_sum / max(tokens, 1)).backward()
                step_loss += float(loss_sum.detach())
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            state.step_in_epoch += 1
            state.steps_run += 1
            state.tokens_seen += sum(len(train[i][0]) for i in chosen)
            state.epoch_loss_sum += step_loss
            state.epoch_loss_tokens += tokens
            steps_this_call += 1
            if on_progress is not None:
                done = (epoch - 1) * steps_per_epoch + state.step_in_epoch
                rate = (time.perf_counter() - started) / steps_this_call
                on_progress(
                    ProgressReport(
                        epoch=epoch,
                        total_epochs=spec.epochs,
                        step=state.step_in_epoch,
                        steps_per_epoch=steps_per_epoch,
                        progress=round(100.0 * done / total_steps, 2),
                        loss=state.epoch_loss_sum / max(state.epoch_loss_tokens, 1),
                        val_loss=last_val,
                        metrics=dict(last_metrics),
                        eta_s=round(rate * (total_steps - done), 2),
                    )
                )
            if state.steps_run % spec.checkpoint_steps == 0 and state.step_in_epoch < steps_per_epoch:
                checkpoint()
        if status == "stopped":
            if state.steps_run > 0:
                checkpoint()  # a requeued run goes on from this very step
            break

        last_train_loss = state.epoch_loss_sum / max(state.epoch_loss_tokens, 1)
        last_val, last_metrics = validate()
        improved = last_val < state.best_loss
        if improved:
            state.best_loss, state.best_epoch, state.bad_epochs = last_val, epoch, 0
            state.best_train_loss = last_train_loss
            best = adapter_state(model)
        else:
            state.bad_epochs += 1
        state.epoch = epoch
        order = None
        report = EpochReport(
            epoch=epoch,
            train_loss=last_train_loss,
            val_loss=last_val,
            metrics=last_metrics,
            duration_s=round(time.perf_counter() - epoch_started, 4),
            best_epoch=state.best_epoch,
            improved=improved,
        )
        state.history.append(asdict(report))
        checkpoint()
        if on_epoch is not None:
            on_epoch(report)
        stopped_early = patience > 0 and state.bad_epochs >= patience

    load_adapter_state(model, best)
    model.eval()
    changed = any(not torch.equal(best[name], initial[name]) for name in initial)
    return LoraFitOutcome(
        status=status,
        model=model,
        tokenizer=tokenizer,
        codec=codec,
        epochs_run=state.epoch,
        best_epoch=state.best_epoch,
        best_val_loss=state.best_loss if state.best_epoch else (state.start_val_loss or math.inf),
        final_val_loss=last_val,
        final_train_loss=last_train_loss,
        start_val_loss=state.start_val_loss,
        best_train_loss=state.best_train_loss,
        weights_changed=changed,
        steps_run=state.steps_run,
        tokens_seen=state.tokens_seen,
        history=state.history,
        checkpoint_path=str(checkpoint_path) if checkpoint_path is not None and state.steps_run > 0 else None,
        device=device.type,
    )
