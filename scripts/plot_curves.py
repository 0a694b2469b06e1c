"""Plot learning curves (raw score against agent steps) of one or more runs to a PNG.

    python -m scripts.plot_curves runs/A [runs/B ...] --out curve.png [--window 100] [--labels A B ...]

For each run: every training episode's raw score (faint), its running mean over the
last ``--window`` episodes (solid), and the evaluator's mean greedy score (markers).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(run_dir: Path, tag: str) -> tuple[list[int], list[float]]:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return [], []
    points = sorted((e.step, e.value) for e in events.Scalars(tag))
    return [p[0] for p in points], [p[1] for p in points]


def running_mean(values: list[float], window: int) -> list[float]:
    means, total = [], 0.0
    for k, value in enumerate(values):
        total += value - (values[k - window] if k >= window else 0.0)
        means.append(total / min(k + 1, window))
    return means


def plot(run_dirs: list[Path], out: Path, window: int, labels: list[str] | None = None) -> int:
    figure, axes = plt.subplots(figsize=(9, 5), dpi=110)
    plotted = 0
    labels = labels or [run_dir.name for run_dir in run_dirs]
    for index, (run_dir, name) in enumerate(zip(run_dirs, labels)):
        colour = f"C{index}"
        steps, scores = read_scalars(run_dir, "train/episode_return")
        if steps:
            axes.plot(steps, scores, ".", color=colour, alpha=0.15, markersize=3)
            axes.plot(steps, running_mean(scores, window), color=colour, linewidth=2,
                      label=f"{name}: training, mean of last {window} episodes")
            plotted += 1
        eval_steps, eval_scores = read_scalars(run_dir, "eval/mean_return")
        if eval_steps:
            axes.plot(eval_steps, eval_scores, "o--", color=colour, markersize=4, linewidth=1,
                      label=f"{name}: evaluation (greedy)")
            plotted += 1
    if not plotted:
        print(f"no episode scores found in {', '.join(map(str, run_dirs))}", file=sys.stderr)
        return 1
    axes.set_xlabel("agent steps")
    axes.set_ylabel("raw game score")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    print(f"wrote {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (each holds tensorboard/)")
    parser.add_argument("--out", type=Path, default=Path("learning_curve.png"))
    parser.add_argument("--window", type=int, default=100, help="episodes in the running mean")
    parser.add_argument("--labels", nargs="+", help="legend names of the runs (default: folder names)")
    args = parser.parse_args()
    if args.labels and len(args.labels) != len(args.runs):
        parser.error(f"--labels needs one name per run ({len(args.runs)}), got {len(args.labels)}")
    return plot(args.runs, args.out, args.window, args.labels)


if __name__ == "__main__":
    sys.exit(main())
