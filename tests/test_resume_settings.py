"""A resumed run continues with the settings it was trained with; the command line (and a
config file given with it) changes them, and a line it prints names each change."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

import a3c.config
import a3c.trainer
from a3c import train
from a3c.checkpoint import save_checkpoint
from a3c.config import Config, ConfigError, load_config, recorded_settings
from a3c.model import ActorCritic, network_settings
from a3c.optim import SharedRMSprop
from a3c.train import parse_args

# every setting of a run trained unlike the default file, as its checkpoint records them
TRAINED = {**Config().to_dict(), "lr": 1e-3, "lr_anneal": True, "total_steps": 10_000_000, "seed": 3,
           "entropy_coef": 0.005, "eval_interval": 0.0, "workers": 7, "backend": "ray", "ray_address": "auto",
           "run_dir": "/elsewhere/old-run", "resume": "/elsewhere/older.pt"}
# the settings that say where a run executes: this start's, named in the note when they differ
# (in the order of the settings: workers first, the backend's near the end)
WORKERS = f"workers={os.cpu_count()} (was 7)"
BACKEND = "backend=local (was ray), ray_address=null (was auto)"


def checkpoint(tmp_path: Path, config: dict, step: int = 2_000_000) -> Path:
    model = ActorCritic(18, **network_settings(recorded_settings(config)), seed=0)
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
    assert note == f"resuming {path} at step 2,000,000 with the settings it was trained with; changed: {WORKERS}, {BACKEND}"


def test_where_it_runs_comes_from_the_new_start_not_the_checkpoint(tmp_path):
    path = checkpoint(tmp_path, TRAINED)
    config, _, _ = parse_args([f"resume={path}"])
    assert config.workers == os.cpu_count()  # the default file's "auto" on this machine, not 7
    assert (config.backend, config.ray_address) == ("local", None)
    assert config.run_dir == str(path.parent.parent.resolve())  # the checkpoint's own folder
    assert config.resume == str(path)


def test_the_command_line_changes_settings_and_the_note_names_each_change(tmp_path):
    path = checkpoint(tmp_path, TRAINED)
    config, _, note = parse_args([f"resume={path}", "total_steps=20000000", "lr_anneal=false", "lr=1e-3"])
    assert (config.total_steps, config.lr_anneal, config.lr, config.seed) == (20_000_000, False, 1e-3, 3)
    assert note.endswith(f"; changed: {WORKERS}, total_steps=20000000 (was 10000000), lr_anneal=false (was true), "
                         f"{BACKEND}")


def test_the_note_is_printed_once_the_run_is_accepted(tmp_path, monkeypatch, capsys):
    class Accepted:
        def __init__(self, config, checkpoint):
            pass

        def run(self):
            return 0

    monkeypatch.setattr(a3c.trainer, "Trainer", Accepted)
    path = checkpoint(tmp_path, TRAINED)
    assert train.main([f"resume={path}", "seed=4"]) == 0
    assert capsys.readouterr().out == (f"resuming {path} at step 2,000,000 with the settings it was trained with; "
                                       f"changed: {WORKERS}, seed=4 (was 3), {BACKEND}\n")
    assert train.main([f"resume={path}", "frame=original"]) == 2  # refused: nothing announced
    assert capsys.readouterr().out == ""


def test_a_config_file_given_on_resume_changes_the_settings_it_names(tmp_path):
    path = checkpoint(tmp_path, TRAINED)
    file = tmp_path / "more.yaml"
    file.write_text("total_steps: 30000000\nentropy_coef: 0.02\n")
    config, _, _ = parse_args(["--config", str(file), f"resume={path}", "entropy_coef=0.01"])
    # the file over the checkpoint, the command line over both; the rest as trained
    assert (config.total_steps, config.entropy_coef, config.lr, config.seed) == (30_000_000, 0.01, 1e-3, 3)


def test_a_setting_older_checkpoints_did_not_record_keeps_what_those_runs_did(tmp_path):
    # life_loss_ends_returns came with False and became True; before envs_per_worker a worker
    # played one game; before frame the view was the original one, before frame_size 42x42
    older = {key: value for key, value in TRAINED.items()
             if key not in ("life_loss_ends_returns", "envs_per_worker", "frame", "frame_size", "entropy_coef")}
    path = checkpoint(tmp_path, {**older, "a_setting_since_removed": 1})
    config, _, note = parse_args([f"resume={path}"])
    assert (config.life_loss_ends_returns, config.envs_per_worker, config.frame) == (False, 1, "original")
    assert config.frame_size == 42 != Config().frame_size
    # one whose default never changed is as configured, and named
    assert config.entropy_coef == load_config().entropy_coef
    assert note.endswith("; not in the checkpoint, so as configured: entropy_coef=0.01")
    assert "a_setting_since_removed" not in note


def test_a_run_at_its_total_steps_is_refused_with_what_to_give(tmp_path):
    path = checkpoint(tmp_path, TRAINED, step=10_000_000)
    with pytest.raises(ConfigError, match=r"is at step 10,000,000 and total_steps is 10,000,000: give a larger "
                                          r"total_steps to go on$"):
        parse_args([f"resume={path}"])
    config, _, _ = parse_args([f"resume={path}", "total_steps=12000000"])
    assert config.total_steps == 12_000_000


def test_a_view_asked_for_by_a_config_file_must_be_the_trained_one(tmp_path):
    path = checkpoint(tmp_path, TRAINED)
    file = tmp_path / "other-view.yaml"
    file.write_text("frame: river_and_gauge\n")
    with pytest.raises(ConfigError, match=r"was trained with frame=jet_centred, this run asks for "
                                          r"frame=river_and_gauge \(give frame=jet_centred\)$"):
        parse_args(["--config", str(file), f"resume={path}"])
    config, _, _ = parse_args(["--config", str(file), f"resume={path}", "frame=jet_centred"])
    assert config.frame == "jet_centred"


def test_a_resumed_run_keeps_the_core_it_was_trained_with_and_an_older_checkpoint_had_the_lstm(tmp_path):
    path = checkpoint(tmp_path, {**TRAINED, "core": "feedforward", "frame_stack": 4})
    with pytest.raises(ConfigError, match=r"was trained with core=feedforward, this run asks for "
                                          r"core=lstm \(give core=feedforward\)$"):
        parse_args([f"resume={path}", "core=lstm"])
    config, _, _ = parse_args([f"resume={path}"])
    assert (config.core, config.frame_stack) == ("feedforward", 4)
    older = checkpoint(tmp_path / "older", {k: v for k, v in TRAINED.items() if k != "core"})
    with pytest.raises(ConfigError, match=r"was trained with core=lstm, this run asks for core=feedforward"):
        parse_args([f"resume={older}", "core=feedforward"])
    assert parse_args([f"resume={older}"])[0].core == "lstm"


def test_a_resumed_run_keeps_the_convolutions_it_was_trained_with_and_an_older_checkpoint_had_a3cs(tmp_path):
    path = checkpoint(tmp_path, {**TRAINED, "conv_stack": "nature"})
    with pytest.raises(ConfigError, match=r"was trained with conv_stack=nature, this run asks for "
                                          r"conv_stack=a3c \(give conv_stack=nature\)$"):
        parse_args([f"resume={path}", "conv_stack=a3c"])
    assert parse_args([f"resume={path}"])[0].conv_stack == "nature"
    older = checkpoint(tmp_path / "older", {k: v for k, v in TRAINED.items() if k != "conv_stack"})
    with pytest.raises(ConfigError, match=r"was trained with conv_stack=a3c, this run asks for conv_stack=nature"):
        parse_args([f"resume={older}", "conv_stack=nature"])
    assert parse_args([f"resume={older}"])[0].conv_stack == "a3c"


@pytest.mark.parametrize("key,trained,asked", [("weight_init", "orthogonal", "a3c"), ("forget_bias", 1.0, 0.0)])
def test_a_resumed_run_keeps_the_initialisation_its_weights_were_drawn_with(tmp_path, key, trained, asked):
    path = checkpoint(tmp_path, {**TRAINED, key: trained})
    with pytest.raises(ConfigError, match=rf"was trained with {key}={trained}, this run asks for "
                                          rf"{key}={asked} \(give {key}={trained}\)$"):
        parse_args([f"resume={path}", f"{key}={asked}"])
    config, _, _ = parse_args([f"resume={path}"])
    assert getattr(config, key) == trained


def test_a_checkpoint_older_than_the_initialisation_settings_was_drawn_with_their_defaults(tmp_path):
    older = {key: value for key, value in TRAINED.items() if key not in ("weight_init", "forget_bias")}
    path = checkpoint(tmp_path, older)
    with pytest.raises(ConfigError, match=r"was trained with weight_init=a3c, this run asks for weight_init=orthogonal"):
        parse_args([f"resume={path}", "weight_init=orthogonal"])
    config, _, _ = parse_args([f"resume={path}"])
    assert (config.weight_init, config.forget_bias) == ("a3c", 0.0)


@pytest.mark.parametrize("bad,message", [
    ({"lr": "fast"}, "lr must be a number, got 'fast'"),
    ({"gamma": 2.0}, r"gamma must be in \[0, 1\], got 2.0"),
    ({"entropy_coef": [0.01]}, r"entropy_coef must be a number, got \[0.01\]"),
])
def test_a_bad_recorded_setting_is_one_error_naming_the_checkpoint_and_can_be_given_anew(tmp_path, bad, message):
    path = checkpoint(tmp_path, {**TRAINED, **bad})
    with pytest.raises(ConfigError, match=f"^resume: {path} has a bad config: {message}"):
        parse_args([f"resume={path}"])
    (key, _), = bad.items()
    config, _, note = parse_args([f"resume={path}", f"{key}={TRAINED[key]}"])
    assert getattr(config, key) == TRAINED[key] and f"{key}={TRAINED[key]} (was " in note


def test_saved_settings_replace_the_default_files_and_the_overrides_replace_them():
    fixed = {"run_dir": "runs/x"}
    default = load_config(None, fixed)
    resumed = load_config(None, fixed, saved={"lr": 5e-4})
    assert resumed == dataclasses.replace(default, lr=5e-4)  # only what was saved differs
    assert load_config(None, {**fixed, "lr": 1e-4}, saved={"lr": 5e-4}).lr == 1e-4


def test_a_tensor_recorded_for_a_setting_a_resume_does_not_take_is_shown_not_compared(tmp_path):
    """workers is not resumed, so not checked on load; a tensor there (a crafted file) once
    made the note's comparison raise (found by test_properties)."""
    path = checkpoint(tmp_path, {**TRAINED, "workers": torch.zeros(2, 3, dtype=torch.bool)})
    config, _, note = parse_args([f"resume={path}", "workers=2"])
    assert config.workers == 2 and "workers=2 (was tensor(" in note


def test_a_checkpoint_that_records_no_pixel_control_had_no_head_whatever_the_default_file_says(tmp_path, monkeypatch):
    # the head came with the setting: an older run resumes without one even under a
    # default file that turns it on (as the view and the core do), and a run with one keeps it
    default_on = tmp_path / "riverraid.yaml"
    default_on.write_text(a3c.config.DEFAULT_CONFIG.read_text() + "\npixel_control: true\n")
    monkeypatch.setattr(a3c.config, "DEFAULT_CONFIG", default_on)
    assert load_config().pixel_control
    older = checkpoint(tmp_path / "older", {k: v for k, v in TRAINED.items() if k != "pixel_control"})
    config, _, note = parse_args([f"resume={older}"])
    assert not config.pixel_control and "pixel_control" not in note
    with pytest.raises(ConfigError, match=r"was trained with pixel_control=False, this run asks for "
                                          r"pixel_control=True \(give pixel_control=False\)$"):
        parse_args([f"resume={older}", "pixel_control=true"])
    with_head = checkpoint(tmp_path / "with-head", {**TRAINED, "pixel_control": True})
    assert parse_args([f"resume={with_head}"])[0].pixel_control


def test_a_checkpoint_that_records_no_hidden_size_had_the_256_wide_lstm_of_its_day(tmp_path):
    # the default grew to 512 long after the setting came: an older run resumes at its own
    # width, and a run that records 512 keeps it
    assert load_config().hidden_size == 512
    older = checkpoint(tmp_path / "older", {k: v for k, v in TRAINED.items() if k != "hidden_size"})
    config, _, note = parse_args([f"resume={older}"])
    assert config.hidden_size == 256 and "hidden_size" not in note
    with pytest.raises(ConfigError, match=r"was trained with hidden_size=256, this run asks for "
                                          r"hidden_size=512 \(give hidden_size=256\)$"):
        parse_args([f"resume={older}", "hidden_size=512"])
    wider = checkpoint(tmp_path / "wider", {**TRAINED, "hidden_size": 512})
    assert parse_args([f"resume={wider}"])[0].hidden_size == 512
