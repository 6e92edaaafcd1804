"""llm-lora instruction data: prompts without look-ahead, answers from the labels, the MLP split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models_mgmt.engine.dataset import build_split
from models_mgmt.engine.families import LLM_LORA
from models_mgmt.engine.labels import TASKS
from models_mgmt.engine.llm.base import BaseModelError, check_base_dir, verify_base_dir
from models_mgmt.engine.llm.data import build_instruction_data, prompt_at
from models_mgmt.engine.llm.modelfile import render_modelfile
from models_mgmt.engine.llm.prompts import answer_schema, parse_answer, render_answer
from tests.llm_base import window_bars


def test_the_prompt_at_t_ignores_every_later_bar():
    bars = window_bars()
    t = 150
    before = prompt_at(bars, t, horizon=5, breakout_window=20)
    changed = bars.copy()
    changed.iloc[t + 1 :, changed.columns.get_loc("close")] *= 1.5
    changed.iloc[t + 1 :, changed.columns.get_loc("high")] *= 1.6
    changed.iloc[t + 1 :, changed.columns.get_loc("volume")] += 1e6
    assert prompt_at(changed, t, horizon=5, breakout_window=20) == before
    # ...while the bar t itself does change it: the prompt really reads the data.
    moved = bars.copy()
    moved.iloc[t, moved.columns.get_loc("close")] *= 0.97
    assert prompt_at(moved, t, horizon=5, breakout_window=20) != before


def test_examples_use_the_mlp_split_and_answer_with_the_labels():
    bars = window_bars()
    data = build_instruction_data(bars, horizon=5, breakout_window=20, validation_split=0.2, training_examples=30)
    split = build_split(bars, horizon=5, breakout_window=20, validation_split=0.2)
    assert data.split.validation_window == split.validation_window  # same bars as an MLP run
    np.testing.assert_array_equal(data.y_val, split.y_val)
    assert len(data.train_prompts) == 30  # trainingDataSize = number of training examples, the most recent
    np.testing.assert_array_equal(data.y_train, split.y_train[-30:])
    assert data.train_dates[-1] == split.train_dates[-1]
    # the embargo: no training label window reaches the first validation bar
    assert split.train_positions[-1] + 5 < split.val_positions[0]
    for answer, labels in zip(data.train_answers, data.y_train, strict=True):
        assert parse_answer(answer) == [int(v) for v in labels]
    assert data.manifest()["trainExamples"] == 30


def test_answers_are_the_json_schema_options():
    answer = render_answer([1, 0, 1])
    assert json.loads(answer) == {"signal": "up", "risk": "normal", "pattern": "breakout"}
    schema = answer_schema()
    assert schema["required"] == list(TASKS)
    with pytest.raises(ValueError, match="risk"):
        parse_answer('{"signal": "up", "risk": "maybe", "pattern": "range"}')


@pytest.mark.parametrize(
    ("hyper", "key", "reason"),
    [
        ({"targetModules": ["q_proj", "embed_tokens"]}, "targetModules", "not allowed: embed_tokens"),
        ({"targetModules": ["lm_head"]}, "targetModules", "not allowed: lm_head"),
        ({"targetModules": []}, "targetModules", "non-empty"),
        ({"loraRank": 0}, "loraRank", "at least 1"),
        ({"loraDropout": 1.5}, "loraDropout", "at most 0.9"),
        ({"maxSequenceLength": 16}, "maxSequenceLength", "at least 64"),
        ({"gradientAccumulation": "2"}, "gradientAccumulation", "integer"),
        ({"hiddenSizes": [8]}, "hiddenSizes", "unknown hyperparameter"),
    ],
)
def test_lora_hyperparameters_are_validated(hyper, key, reason):
    errors = LLM_LORA.check(hyper)
    assert reason in errors[key]


def test_the_family_accepts_mlp_projections():
    assert LLM_LORA.check({"targetModules": ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]}) == {}


def test_a_base_directory_is_checked_and_its_files_hashed(tiny_base_dir, tmp_path):
    check = check_base_dir(tiny_base_dir)
    assert check.architecture == "LlamaForCausalLM"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(check.files)
    assert all(len(digest) == 64 for digest in check.files.values())
    assert check.parameters and check.parameters > 1000
    assert check.eos_token == "</s>"
    verify_base_dir(tiny_base_dir, check.files)  # unchanged: no error

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    (broken / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(BaseModelError) as caught:
        check_base_dir(broken)
    problems = " | ".join(caught.value.problems)
    assert "BertModel is not supported" in problems
    assert "no tokenizer" in problems
    assert "pickled .bin weights are refused" in problems
    with pytest.raises(BaseModelError, match="absolute path"):
        check_base_dir("relative/dir")
    with pytest.raises(BaseModelError, match="changed since registration"):
        verify_base_dir(tiny_base_dir, {**check.files, "config.json": "0" * 64})


def test_the_modelfile_names_base_adapter_template_and_stop():
    text = render_modelfile(base_tag="llama3.1:8b", stop=["<|eot_id|>"], num_ctx=512, title="t")
    lines = text.splitlines()
    assert "FROM llama3.1:8b" in lines and "ADAPTER ./adapter" in lines
    assert 'TEMPLATE """{{ .Prompt }}"""' in lines and 'PARAMETER stop "<|eot_id|>"' in lines


def test_a_directory_with_too_many_files_is_refused(tiny_base_dir, tmp_path):
    import shutil

    from models_mgmt.engine.llm import base

    copy = shutil.copytree(tiny_base_dir, tmp_path / "copy")
    for i in range(base.MAX_FILES):
        (copy / f"extra-{i}.txt").write_text("x")
    with pytest.raises(BaseModelError, match="more than 200 files"):
        check_base_dir(copy)
