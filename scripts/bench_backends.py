"""Steps per second of the two backends on this machine: local processes against Ray actors.

Runs ``python -m a3c.train`` with each backend in turn (alternating, ``--rounds`` times),
the same workers and settings, no evaluator; reports the steady rate (median of the
progress lines after the first two, so start-up is left out) and the workers' time split
per update. With Ray the "optimizer" phase is the round trip to the parameter server:
gradients out, fresh weights back.

    python -m scripts.bench_backends [--steps 30000] [--rounds 2] [key=value ...]
    python -m scripts.bench_backends --overhead-only     # only the round-trip breakdown

The breakdown times, on a local Ray, actor calls carrying what a push carries: nothing,
the gradients out, the weights back, both; and the optimizer step the server applies.
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from a3c.cli import ArgumentParser

ROOT = Path(__file__).resolve().parent.parent


def run_training(steps: int, settings: list[str]) -> tuple[float, str]:
    """(steady steps/s, the workers' time split) of one ``python -m a3c.train`` run."""
    with tempfile.TemporaryDirectory() as run_dir:
        command = [sys.executable, "-m", "a3c.train", f"total_steps={steps}", "log_interval=2",
                   f"run_dir={run_dir}", *settings]
        env = dict(os.environ, RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "disabled"))
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"run with {' '.join(settings)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    rates = [float(r) for r in re.findall(r"^step \d+/\d+\s+(\d+) steps/s", result.stdout, re.MULTILINE)]
    split = re.search(r"^ms per update and worker: (.*)$", result.stdout, re.MULTILINE).group(1)
    return statistics.median(rates[2:-1] or rates), split


def round_trip_breakdown(repeats: int = 50) -> None:
    """Median ms of actor calls carrying a push's payloads, and of the optimizer step."""
    import numpy as np
    import ray
    import torch

    from a3c.config import load_config
    from a3c.model import ActorCritic, network_settings
    from a3c.optim import make_optimizer

    @ray.remote(num_cpus=0)
    class Echo:
        def __init__(self, size: int) -> None:
            self.weights = np.zeros(size, dtype=np.float32)

        def call(self, payload=None, reply: bool = False):
            return self.weights if reply else None

    model = ActorCritic(18, **network_settings(load_config(None)))  # the default run's network
    size = sum(p.numel() for p in model.parameters())
    grads = np.ones(size, dtype=np.float32)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        echo = Echo.remote(size)
        ray.get(echo.call.remote())

        def median_ms(fn) -> float:
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                fn()
                times.append(time.perf_counter() - started)
            return 1e3 * statistics.median(times)

        rows = {
            "empty call": lambda: ray.get(echo.call.remote()),
            "gradients out": lambda: ray.get(echo.call.remote(grads)),
            "weights back": lambda: ray.get(echo.call.remote(reply=True)),
            "both (a push)": lambda: ray.get(echo.call.remote(grads, reply=True)),
        }
        print(f"# round trips on a local Ray, {size:,} float32 ({size * 4 / 1e6:.1f} MB) each way")
        for name, fn in rows.items():
            print(f"{name:<16} {median_ms(fn):6.2f} ms")
    finally:
        ray.shutdown()
    optimizer = make_optimizer("adam", model.parameters(), 1e-4)
    tensors = [torch.ones_like(p) for p in model.parameters()]
    print(f"{'optimizer step':<16} {median_ms(lambda: optimizer.step(tensors)):6.2f} ms (Adam, in this process)")


def main() -> None:
    parser = ArgumentParser(prog="python -m scripts.bench_backends", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30000, help="agent steps per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--overhead-only", action="store_true", help="only the round-trip breakdown")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="passed to both runs")
    args = parser.parse_args()
    if args.overhead_only:
        round_trip_breakdown()
        return
    rates: dict[str, list[float]] = {"local": [], "ray": []}
    for round_index in range(args.rounds):
        for backend in rates:
            rate, split = run_training(args.steps, [f"backend={backend}", "eval_interval=0", *args.overrides])
            rates[backend].append(rate)
            print(f"round {round_index + 1}  {backend:<5} {rate:6.0f} steps/s   ms per update: {split}", flush=True)
    ratio = statistics.median(r / l for r, l in zip(rates["ray"], rates["local"]))
    print(f"ray/local: {ratio:.2f}")
    round_trip_breakdown()


if __name__ == "__main__":
    main()
