"""Measure learning: train for a fixed number of agent steps, then print the
100-episode mean raw score at every checkpoint step (default every 500k steps).

    python -m scripts.learning_curve --steps 2000000 [key=value ...]   # train, then report
    python -m scripts.learning_curve --read runs/X [--every 500000]    # report an existing run

The report reads ``train/episode_return`` (raw game score, logged against the global
agent step at each episode's end) from the run's TensorBoard event files.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parent.parent


def episode_returns(run_dir: Path) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    if "train/episode_return" not in events.Tags()["scalars"]:
        return []
    return sorted((e.step, e.value) for e in events.Scalars("train/episode_return"))


def curve(returns: list[tuple[int, float]], every: int, window: int = 100) -> list[tuple[int, float, int]]:
    """(step, mean of the last ``window`` episodes ended by that step, episodes so far)."""
    rows, last = [], returns[-1][0] if returns else 0
    for mark in range(every, last + every, every):
        done = [value for step, value in returns if step <= mark]
        if done:
            recent = done[-window:]
            rows.append((mark, sum(recent) / len(recent), len(done)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2_000_000, help="agent steps to train")
    parser.add_argument("--every", type=int, default=500_000, help="report interval in agent steps")
    parser.add_argument("--read", type=Path, help="only report an existing run directory")
    parser.add_argument("--run-dir", type=Path, help="where to train (default runs/curve-<time>)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="passed to a3c.train")
    args = parser.parse_args()

    run_dir, wall = args.read, None
    if run_dir is None:
        run_dir = args.run_dir or ROOT / "runs" / time.strftime("curve-%Y%m%d-%H%M%S")
        command = [sys.executable, "-m", "a3c.train", f"total_steps={args.steps}", f"run_dir={run_dir}",
                   "log_interval=60", *args.overrides]
        print("$", " ".join(command[1:]), flush=True)
        start = time.monotonic()
        code = subprocess.call(command, cwd=ROOT)
        wall = time.monotonic() - start
        if code != 0:
            print(f"training exited with code {code}", file=sys.stderr)
            return code

    returns = episode_returns(run_dir)
    if not returns:
        print(f"no episodes logged in {run_dir}", file=sys.stderr)
        return 1
    print(f"run: {run_dir}" + (f"  wall time: {wall / 60:.1f} min" if wall else ""))
    print(f"{'agent steps':>12}  {'mean score (last 100)':>22}  {'episodes':>8}")
    for step, mean, episodes in curve(returns, args.every):
        print(f"{step:>12,}  {mean:>22.0f}  {episodes:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
