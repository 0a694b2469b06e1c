"""Settings: YAML + key=value overrides; every mistake is one line on stderr and exit 2."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from a3c.config import Config, ConfigError, field_docs, load_config, parse_overrides

ROOT = Path(__file__).resolve().parent.parent


def test_default_config_has_the_documented_values():
    config = load_config()
    assert (config.env_id, config.lr, config.gamma, config.gae_lambda) == ("Riverraid-v0", 7e-4, 0.99, 1.0)
    assert (config.entropy_coef, config.value_loss_coef, config.max_grad_norm) == (0.01, 0.5, 100.0)
    assert (config.num_steps, config.optimizer, config.seed, config.workers) == (20, "rmsprop", 1, os.cpu_count())
    assert config.envs_per_worker == 8  # 4 (more updates per step) led to 2M, fell behind by 10M (scripts/RESULTS.md)


def test_the_default_file_and_the_settings_defaults_are_the_same_run(monkeypatch, tmp_path):
    # a package installed without the repository (pip install .) has no configs/ folder: it
    # trains on Config's defaults, which must be the default file's
    import a3c.config

    from_file = load_config()
    monkeypatch.setattr(a3c.config, "DEFAULT_CONFIG", tmp_path / "configs" / "riverraid.yaml")
    assert dataclasses.replace(load_config(), run_dir=from_file.run_dir) == from_file
    with pytest.raises(ConfigError, match="config file not found"):  # a file asked for must exist
        load_config(tmp_path / "configs" / "riverraid.yaml")


def test_a_loaded_config_is_frozen_with_its_derived_values_resolved():
    config = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0
    assert config.run_dir.startswith("runs/") and config.workers >= 1
    resumed = load_config(None, {"resume": "runs/old/checkpoints/latest.pt"})
    assert resumed.run_dir == "runs/old"  # a resumed run continues in its folder, named as the user would


def test_a_resumed_run_names_its_folder_relative_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "work" / "runs" / "a" / "checkpoints").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work" / "runs" / "a" / "checkpoints")
    assert load_config(None, {"resume": "latest.pt"}).run_dir == str((tmp_path / "work" / "runs" / "a").resolve())
    monkeypatch.chdir(tmp_path / "work")
    assert load_config(None, {"resume": "runs/a/checkpoints/latest.pt"}).run_dir == "runs/a"
    # a path from elsewhere keeps its absolute form: no "../.." chains in config.yaml
    outside = tmp_path / "elsewhere" / "checkpoints" / "latest.pt"
    assert load_config(None, {"resume": str(outside)}).run_dir == str((tmp_path / "elsewhere").resolve())


def test_overrides_are_parsed_as_yaml_scalars():
    config = load_config(None, parse_overrides(["lr=3e-4", "workers=4", "lr_anneal=true", "run_dir=/tmp/x"]))
    assert (config.lr, config.workers, config.lr_anneal, config.run_dir) == (3e-4, 4, True, "/tmp/x")
    assert load_config(None, {"workers": "auto"}).workers == os.cpu_count()  # resolved once, at load


def test_every_field_has_a_docstring_shown_by_help():
    docs = field_docs()
    assert set(docs) == set(Config.__dataclass_fields__)
    assert all(len(doc) > 10 for doc in docs.values())


@pytest.mark.parametrize("overrides,message", [
    ({"learning_rate": 1}, "unknown setting 'learning_rate'"),
    ({"entropy_coeff": 0.1}, "did you mean 'entropy_coef'?"),
    ({"lr": "fast"}, "lr must be a number, got 'fast'"),
    ({"workers": 2.5}, "workers must be an integer, got 2.5"),
    ({"lr_anneal": "maybe"}, "lr_anneal must be true or false"),
    ({"gamma": 1.5}, r"gamma must be in \[0, 1\], got 1.5"),
    ({"num_steps": 0}, "num_steps must be positive"),
    ({"envs_per_worker": 0}, "envs_per_worker must be at least 1, got 0"),
    ({"backend": "spark"}, "backend must be one of local, ray, got 'spark'"),
    ({"ray_address": "auto"}, "ray_address is only used with backend=ray"),
    ({"optimizer": "sgd"}, "optimizer must be one of adam, rmsprop, got 'sgd'"),
    ({"weight_init": "xavier"}, "weight_init must be one of a3c, orthogonal, got 'xavier'"),
    ({"core": "gru"}, "core must be one of lstm, feedforward, layernorm_lstm, got 'gru'"),
    ({"core": "layernorm_lstm", "hidden_size": 1}, "hidden_size must be at least 2 with core=layernorm_lstm, got 1"),
    ({"conv_stack": "resnet"}, "conv_stack must be one of a3c, nature, got 'resnet'"),
    ({"conv_stack": "nature", "frame_size": 35}, "frame_size must be at least 36 with conv_stack=nature, got 35"),
    ({"lr": float("nan")}, "lr must be a finite number, got nan"),
    ({"lr": float("inf")}, "lr must be a finite number, got inf"),
    ({"entropy_coef": float("nan")}, "entropy_coef must be a finite number"),
    ({"max_grad_norm": float("nan")}, "max_grad_norm must be a finite number"),
    ({"checkpoint_interval": float("nan")}, "checkpoint_interval must be a finite number"),
    ({"eval_interval": float("-inf")}, "eval_interval must be a finite number"),
    ({"lr": 10**400}, "lr must be a finite number"),
    ({"seed": 99999999999999999999}, r"seed must be in \[0, "),
    ({"seed": -1}, r"seed must be in \[0, "),
    ({"workers": 100000}, "workers must be at most 1024, got 100000"),
    ({"envs_per_worker": 100000}, "envs_per_worker must be at most 256"),
    ({"epochs": 0}, "epochs must be at least 1, got 0"),
    ({"epochs": 65}, "epochs must be at most 64, got 65"),
    ({"clip_range": 0}, r"clip_range must be in \(0, 1\), got 0"),
    ({"clip_range": 1.0}, r"clip_range must be in \(0, 1\), got 1.0"),
    ({"forget_bias": 3.402823466385289e+38}, r"forget_bias must be in \[-100, 100\], got 3.4028"),  # beyond float32
    ({"forget_bias": -101}, r"forget_bias must be in \[-100, 100\], got -101"),
    ({"optimizer_eps": 0}, "optimizer_eps must be positive, got 0.0"),
    ({"optimizer_eps": -1e-5}, "optimizer_eps must be positive, got -1e-05"),
    ({"optimizer_eps": float("inf")}, "optimizer_eps must be a finite number"),
    ({"sil_batch": -1}, "sil_batch must not be negative, got -1"),
    ({"sil_capacity": 0}, "sil_capacity must be at least 1, got 0"),
    ({"sil_capacity": 10**7}, "sil_capacity must be at most 1000000, got 10000000"),
    ({"sil_batch": 300, "sil_capacity": 200}, r"sil_batch must be at most sil_capacity \(200\), got 300"),
    ({"sil_value_coef": -0.1}, "sil_value_coef must not be negative, got -0.1"),
    ({"sil_clip": 0}, "sil_clip must be positive, got 0.0"),
    ({"replay_ratio": -1}, "replay_ratio must not be negative, got -1"),
    ({"replay_ratio": 65}, "replay_ratio must be at most 64, got 65"),
    ({"replay_capacity": 0}, "replay_capacity must be at least 1, got 0"),
    ({"vtrace_rho_clip": 0}, "vtrace_rho_clip must be positive, got 0.0"),
    ({"vtrace_c_clip": -1}, "vtrace_c_clip must be positive, got -1.0"),
    ({"replay_ratio": 1, "epochs": 2}, "replay_ratio and epochs > 1 do not go together"),
    ({"action_reward_input": True, "sil_batch": 16}, "action_reward_input and sil_batch do not go together"),
    ({"pixel_control": True, "frame_size": 19}, "frame_size must be at least 20 with pixel_control, got 19"),
    ({"pixel_control_coef": -0.05}, "pixel_control_coef must not be negative, got -0.05"),
    ({"pixel_control_gamma": 1.5}, r"pixel_control_gamma must be in \[0, 1\], got 1.5"),
])
def test_bad_settings_raise_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def run_train(*args, timeout=60):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "a3c.train", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("args,message", [
    (["entropy_coeff=0.1"], "error: unknown setting 'entropy_coeff' (did you mean 'entropy_coef'?)"),
    (["lr=abc"], "error: lr must be a number, got 'abc'"),
    (["max_grad_norm=-1"], "error: max_grad_norm must be positive, got -1.0"),
    (["env_id=Riverrade-v0"], "error: unknown env_id 'Riverrade-v0' (close matches: Riverraid-v0"),
    (["run_dir=/proc/forbidden"], "error: run_dir '/proc/forbidden' is not writable"),
    (["resume=/nonexistent/latest.pt"], "error: resume: checkpoint not found: /nonexistent/latest.pt"),
    (["--config", "configs/missing.yaml"], "error: config file not found: configs/missing.yaml"),
    (["lr"], "error: expected key=value, got 'lr'"),
])
def test_cli_reports_one_line_and_exits_2_before_starting_workers(args, message, tmp_path):
    result = run_train(*args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    assert "training" not in result.stdout  # no worker was started


@pytest.mark.parametrize("env_id, message", [
    ("CartPole-v1", "env_id 'CartPole-v1' is not an Atari game of ale-py"),
    ("Riverrad-v0", "unknown env_id 'Riverrad-v0' (close matches: Riverraid-v0"),
])
def test_env_id_must_be_an_atari_game_of_ale_py(env_id, message):
    from a3c.config import check_env_id

    with pytest.raises(ConfigError) as error:
        check_env_id(env_id)
    assert str(error.value).startswith(message)
    check_env_id("Riverraid-v0")  # and the real one passes
