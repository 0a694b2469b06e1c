"""What the evaluator costs training: steps per second of the same run with and without it.

Runs ``python -m a3c.train`` with the evaluator off and on in turn (alternating,
``--rounds`` times, so that machine drift hits both alike), the same settings otherwise,
and prints each run's steady rate (the median of its progress lines after the first two)
and the median ratio on/off. Run it on an otherwise idle machine.

    python -m scripts.bench_evaluator [--steps 150000] [--rounds 2] [--eval-interval 60] [key=value ...]
"""
from __future__ import annotations

import statistics

from a3c.cli import ArgumentParser
from scripts.bench_backends import run_training


def main() -> None:
    parser = ArgumentParser(prog="python -m scripts.bench_evaluator", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150_000, help="agent steps per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--eval-interval", type=float, default=60.0, help="seconds between evaluations when on")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="passed to both runs")
    args = parser.parse_args()
    settings = {"off": ["eval_interval=0"], "on": [f"eval_interval={args.eval_interval}"]}
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for round_index in range(args.rounds):
        for name, extra in settings.items():
            rate, split = run_training(args.steps, [*extra, *args.overrides])
            rates[name].append(rate)
            print(f"round {round_index + 1}  evaluator {name:<3} {rate:6.0f} steps/s   ms per update: {split}",
                  flush=True)
    ratio = statistics.median(on / off for on, off in zip(rates["on"], rates["off"]))
    print(f"with/without evaluator: {ratio:.2f}")


if __name__ == "__main__":
    main()
