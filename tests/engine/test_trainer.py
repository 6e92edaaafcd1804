"""The training loop: determinism, early stopping, resume, stop requests, throttled progress."""

from __future__ import annotations

import dataclasses
import threading
from itertools import pairwise

import torch

from models_mgmt.engine.reporting import ProgressThrottle
from models_mgmt.engine.trainer import build_model, fit


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _val_loss(model, split) -> float:
    x = torch.from_numpy(split.normalization.apply(split.x_val))
    with torch.no_grad():
        return float(torch.nn.functional.binary_cross_entropy_with_logits(model(x), torch.from_numpy(split.y_val)))


def test_same_seed_same_result_other_seed_other_result(spec, split):
    first = fit(spec, split)
    second = fit(spec, split)
    other = fit(dataclasses.replace(spec, seed=7), split)
    assert _same(_weights(first.model), _weights(second.model))
    assert [h["val_loss"] for h in first.history] == [h["val_loss"] for h in second.history]
    assert not _same(_weights(first.model), _weights(other.model))


def test_a_run_leaves_the_global_rng_alone(spec, split):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(dataclasses.replace(spec, epochs=1), split)
    assert torch.equal(torch.rand(3), expected)


def test_early_stopping_stops_and_restores_the_best_weights(spec, split):
    # A large learning rate on a small window overfits fast, so validation loss turns up.
    eager = dataclasses.replace(spec, epochs=60, learning_rate=0.05, hidden_sizes=(64, 64), early_stopping_patience=3)
    outcome = fit(eager, split)
    losses = [h["val_loss"] for h in outcome.history]
    assert outcome.epochs_run < 60
    assert outcome.epochs_run == outcome.best_epoch + 3
    assert outcome.best_val_loss == min([outcome.best_val_loss, *losses])
    assert outcome.final_val_loss == losses[-1] > outcome.best_val_loss
    assert abs(_val_loss(outcome.model, split) - outcome.best_val_loss) < 1e-7


def test_resuming_from_a_checkpoint_equals_never_stopping(spec, split, tmp_path):
    long = dataclasses.replace(spec, epochs=6)
    straight = fit(long, split, checkpoint_path=tmp_path / "straight.pt")

    # Interrupt in the middle of epoch 4: the checkpoint of epoch 3 is what survives.
    steps_per_epoch = -(-len(split.x_train) // spec.batch_size)
    calls = iter(range(10_000))
    stop_at = 3 * steps_per_epoch + 2
    interrupted = fit(long, split, checkpoint_path=tmp_path / "run.pt", should_stop=lambda: next(calls) >= stop_at)
    assert interrupted.status == "stopped" and interrupted.epochs_run == 3

    resumed = fit(long, split, checkpoint_path=tmp_path / "run.pt", resume_from=tmp_path / "run.pt")
    assert resumed.status == "succeeded" and resumed.epochs_run == 6
    assert round(resumed.final_val_loss, 5) == round(straight.final_val_loss, 5)
    assert _same(_weights(resumed.model), _weights(straight.model))


def test_a_shorter_run_can_be_extended_by_resuming(spec, split, tmp_path):
    straight = fit(dataclasses.replace(spec, epochs=4), split)
    fit(dataclasses.replace(spec, epochs=2), split, checkpoint_path=tmp_path / "c.pt")
    extended = fit(dataclasses.replace(spec, epochs=4), split, resume_from=tmp_path / "c.pt")
    assert round(extended.final_val_loss, 5) == round(straight.final_val_loss, 5)


def test_a_stop_request_is_honoured_within_one_batch(spec, split):
    calls = iter(range(10_000))
    outcome = fit(spec, split, should_stop=lambda: next(calls) >= 5)
    assert outcome.status == "stopped"
    assert outcome.steps_run == 5  # checked before every batch: no sixth batch ran

    already = threading.Event()
    already.set()
    assert fit(spec, split, should_stop=already).steps_run == 0


def test_fine_tuning_starts_from_the_base_weights(spec, split):
    base = fit(spec, split).model
    base_weights = _weights(base)
    untouched = fit(dataclasses.replace(spec, epochs=0, seed=99), split, init_weights=base_weights)
    assert _same(_weights(untouched.model), base_weights)
    assert untouched.best_val_loss == _val_loss(base, split)


def test_freeze_trunk_trains_only_the_heads(spec, split):
    base_weights = _weights(fit(spec, split).model)
    tuned = fit(dataclasses.replace(spec, freeze_trunk=True, learning_rate=0.02), split, init_weights=base_weights)
    after = _weights(tuned.model)
    trunk = [k for k in after if k.startswith("trunk.")]
    heads = [k for k in after if k.startswith("heads.")]
    assert all(torch.equal(after[k], base_weights[k]) for k in trunk)
    assert any(not torch.equal(after[k], base_weights[k]) for k in heads)


def test_mismatched_initial_weights_are_refused(spec, split):
    import pytest

    wrong = build_model(dataclasses.replace(spec, hidden_sizes=(4,)), split.x_train.shape[1]).state_dict()
    with pytest.raises(ValueError, match="do not fit"):
        fit(spec, split, init_weights=wrong)


class FakeClock:
    """Advances 0.125 s (exact in binary) every time it is read: one read per batch."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.125
        return self.now


def test_throttle_lets_through_at_most_one_report_per_interval():
    clock = FakeClock()
    throttle = ProgressThrottle(0.5, clock)
    passed = [clock.now for _ in range(50) if throttle.due()]
    assert len(passed) == 13  # reads at 0.125, 0.625, ..., 6.125
    assert all(later - earlier >= 0.5 for earlier, later in pairwise(passed))


def test_progress_is_reported_at_most_every_half_second(spec, split):
    clock = FakeClock()
    reports, times = [], []

    def on_progress(report):
        reports.append(report)
        times.append(clock.now)

    outcome = fit(spec, split, on_progress=on_progress, clock=clock)
    assert all(later - earlier >= 0.5 for earlier, later in pairwise(times))
    assert len(reports) == -(-outcome.steps_run // 4)  # one in four batches at 0.125 s per batch
    last = reports[-1]
    assert last.total_epochs == spec.epochs and 0 < last.progress <= 100 and last.loss > 0
    assert [r.progress for r in reports] == sorted(r.progress for r in reports)


def test_every_epoch_is_reported(spec, split):
    epochs = []
    fit(spec, split, on_epoch=epochs.append)
    assert [e.epoch for e in epochs] == [1, 2, 3, 4]
    assert all(e.val_loss > 0 and e.train_loss > 0 and e.duration_s >= 0 for e in epochs)
    assert set(epochs[0].metrics) == {"patternRecognition", "signalAccuracy", "riskAssessment", "overallScore"}
