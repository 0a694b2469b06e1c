"""Real training runs on Riverraid-v0 with 2 workers: smoke, resume, faults, signals."""
from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from a3c.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ["--config", "configs/smoke.yaml"]


def start_run(run_dir: Path, *overrides: str) -> tuple[subprocess.Popen, Path]:
    log = run_dir.parent / f"{run_dir.name}.log"
    handle = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "a3c.train", *SMOKE, f"run_dir={run_dir}", *overrides],
                            cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    return proc, log


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def progress(log: Path) -> int:
    steps = re.findall(r"^step (\d+)/", log.read_text(), re.MULTILINE)
    return int(steps[-1]) if steps else 0


def child_pids(log: Path) -> dict[str, int]:
    """{"worker 0": pid, ..., "evaluator": pid} from the run's "processes:" line."""
    match = re.search(r"^processes: (.*)$", log.read_text(), re.MULTILINE)
    if not match:
        return {}
    return {name: int(pid) for name, pid in re.findall(r"(worker \d+|evaluator) pid (\d+)", match.group(1))}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def scalars(run_dir: Path, tag: str) -> list:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return events.Scalars(tag) if tag in events.Tags()["scalars"] else []


def test_smoke_run_writes_checkpoint_and_tensorboard_then_resumes(smoke_run, tmp_path):
    import shutil

    checkpoint = load_checkpoint(smoke_run / "checkpoints" / "latest.pt")
    assert checkpoint["global_step"] >= 4000  # the smoke run's total_steps
    assert checkpoint["optimizer"]["updates"] >= 4000 // 20
    assert (checkpoint["obs_norm"][:, 2] > 0).all()  # every worker's normaliser state is saved
    for tag in ["train/steps_per_second", "loss/policy", "loss/value", "loss/entropy", "grad/norm", "optim/lr"]:
        assert scalars(smoke_run, tag), f"no {tag} scalars"
    assert "stopped at step" in (smoke_run.parent / "run.log").read_text()

    # resumed in a copy: the other tests read the smoke run as it finished
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    first_step = checkpoint["global_step"]
    proc, log = start_run(run_dir, f"total_steps={first_step + 1000}",
                          f"resume={run_dir / 'checkpoints' / 'latest.pt'}")
    assert proc.wait(timeout=240) == 0, log.read_text()
    resumed = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert resumed["global_step"] >= first_step + 1000
    assert resumed["optimizer"]["updates"] > checkpoint["optimizer"]["updates"]
    rate_steps = [s.step for s in scalars(run_dir, "train/steps_per_second")]
    assert max(rate_steps) >= first_step + 1000 and min(s for s in rate_steps if s > first_step) > first_step


def test_episode_returns_are_logged_as_raw_scores(smoke_run):
    returns = scalars(smoke_run, "train/episode_return")
    lengths = scalars(smoke_run, "train/episode_length")
    assert returns and len(returns) == len(lengths)
    assert max(r.value for r in returns) > 1.0  # raw score (hundreds), not clipped rewards
    assert all(length.value >= 1 for length in lengths)


def test_a_run_with_four_envs_per_worker_logs_every_games_episodes(tmp_path):
    run_dir = tmp_path / "run"
    # 2,000 steps per game: an untrained agent's episodes last about 800-1,200
    proc, log = start_run(run_dir, "workers=1", "envs_per_worker=4", "total_steps=8000", "eval_interval=0")
    assert proc.wait(timeout=240) == 0, log.read_text()
    with open(run_dir / "episodes.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(row["worker"], row["env"]) for row in rows} == {("0", str(env)) for env in range(4)}
    assert all(float(row["return"]) > 0 and int(row["length"]) > 0 for row in rows)
    returns = scalars(run_dir, "train/episode_return")  # the same episodes in TensorBoard
    assert sorted(r.value for r in returns) == sorted(float(row["return"]) for row in rows)
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert checkpoint["optimizer"]["updates"] == checkpoint["global_step"] // (4 * 20)  # T x B per update
    assert "1 workers x 4 envs" in log.read_text()


def test_a_run_with_self_imitation_logs_what_it_imitated(tmp_path):
    run_dir = tmp_path / "run"
    # random play loses a life every few hundred steps: the memory fills within the run
    proc, log = start_run(run_dir, "workers=1", "envs_per_worker=4", "total_steps=4000", "eval_interval=0",
                          "sil_batch=16", "sil_capacity=500")
    assert proc.wait(timeout=240) == 0, log.read_text()
    shares = [point.value for point in scalars(run_dir, "self_imitation/imitated")]
    losses = [point.value for point in scalars(run_dir, "self_imitation/policy_loss")]
    assert shares and len(losses) == len(shares)
    # drawn steps beat their value when they were kept, and mostly still do
    assert all(0.0 <= share <= 1.0 for share in shares) and max(shares) > 0.0
    assert all(loss >= 0.0 for loss in losses) and max(losses) > 0.0  # -log pi weighted by max(R - V, 0)
    assert load_checkpoint(run_dir / "checkpoints" / "latest.pt")["config"]["sil_batch"] == 16


def test_a_run_with_v_trace_replays_logs_their_gradient_norm_and_cut_weights_apart(tmp_path):
    run_dir = tmp_path / "run"
    proc, log = start_run(run_dir, "workers=1", "envs_per_worker=2", "total_steps=2000", "eval_interval=0",
                          "replay_ratio=2", "replay_capacity=4")
    assert proc.wait(timeout=240) == 0, log.read_text()
    cut = [point.value for point in scalars(run_dir, "replay/cut")]
    norms = [point.value for point in scalars(run_dir, "replay/grad_norm")]
    # logged from their own tally: a log window may close between an update and its replays
    assert cut and len(norms) == len(cut) and scalars(run_dir, "grad/norm")
    assert all(0.0 <= share < 1.0 for share in cut) and all(norm > 0.0 for norm in norms)
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    # the replays' updates are applied too, and count no agent steps
    assert checkpoint["optimizer"]["updates"] == 3 * checkpoint["global_step"] // (2 * 20)


def test_a_run_whose_core_reads_the_action_and_reward_before_trains_evaluates_and_plays_back(tmp_path):
    from a3c.evaluate import evaluate

    run_dir = tmp_path / "run"
    # the evaluator on (smoke config): its games hand the network the same input as the workers'
    proc, log = start_run(run_dir, "workers=1", "envs_per_worker=2", "total_steps=1200", "eval_interval=2",
                          "action_reward_input=true")
    assert proc.wait(timeout=240) == 0, log.read_text()
    assert scalars(run_dir, "eval/mean_return") and scalars(run_dir, "grad/norm")
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert checkpoint["config"]["action_reward_input"] is True
    assert checkpoint["model"]["lstm.weight_ih"].shape == (4 * 512, 288 + 18 + 1)  # 42x42 features, action, reward
    played = evaluate(run_dir / "checkpoints" / "latest.pt", episodes=1, seed=0, max_steps=30, stream=io.StringIO())
    assert played["episodes"][0]["length"] == 30


def test_a_run_with_pixel_control_logs_its_loss_and_keeps_the_head_in_its_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    proc, log = start_run(run_dir, "workers=1", "envs_per_worker=2", "total_steps=1200", "eval_interval=0",
                          "pixel_control=true")
    assert proc.wait(timeout=240) == 0, log.read_text()
    losses = [point.value for point in scalars(run_dir, "loss/pixel_control")]
    assert losses and all(loss > 0.0 for loss in losses)  # River Raid's screen scrolls: the views always change
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert checkpoint["model"]["pixel_deconv.weight"].shape == (32, 18 + 1, 4, 4)  # value and 18 advantage maps
    assert checkpoint["model"]["pixel_fc.weight"].shape == (32 * 3 * 3, 512)  # 42x42: an 8 x 8 grid from 3 x 3 maps


def test_a_killed_worker_is_restarted_and_the_run_completes(tmp_path):
    run_dir = tmp_path / "run"
    proc, log = start_run(run_dir, "total_steps=5000")
    try:
        wait_for(lambda: progress(log) > 0, 120, "training progress")
        pids = child_pids(log)
        os.kill(pids["worker 0"], signal.SIGKILL)
        os.kill(pids["evaluator"], signal.SIGKILL)  # its death must not disturb training either
        assert proc.wait(timeout=240) == 0, log.read_text()
    finally:
        proc.kill()
    text = log.read_text()
    assert "worker 0 died (signal 9); restarting it (1/10)" in text, text
    assert "evaluator died (signal 9); restarting it" in text, text
    assert load_checkpoint(run_dir / "checkpoints" / "latest.pt")["global_step"] >= 5000


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_cleanly_with_a_final_checkpoint(tmp_path, signum):
    run_dir = tmp_path / "run"
    proc, log = start_run(run_dir, "total_steps=1000000")
    try:
        wait_for(lambda: progress(log) > 0, 120, "training progress")
        children = list(child_pids(log).values())
        assert len(children) == 3  # two workers and the evaluator
        sent = time.monotonic()
        proc.send_signal(signum)
        code = proc.wait(timeout=10)
        assert time.monotonic() - sent < 10
    finally:
        proc.kill()
    assert code == 128 + signum, log.read_text()
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert 0 < checkpoint["global_step"] < 1000000
    assert f"{signal.Signals(signum).name} received" in log.read_text()
    wait_for(lambda: not any(alive(pid) for pid in children), 5, "child processes to be gone")


def test_the_run_stops_with_a_message_when_restarts_are_used_up(tmp_path):
    run_dir = tmp_path / "run"
    proc, log = start_run(run_dir, "total_steps=1000000", "max_restarts=0")
    try:
        wait_for(lambda: progress(log) > 0, 120, "training progress")
        os.kill(child_pids(log)["worker 1"], signal.SIGKILL)
        code = proc.wait(timeout=30)
    finally:
        proc.kill()
    text = log.read_text()
    assert code == 1, text
    assert "worker 1 died (signal 9); 0 restarts used, stopping the run" in text, text
    assert "too many worker failures" in text
    assert 0 < load_checkpoint(run_dir / "checkpoints" / "latest.pt")["global_step"] < 1000000


def test_children_exit_when_the_main_process_is_killed(tmp_path):
    run_dir = tmp_path / "run"
    proc, log = start_run(run_dir, "total_steps=1000000")
    try:
        wait_for(lambda: progress(log) > 0, 120, "training progress")
        children = list(child_pids(log).values())
        proc.kill()  # SIGKILL: no chance to stop anyone
        proc.wait(timeout=10)
    finally:
        proc.kill()
    wait_for(lambda: not any(alive(pid) for pid in children), 30, "orphaned children to exit")
