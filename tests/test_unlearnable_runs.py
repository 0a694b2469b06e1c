"""A run that can no longer learn stops, says why, and keeps its last good checkpoint."""
from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from a3c.checkpoint import load_checkpoint, save_checkpoint
from a3c.model import ActorCritic
from a3c.optim import SharedAdam, SharedRMSprop
from a3c.policy import frame_settings
from a3c.train import parse_args

ROOT = Path(__file__).resolve().parent.parent


def train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "a3c.train", "--config", "configs/smoke.yaml", "eval_interval=0",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_run_whose_every_update_is_skipped_stops_with_exit_1_and_counts_them(tmp_path):
    # a finite but absurd value weight: every value gradient overflows to inf, every update is skipped
    result = train("value_loss_coef=1e308", "total_steps=50000", f"run_dir={tmp_path}")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    last = result.stdout.strip().splitlines()
    summary = next(line for line in last if line.startswith("stopped at step"))
    assert re.search(r"\(100 updates in a row were skipped \(non-finite gradients in worker [01]\)", summary)
    assert re.search(r"mean score of the last \d+: [-\d]+, \d+ updates skipped \(non-finite gradients\)", summary)
    assert "skipped updates" in result.stdout  # the progress lines count them too
    step = int(summary.split()[3])
    assert step < 50000  # stopped early, not at total_steps


def test_resume_and_evaluate_refuse_a_checkpoint_whose_weights_are_nan(tmp_path):
    model = ActorCritic(18, seed=0)
    model.lstm.bias_ih[3] = float("nan")
    path = tmp_path / "nan.pt"
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": SharedAdam(model.parameters(), 1e-4).state_dict(),
                           "global_step": 10, "obs_norm": torch.zeros(2, 3, dtype=torch.float64), "n_actions": 18,
                           "config": {"env_id": "Riverraid-v0"}})
    resumed = train(f"resume={path}", f"run_dir={tmp_path / 'run'}")
    evaluated = subprocess.run([sys.executable, "-m", "a3c.evaluate", "--checkpoint", str(path), "--episodes", "1"],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
    for result in (resumed, evaluated):
        assert result.returncode == 2
        assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) == 1
        assert "NaN or inf" in result.stderr


def test_resume_from_the_shipped_agent_says_it_plays_but_cannot_resume(tmp_path):
    from a3c.policy import PRETRAINED

    result = train(f"resume={PRETRAINED}", "total_steps=100000000", f"run_dir={tmp_path / 'run'}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: resume: {PRETRAINED} holds no optimizer state (an exported agent)")
    assert not (tmp_path / "run").exists()


def test_evaluate_refuses_a_json_folder_before_playing(tmp_path):
    model = ActorCritic(18, seed=0)
    path = tmp_path / "ok.pt"
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": {}, "global_step": 10,
                           "obs_norm": torch.zeros(2, 3, dtype=torch.float64), "n_actions": 18,
                           "config": {"env_id": "Riverraid-v0"}})
    result = subprocess.run([sys.executable, "-m", "a3c.evaluate", "--checkpoint", str(path), "--episodes", "1",
                             "--json", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip() == f"error: --json {tmp_path} is a folder: give a file name"
    assert "episode" not in result.stdout  # nothing was played


def test_a_start_rejected_after_the_run_folder_was_made_leaves_no_folder(tmp_path):
    model = ActorCritic(9, seed=0)  # a network for 9 actions: River Raid has 18
    path = tmp_path / "nine.pt"
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": SharedRMSprop(model.parameters(), 7e-4).state_dict(),
                           "global_step": 10, "obs_norm": torch.zeros(2, 3, dtype=torch.float64), "n_actions": 9,
                           "config": {"env_id": "Riverraid-v0", "frame": "jet_centred", "optimizer": "rmsprop"}})
    run_dir = tmp_path / "never"
    result = train(f"resume={path}", f"run_dir={run_dir}")
    assert result.returncode == 2 and "actions" in result.stderr
    assert not run_dir.exists()


def test_resume_with_another_view_of_the_game_is_refused(tmp_path):
    model = ActorCritic(18, seed=0)
    path = tmp_path / "rg.pt"
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": SharedAdam(model.parameters(), 1e-4).state_dict(),
                           "global_step": 10, "obs_norm": torch.zeros(2, 3, dtype=torch.float64), "n_actions": 18,
                           "config": {"env_id": "Riverraid-v0", "frame": "river_and_gauge", "frame_size": 42}})
    result = train(f"resume={path}", f"run_dir={tmp_path / 'run'}", "frame=jet_centred")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert ("was trained with frame=river_and_gauge, this run asks for frame=jet_centred "
            "(give frame=river_and_gauge)") in result.stderr


def test_a_checkpoint_from_before_the_view_was_recorded_resumes_with_the_original_view(tmp_path):
    # checkpoints from before the `frame` setting recorded no view: they saw the original
    # one, and resuming them under today's default (jet_centred) would feed the network
    # an input it never learned from
    model = ActorCritic(18, seed=0)
    path = tmp_path / "old.pt"
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": SharedAdam(model.parameters(), 1e-4).state_dict(),
                           "global_step": 10, "obs_norm": torch.zeros(2, 3, dtype=torch.float64), "n_actions": 18,
                           "config": {"env_id": "Riverraid-v0"}})
    config, _, note = parse_args([f"resume={path}", f"run_dir={tmp_path / 'resumed'}"])
    assert config.frame == "original" and "frame=" not in note  # as trained: neither changed nor unrecorded
    assert config.frame_size == 42 and "frame_size=" not in note  # nor its size, 42 before it was recorded
    # and the evaluator shows the network what it learned from
    assert frame_settings(load_checkpoint(path)["config"]) == {"frame": "original", "frame_size": 42, "frame_stack": 1}
    result = train(f"resume={path}", f"run_dir={tmp_path / 'run'}", "frame=jet_centred")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "was trained with frame=original, this run asks for frame=jet_centred" in result.stderr
    assert not (tmp_path / "run").exists()


def test_resume_with_another_number_of_stacked_views_is_refused(tmp_path):
    model = ActorCritic(18, seed=0, frame_stack=2)
    path = tmp_path / "stacked.pt"
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": SharedAdam(model.parameters(), 1e-4).state_dict(),
                           "global_step": 10, "obs_norm": torch.zeros(2, 3, dtype=torch.float64), "n_actions": 18,
                           "config": {"env_id": "Riverraid-v0", "frame": "jet_centred", "frame_stack": 2}})
    result = train(f"resume={path}", f"run_dir={tmp_path / 'run'}", "frame_stack=1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "was trained with frame_stack=2, this run asks for frame_stack=1 (give frame_stack=2)" in result.stderr


def test_resume_with_other_network_sizes_is_refused(tmp_path):
    model = ActorCritic(18, seed=0, conv_channels=8, hidden_size=16)
    path = tmp_path / "small.pt"
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": SharedAdam(model.parameters(), 1e-4).state_dict(),
                           "global_step": 10, "obs_norm": torch.zeros(2, 3, dtype=torch.float64), "n_actions": 18,
                           "config": {"env_id": "Riverraid-v0", "frame": "jet_centred", "conv_channels": 8,
                                      "hidden_size": 16}})
    result = train(f"resume={path}", f"run_dir={tmp_path / 'run'}", "conv_channels=8", "hidden_size=256")
    assert result.returncode == 2
    assert "was trained with hidden_size=16, this run asks for hidden_size=256 (give hidden_size=16)" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("error", ["ENOSPC", "EROFS", "EACCES"])
def test_a_failed_checkpoint_write_stops_the_run_cleanly_and_keeps_the_previous_one(tmp_path, error):
    # the main process's first checkpoint write after one with steps in it fails as on a full disk, a
    # file system remounted read-only or a folder whose permissions changed
    (tmp_path / "patch").mkdir()
    (tmp_path / "patch" / "sitecustomize.py").write_text(
        "import errno, multiprocessing, os\n"
        "if multiprocessing.parent_process() is None:\n"
        "    import a3c.checkpoint as checkpoint\n"
        "    real, written = checkpoint.save_checkpoint, []\n"
        "    def failing(path, payload):\n"
        "        if written and written[-1] > 0:\n"
        f"            raise OSError(errno.{error}, os.strerror(errno.{error}))\n"
        "        real(path, payload)\n"
        "        written.append(payload['global_step'])\n"
        "    checkpoint.save_checkpoint = failing\n")
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "a3c.train", "--config", "configs/smoke.yaml", "eval_interval=0", "checkpoint_interval=1",
         "total_steps=1000000", f"run_dir={run_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "patch"), str(ROOT)])})  # installed or not
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    reason = os.strerror(getattr(errno, error))
    assert f"error: cannot write checkpoint {run_dir / 'checkpoints' / 'latest.pt'}: {reason}" in result.stdout
    summary = next(line for line in result.stdout.splitlines() if line.startswith("stopped at step"))
    assert f"(checkpoint not written: {reason})" in summary
    previous = load_checkpoint(run_dir / "checkpoints" / "latest.pt")  # the first write survives intact
    assert 0 < previous["global_step"] < 1_000_000
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))


def test_resume_with_another_optimizer_is_refused_with_the_setting_to_give(tmp_path):
    # an Adam run's statistics cannot feed RMSProp (the default since 2026-11-30)
    model = ActorCritic(18, seed=0)
    path = tmp_path / "adam.pt"
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": SharedAdam(model.parameters(), 1e-4).state_dict(),
                           "global_step": 10, "obs_norm": torch.zeros(2, 3, dtype=torch.float64), "n_actions": 18,
                           "config": {"env_id": "Riverraid-v0", "frame": "jet_centred", "optimizer": "adam"}})
    result = train(f"resume={path}", f"run_dir={tmp_path / 'run'}", "optimizer=rmsprop")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "was trained with optimizer=adam, this run asks for optimizer=rmsprop (give optimizer=adam)" in result.stderr
    assert not (tmp_path / "run").exists()
