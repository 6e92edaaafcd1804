"""A tiny local base model for `llm-lora` tests: a randomly initialised LlamaForCausalLM and a
byte-level BPE tokenizer trained here on the prompts themselves, saved as a Hugging Face directory
(config, tokenizer, safetensors) exactly like a real base. Nothing is downloaded."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from models_mgmt.engine.bars import load_builtin
from models_mgmt.engine.llm.data import build_instruction_data
from models_mgmt.engine.llm.prompts import render_answer

# A window of the S&P 500 bars that yields ~100 training and ~30 validation examples.
WINDOW = ("2016-01-01", "2016-12-31")


def window_bars(start: str = WINDOW[0], end: str = WINDOW[1]):
    import datetime as dt

    bars = load_builtin("sp500")
    return bars[(bars.index >= dt.date.fromisoformat(start)) & (bars.index <= dt.date.fromisoformat(end))]


def corpus(bars=None) -> list[str]:
    data = build_instruction_data(
        window_bars() if bars is None else bars, horizon=5, breakout_window=20, validation_split=0.2
    )
    answers = [render_answer(list(labels)) for labels in itertools.product((0, 1), repeat=3)]
    return data.train_prompts + data.val_prompts + answers


def build_tiny_base(
    directory: Path, *, texts: list[str] | None = None, vocab_size: int = 2000, hidden: int = 48, layers: int = 2
) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts if texts is not None else corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(str(directory))
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        # A pretrained head has large rows; the default 0.02 would cap every logit near 1, and LoRA
        # (which never touches the head) could not make any answer likely.
        initializer_range=0.3,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(directory), safe_serialization=True)
    return directory


# --- Fixtures (registered for the whole suite in tests/conftest.py) ----------------------------


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> Path:
    """One tiny base model per test session (building it takes a few seconds)."""
    import torch

    torch.set_num_threads(1)
    return build_tiny_base(tmp_path_factory.mktemp("llm") / "tiny-llama")


def tiny_spec(base_dir: Path, **overrides):
    """A LoraSpec on the tiny base that trains in seconds on one CPU thread."""
    from models_mgmt.engine.llm.base import check_base_dir
    from models_mgmt.engine.llm.spec import BaseModelRef, LoraSpec

    check = check_base_dir(base_dir)
    settings = {
        "epochs": 2,
        "learning_rate": 0.01,
        "batch_size": 4,
        "training_examples": 16,
        "validation_split": 0.05,
        "lora_rank": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.1,
        "max_sequence_length": 512,
        "early_stopping_patience": 0,
        "checkpoint_steps": 2,
        "num_threads": 1,
        **overrides,
    }
    return LoraSpec(base=BaseModelRef("tiny-llama", str(base_dir), "tiny-llama:latest", check.files), **settings)
