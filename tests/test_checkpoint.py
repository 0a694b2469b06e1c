"""Checkpoints are written atomically and loaded safely, with clear errors."""
from __future__ import annotations

import argparse

import pytest
import torch

import a3c.checkpoint as checkpoint_module
from a3c.checkpoint import CheckpointError, load_checkpoint, restore_model, save_checkpoint
from a3c.model import ActorCritic
from a3c.optim import SharedAdam


def payload(model: ActorCritic, step: int = 123) -> dict:
    optimizer = SharedAdam(model.parameters(), lr=1e-4)
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "global_step": step,
            "obs_norm": torch.zeros(2, 3, dtype=torch.float64), "n_actions": model.n_actions,
            "config": {"env_id": "Riverraid-v0"}}


def test_round_trip_restores_weights_and_counters(tmp_path):
    model = ActorCritic(18, seed=0)
    path = tmp_path / "checkpoints" / "latest.pt"
    save_checkpoint(path, payload(model))
    loaded = load_checkpoint(path)
    fresh = ActorCritic(18, seed=1)
    restore_model(fresh, loaded, path)
    for (name, a), b in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(a, b), name
    assert loaded["global_step"] == 123 and loaded["version"] == checkpoint_module.FORMAT_VERSION


def test_a_crash_mid_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    save_checkpoint(path, payload(ActorCritic(18, seed=0), step=1))

    def crash(obj, handle):
        handle.write(b"partial")
        raise KeyboardInterrupt  # the process is stopped in the middle of torch.save

    monkeypatch.setattr(checkpoint_module.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, payload(ActorCritic(18, seed=0), step=2))
    monkeypatch.undo()
    assert load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]  # no temporary file left


def test_truncated_file(tmp_path):
    path = tmp_path / "latest.pt"
    save_checkpoint(path, payload(ActorCritic(18, seed=0)))
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*truncated or not a checkpoint"):
        load_checkpoint(path)


def test_foreign_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="is not a riverraid-a3c checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_unsafe_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pt"  # any pickled object could run code while loading
    torch.save({"format": checkpoint_module.FORMAT, "object": argparse.Namespace(x=1)}, path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)  # weights_only=True refuses arbitrary objects


def test_mismatched_network(tmp_path):
    path = tmp_path / "latest.pt"
    save_checkpoint(path, payload(ActorCritic(9, seed=0)))
    with pytest.raises(CheckpointError, match="trained with 9 actions, this environment has 18"):
        restore_model(ActorCritic(18, seed=0), load_checkpoint(path), path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_checkpoint_whose_weights_are_not_finite_is_refused(tmp_path, bad):
    model = ActorCritic(18, seed=0)
    model.actor.weight[0, 0] = bad
    path = tmp_path / "latest.pt"
    save_checkpoint(path, payload(model))
    with pytest.raises(CheckpointError, match="weights that are NaN or inf"):
        load_checkpoint(path)


@pytest.mark.parametrize("field, value, message", [
    ("global_step", "abc", "bad global_step"),
    ("global_step", -5, "bad global_step"),
    ("obs_norm", torch.zeros(0, 3, dtype=torch.float64), "bad obs_norm"),
    ("obs_norm", torch.zeros(2, 2, dtype=torch.float64), "bad obs_norm"),
    ("obs_norm", torch.full((2, 3), float("nan"), dtype=torch.float64), "bad obs_norm"),
    ("config", ["not", "a", "mapping"], "bad config"),
    ("n_actions", "18", "bad n_actions"),
    ("optimizer", 3, "bad optimizer"),
    ("model", {}, "bad model"),
    # the head's settings are checked as a run's: too small a view for it, or not a boolean
    ("config", {"env_id": "Riverraid-v0", "pixel_control": True, "frame_size": 16},
     "bad config: frame_size must be at least 20 with pixel_control, got 16"),
    ("config", {"env_id": "Riverraid-v0", "pixel_control": "false"}, "bad config: pixel_control must be"),
])
def test_a_crafted_field_is_a_one_line_checkpoint_error(tmp_path, field, value, message):
    path = tmp_path / "crafted.pt"
    save_checkpoint(path, {**payload(ActorCritic(18, seed=0)), field: value})
    with pytest.raises(CheckpointError, match=message) as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)


def test_a_checkpoint_of_another_format_version_is_one_error_line_and_exit_2_for_both_commands(tmp_path, capsys):
    from a3c import evaluate, train

    path = tmp_path / "run" / "checkpoints" / "latest.pt"
    path.parent.mkdir(parents=True)
    fields = payload(ActorCritic(18, seed=0))
    torch.save({"format": checkpoint_module.FORMAT, "version": checkpoint_module.FORMAT_VERSION - 1, **fields}, path)
    stale = (f"{path} has checkpoint format version {checkpoint_module.FORMAT_VERSION - 1}, this "
             f"riverraid-a3c reads version {checkpoint_module.FORMAT_VERSION} only: use the release that wrote it")
    assert evaluate.main(["--checkpoint", str(path), "--episodes", "1"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {stale}"]
    assert train.main([f"resume={path}"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: resume: {stale}"]
    assert torch.load(path, weights_only=True)["version"] == checkpoint_module.FORMAT_VERSION - 1  # left as it was


def test_weights_of_other_convolutions_than_the_recorded_ones_are_named_in_one_line(tmp_path):
    path = tmp_path / "relabelled.pt"
    save_checkpoint(path, {**payload(ActorCritic(18, seed=0)),
                           "config": {"env_id": "Riverraid-v0", "frame_size": 42, "conv_stack": "nature"}})
    with pytest.raises(CheckpointError, match=r"bad model: its weights are not those of the network its settings "
                                              r"\(.*conv_stack=nature, .*\) give \(missing \[\], unexpected "
                                              r"\['conv3.bias', 'conv3.weight'\]\)") as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)
