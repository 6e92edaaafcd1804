"""Checkpoints are written every epoch, atomically, with everything a resume needs."""

from __future__ import annotations

import pytest
import torch

from models_mgmt.engine.checkpoint import load_checkpoint, save_checkpoint
from models_mgmt.engine.trainer import fit


def test_every_epoch_leaves_a_complete_checkpoint(spec, split, tmp_path, monkeypatch):
    """Each epoch's checkpoint is written (in order, off the training thread) and complete."""
    from models_mgmt.engine import checkpoint as checkpoint_module

    path = tmp_path / "checkpoint.pt"
    written = []
    real_save = checkpoint_module.save_checkpoint

    def recording_save(target, state):
        result = real_save(target, state)
        loaded = load_checkpoint(target)
        assert {"model", "optimizer", "torch_rng", "generator", "fingerprint"} <= set(loaded)
        assert {"best_loss", "best_epoch", "bad_epochs", "best_weights", "history"} <= set(loaded["state"])
        written.append(loaded["state"]["epoch"])
        return result

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", recording_save)
    fit(spec, split, checkpoint_path=path)
    assert written == [1, 2, 3, 4]
    assert load_checkpoint(path)["state"]["epoch"] == 4  # on disk when fit returns
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary files left


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(2)})

    def broken_save(obj, stream):
        stream.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(2)})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_checkpoint_of_other_data_is_refused(spec, split, bars, tmp_path):
    from tests.engine.conftest import split_for

    fit(spec, split, checkpoint_path=tmp_path / "c.pt")
    other = split_for(bars.iloc[-800:], spec)
    with pytest.raises(ValueError, match="other data"):
        fit(spec, other, resume_from=tmp_path / "c.pt")


def test_a_stop_right_after_an_epoch_keeps_that_epochs_checkpoint_even_on_a_slow_disk(
    spec, split, tmp_path, monkeypatch
):
    """Issue 11.12: a stop that follows a finished epoch must find its checkpoint on disk once the
    run returns, however slow the background write (fit flushes the writer before returning)."""
    import threading
    import time

    from models_mgmt.engine import checkpoint as checkpoint_module

    real_save = checkpoint_module.save_checkpoint

    def slow_save(target, state):
        time.sleep(0.5)  # a disk slower than the stop: the write is still pending when the stop comes
        return real_save(target, state)

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", slow_save)
    stop = threading.Event()
    path = tmp_path / "checkpoint.pt"
    outcome = fit(spec, split, checkpoint_path=path, on_epoch=lambda report: stop.set(), should_stop=stop)
    assert outcome.status == "stopped" and outcome.epochs_run == 1
    assert load_checkpoint(path)["state"]["epoch"] == 1
