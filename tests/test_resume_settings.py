"""A resumed run continues with the settings it was trained with; the command line (and a
config file given with it) changes them, and the first line it prints names each change."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from a3c.checkpoint import save_checkpoint
from a3c.config import Config, ConfigError, load_config
from a3c.model import ActorCritic
from a3c.optim import SharedRMSprop
from a3c.train import parse_args

ROOT = Path(__file__).resolve().parent.parent

# every setting of a run trained unlike the default file, as its checkpoint records them
TRAINED = {**Config().to_dict(), "lr": 1e-3, "lr_anneal": True, "total_steps": 10_000_000, "seed": 3,
           "entropy_coef": 0.005, "eval_interval": 0.0,
           "workers": 7, "run_dir": "/elsewhere/old-run", "resume": "/elsewhere/older.pt"}


def checkpoint(tmp_path: Path, config: dict, step: int = 2_000_000) -> Path:
    model = ActorCritic(18, seed=0)
    path = tmp_path / "run" / "checkpoints" / "latest.pt"
    path.parent.mkdir(parents=True)
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": SharedRMSprop(model.parameters(), 7e-4).state_dict(),
                           "global_step": step, "obs_norm": torch.zeros(2, 3, dtype=torch.float64), "n_actions": 18,
                           "config": config})
    return path


def test_a_resumed_run_keeps_every_learning_setting_it_was_trained_with(tmp_path):
    path = checkpoint(tmp_path, TRAINED)
    config, _, note = parse_args([f"resume={path}"])
    assert (config.lr, config.lr_anneal, config.total_steps, config.seed) == (1e-3, True, 10_000_000, 3)
    assert (config.entropy_coef, config.eval_interval) == (0.005, 0.0)
    assert note == f"resuming {path} at step 2,000,000 with the settings it was trained with"


def test_where_it_runs_comes_from_the_new_start_not_the_checkpoint(tmp_path):
    path = checkpoint(tmp_path, TRAINED)
    config, _, _ = parse_args([f"resume={path}"])
    assert config.workers == os.cpu_count()  # the default file's "auto" on this machine, not 7
    assert config.run_dir == str(path.parent.parent.resolve())  # the checkpoint's own folder
    assert config.resume == str(path)


def test_the_command_line_changes_settings_and_the_note_names_each_change(tmp_path):
    path = checkpoint(tmp_path, TRAINED)
    config, _, note = parse_args([f"resume={path}", "total_steps=20000000", "lr_anneal=false", "lr=1e-3"])
    assert (config.total_steps, config.lr_anneal, config.lr, config.seed) == (20_000_000, False, 1e-3, 3)
    assert note.endswith("; changed: total_steps=20000000 (was 10000000), lr_anneal=false (was true)")


def test_a_config_file_given_on_resume_changes_the_settings_it_names(tmp_path):
    path = checkpoint(tmp_path, TRAINED)
    file = tmp_path / "more.yaml"
    file.write_text("total_steps: 30000000\nentropy_coef: 0.02\n")
    config, _, _ = parse_args(["--config", str(file), f"resume={path}", "entropy_coef=0.01"])
    # the file over the checkpoint, the command line over both; the rest as trained
    assert (config.total_steps, config.entropy_coef, config.lr, config.seed) == (30_000_000, 0.01, 1e-3, 3)


def test_settings_a_checkpoint_did_not_record_are_as_configured_and_named(tmp_path):
    older = {key: value for key, value in TRAINED.items() if key not in ("entropy_coef", "life_loss_ends_returns")}
    path = checkpoint(tmp_path, {**older, "a_setting_since_removed": 1})
    config, _, note = parse_args([f"resume={path}"])
    assert (config.entropy_coef, config.life_loss_ends_returns) == (load_config().entropy_coef, True)
    assert "not in the checkpoint, so as configured: " in note
    assert "entropy_coef=0.01" in note and "life_loss_ends_returns=true" in note
    assert "a_setting_since_removed" not in note


def test_a_run_already_at_its_total_steps_is_refused_with_what_to_give(tmp_path):
    path = checkpoint(tmp_path, TRAINED, step=10_000_160)
    with pytest.raises(ConfigError, match=r"is at step 10,000,160 and total_steps is 10,000,000: give a larger "
                                          r"total_steps to go on$"):
        parse_args([f"resume={path}"])
    config, _, _ = parse_args([f"resume={path}", "total_steps=12000000"])
    assert config.total_steps == 12_000_000


@pytest.mark.parametrize("bad,message", [
    ({"lr": "fast"}, "lr must be a number, got 'fast'"),
    ({"gamma": 2.0}, r"gamma must be in \[0, 1\], got 2.0"),
    ({"entropy_coef": [0.01]}, r"entropy_coef must be a number, got \[0.01\]"),
])
def test_a_bad_recorded_setting_is_one_error_naming_the_checkpoint(tmp_path, bad, message):
    path = checkpoint(tmp_path, {**TRAINED, **bad})
    with pytest.raises(ConfigError, match=f"^resume: {path} has a bad config: {message}"):
        parse_args([f"resume={path}"])


def test_saved_settings_replace_the_default_files_and_the_overrides_replace_them():
    fixed = {"run_dir": "runs/x"}
    default = load_config(None, fixed)
    resumed = load_config(None, fixed, saved={"lr": 5e-4})
    assert resumed.lr == 5e-4 and resumed == default.__class__(**{**default.to_dict(), "lr": 5e-4})
    assert load_config(None, {**fixed, "lr": 1e-4}, saved={"lr": 5e-4}).lr == 1e-4
