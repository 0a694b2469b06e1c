"""Steps per second of the two backends on this machine: local processes against Ray actors.

Runs ``python -m a3c.train`` with each backend in turn (alternating, ``--rounds`` times),
the same workers and settings, no evaluator; reports the steady rate (median of the
progress lines after the first two, so start-up is left out) and the workers' time split
per update. With Ray the "optimizer" phase is the round trip to the parameter server:
gradients out, fresh weights back.

    python scripts/bench_backends.py [--steps 30000] [--rounds 2] [key=value ...]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(backend: str, steps: int, overrides: list[str]) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as run_dir:
        command = [sys.executable, "-m", "a3c.train", f"backend={backend}", f"total_steps={steps}",
                   "eval_interval=0", "log_interval=2", f"run_dir={run_dir}", *overrides]
        env = dict(os.environ, RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "disabled"))
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{backend} run failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    rates = [float(r) for r in re.findall(r"^step \d+/\d+\s+(\d+) steps/s", result.stdout, re.MULTILINE)]
    split = re.search(r"^ms per update and worker: (.*)$", result.stdout, re.MULTILINE).group(1)
    return statistics.median(rates[2:-1] or rates), split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30000, help="agent steps per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="passed to both runs")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"local": [], "ray": []}
    for round_index in range(args.rounds):
        for backend in rates:
            rate, split = run(backend, args.steps, args.overrides)
            rates[backend].append(rate)
            print(f"round {round_index + 1}  {backend:<5} {rate:6.0f} steps/s   ms per update: {split}", flush=True)
    ratio = statistics.median(r / l for r, l in zip(rates["ray"], rates["local"]))
    print(f"ray/local: {ratio:.2f}")


if __name__ == "__main__":
    main()
