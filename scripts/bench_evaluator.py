"""What the evaluator costs training: steps per second of the same run with and without it.

Runs ``python -m a3c.train`` with the evaluator off and on in turn (alternating,
``--rounds`` times, so that machine drift hits both alike), the same settings otherwise,
and prints each run's steady rate (the median of its progress lines after the first two)
and the median ratio on/off. Run it on an otherwise idle machine.

A fresh network's episodes are short; a trained agent's are long (~1,500-1,900 agent
steps at 10M), so the evaluator's share of the machine grows as a run learns.
``--resume CHECKPOINT`` starts both runs from a trained checkpoint (each in a folder of
its own; the checkpoint is only read) to measure that late cost.

    python -m scripts.bench_evaluator [--steps 150000] [--rounds 2] [--eval-interval 60] [--resume CKPT] [key=value ...]
"""
from __future__ import annotations

import statistics
import sys

from a3c.checkpoint import CheckpointError, load_checkpoint
from a3c.cli import ArgumentParser
from scripts.bench_backends import run_training


def main() -> int:
    parser = ArgumentParser(prog="python -m scripts.bench_evaluator", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150_000, help="agent steps per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--eval-interval", type=float, default=60.0, help="seconds between evaluations when on")
    parser.add_argument("--resume", metavar="CHECKPOINT",
                        help="both runs resume this trained checkpoint and make --steps more steps")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="passed to both runs")
    args = parser.parse_args()
    settings = {"off": ["eval_interval=0"], "on": [f"eval_interval={args.eval_interval}"]}
    if args.resume:
        try:
            start = load_checkpoint(args.resume)["global_step"]
        except CheckpointError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        for extra in settings.values():
            extra += [f"resume={args.resume}", f"total_steps={start + args.steps}"]
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for round_index in range(args.rounds):
        for name, extra in settings.items():
            rate, split = run_training(args.steps, [*extra, *args.overrides])
            rates[name].append(rate)
            print(f"round {round_index + 1}  evaluator {name:<3} {rate:6.0f} steps/s   ms per update: {split}",
                  flush=True)
    ratio = statistics.median(on / off for on, off in zip(rates["on"], rates["off"]))
    print(f"with/without evaluator: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
