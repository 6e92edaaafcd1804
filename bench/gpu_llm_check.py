"""GPU check of the llm-lora family: a randomly initialised ~100M-parameter Llama, bf16, LoRA,
trained on a few hundred instruction examples built from S&P 500 bars.

Run from the repository root::

    .venv/bin/python bench/gpu_llm_check.py            # one GPU, about 2-4 minutes
    .venv/bin/python bench/gpu_llm_check.py --tiny     # CPU smoke test of the script (about a minute)

Prints:

* tokens/s of the product's trainer (`engine.llm.training.run_llm_training`: checkpoints, stop
  checks, progress callbacks, per-epoch validation) -- measured between its first and last
  optimiser step, so loading and the final scoring are not counted;
* tokens/s of a bare PyTorch loop on the same model, LoRA adapter, batches and optimiser (nothing
  else: no checkpoint, no validation, no callbacks) and the ratio of the two;
* peak GPU memory (torch.cuda.max_memory_allocated) of each;
* steps to fit: the first optimiser step after which the epoch's mean answer-token loss is below
  --fit-loss, and the training-set accuracy of the final adapter (chance is 0.5 per task).

The base model is built here from a config with random weights and a byte-level BPE tokenizer
trained on the prompts themselves, saved as a Hugging Face directory: nothing is downloaded.
A benchmark, not a test: it never fails on a slow figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = {
    # ~100M parameters: 12 x (4 x 768^2 + 3 x 768 x 2048) + 2 x 8000 x 768
    "full": {"hidden": 768, "intermediate": 2048, "layers": 12, "heads": 12, "kv_heads": 4, "vocab": 8000},
    "tiny": {"hidden": 64, "intermediate": 128, "layers": 2, "heads": 4, "kv_heads": 2, "vocab": 1500},
}


def build_base(directory: Path, texts: list[str], size: dict[str, int]) -> int:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=size["vocab"],
            special_tokens=["<s>", "</s>", "<pad>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(str(directory))
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=size["hidden"],
        intermediate_size=size["intermediate"],
        num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"],
        num_key_value_heads=size["kv_heads"],
        max_position_embeddings=1024,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        initializer_range=0.3,  # a pretrained head has large rows; LoRA never touches the head
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(directory), safe_serialization=True)
    return sum(p.numel() for p in model.parameters())


def bare_loop(spec, examples, steps: int) -> dict[str, float]:
    """The same model, adapter, batches and optimiser in a plain loop; tokens/s over steps 2..N."""
    import torch

    from models_mgmt.engine.llm.evaluation import token_loss_sum
    from models_mgmt.engine.llm.tokens import AnswerCodec, encode_examples, encode_prompts
    from models_mgmt.engine.llm.trainer import device_of, load_base, wrap_lora

    device = device_of()
    base, tokenizer = load_base(spec, device)
    codec = AnswerCodec.for_tokenizer(tokenizer)
    train = encode_examples(
        encode_prompts(tokenizer, codec, examples.train_prompts), codec, examples.y_train, spec.max_sequence_length
    )
    model = wrap_lora(spec, base)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=spec.learning_rate)
    generator = torch.Generator().manual_seed(spec.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    order: list[int] = []
    tokens, started = 0, None
    for step in range(steps):
        if len(order) < spec.batch_size:
            order += torch.randperm(len(train), generator=generator).tolist()
        chosen, order = order[: spec.batch_size], order[spec.batch_size :]
        chunk = [train[i] for i in chosen]
        count = sum(sum(1 for t in labels[1:] if t != -100) for _, labels in chunk)
        optimizer.zero_grad(set_to_none=True)
        loss_sum, _ = token_loss_sum(model, chunk, pad_id=codec.pad_id, device=device)
        (loss_sum / count).backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step == 0:
            started = time.perf_counter()
        else:
            tokens += sum(len(ids) for ids, _ in chunk)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"tokens_per_s": tokens / elapsed if elapsed > 0 else float("nan"), "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model on CPU: smoke-test the script")
    parser.add_argument("--examples", type=int, default=None, help="training examples (default 400; tiny 32)")
    parser.add_argument("--epochs", type=int, default=None, help="default 12; tiny 2")
    parser.add_argument("--batch-size", type=int, default=None, help="default 16; tiny 8")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--fit-loss", type=float, default=0.1, help="answer-token loss that counts as fitted")
    args = parser.parse_args()

    import torch

    from models_mgmt.engine.bars import load_builtin
    from models_mgmt.engine.llm.base import check_base_dir
    from models_mgmt.engine.llm.data import build_instruction_data
    from models_mgmt.engine.llm.prompts import render_answer
    from models_mgmt.engine.llm.spec import BaseModelRef, LoraSpec
    from models_mgmt.engine.llm.training import run_llm_training

    size = SIZES["tiny" if args.tiny else "full"]
    examples_n = args.examples or (32 if args.tiny else 400)
    epochs = args.epochs or (2 if args.tiny else 12)
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        print("no CUDA GPU here: run with --tiny for a CPU smoke test", file=sys.stderr)
        sys.exit(2)
    if args.tiny:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    bars = load_builtin("sp500")
    first, last = (
        (dt.date(2016, 1, 1), dt.date(2016, 9, 30)) if args.tiny else (dt.date(2012, 1, 1), dt.date(2018, 12, 31))
    )
    bars = bars[(bars.index >= first) & (bars.index <= last)]
    validation_split = 0.1 if args.tiny else 0.2
    with tempfile.TemporaryDirectory(prefix="gpu-llm-check-") as scratch:
        root = Path(scratch)
        probe = build_instruction_data(bars, horizon=5, breakout_window=20, validation_split=validation_split)
        texts = (
            probe.train_prompts
            + probe.val_prompts
            + [render_answer([a, b, c]) for a in (0, 1) for b in (0, 1) for c in (0, 1)]
        )
        begin = time.perf_counter()
        parameters = build_base(root / "base", texts, size)
        check = check_base_dir(root / "base")
        print(f"base: random Llama, {parameters / 1e6:.1f}M parameters, built in {time.perf_counter() - begin:.1f} s")
        print(f"device: {torch.cuda.get_device_name() if cuda else 'cpu'}, dtype {'bf16' if cuda else 'float32'}")
        spec = LoraSpec(
            base=BaseModelRef("bench-llama", str(root / "base"), "bench-llama:latest", check.files),
            epochs=epochs,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size or (8 if args.tiny else 16),
            validation_split=validation_split,
            early_stopping_patience=0,
            training_examples=examples_n,
            lora_rank=16,
            lora_alpha=32,
            lora_dropout=0.0,
            target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
            max_sequence_length=1024,
            checkpoint_steps=50,
        )
        examples = build_instruction_data(
            bars, horizon=5, breakout_window=20, validation_split=validation_split, training_examples=examples_n
        )
        stamps: list[tuple[int, int, float, float]] = []  # (epoch, global step, time, epoch mean loss so far)

        def on_progress(report) -> None:
            if cuda:
                torch.cuda.synchronize()
            step = (report.epoch - 1) * report.steps_per_epoch + report.step
            stamps.append((report.epoch, step, time.perf_counter(), report.loss))

        if cuda:
            torch.cuda.reset_peak_memory_stats()
        begin = time.perf_counter()
        result = run_llm_training(spec, data=bars, work_dir=root / "work", on_progress=on_progress)
        total = time.perf_counter() - begin
        product_peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        per_step_tokens = result.tokens_seen / max(result.steps_run, 1)
        # Step-to-step intervals inside an epoch only: the validation between epochs is not training.
        gaps = [b[2] - a[2] for a, b in itertools.pairwise(stamps) if a[0] == b[0]]
        product_rate = per_step_tokens * len(gaps) / sum(gaps) if gaps else float("nan")
        first_step, last_step = stamps[0][1], stamps[-1][1]
        fitted = next((step for _, step, _, loss in stamps if loss < args.fit_loss), None)
        bare = bare_loop(spec, examples, steps=min(result.steps_run, 60))

        print(f"examples: {result.train_samples} train, {result.validation_samples} validation; "
              f"{per_step_tokens:.0f} tokens per optimiser step (batch {spec.batch_size})")  # fmt: skip
        print(f"product trainer: {product_rate:,.0f} tokens/s over {len(gaps)} step intervals of steps "
              f"{first_step}-{last_step} (whole run with load, validation and scoring: {total:.1f} s)")  # fmt: skip
        print(f"bare PyTorch loop: {bare['tokens_per_s']:,.0f} tokens/s; product/bare = "
              f"{product_rate / bare['tokens_per_s']:.2f}")  # fmt: skip
        print(f"peak GPU memory: product {product_peak:.2f} GiB, bare {bare['peak_gib']:.2f} GiB")
        print(f"steps to fit (epoch-mean answer loss < {args.fit_loss}): {fitted if fitted else 'not reached'} "
              f"of {result.steps_run}")  # fmt: skip
        print(f"training-set accuracy: {json.dumps(result.training_metrics)}; validation: {json.dumps(result.metrics)}")
        if not math.isfinite(product_rate):
            sys.exit(1)


if __name__ == "__main__":
    main()
