"""Plot learning curves (raw score against agent steps) of one or more runs to a PNG.

    python -m scripts.plot_curves runs/A [runs/B ...] --out curve.png [--window 100] [--labels A B ...]
    python -m scripts.plot_curves --group default runs/D/seed-1 runs/D/seed-2 \
        --group rg84 runs/R/seed-1 runs/R/seed-2 --peers [--max-steps 2200000] --out curves.png

For each run: every training episode's raw score (faint), its running mean over the
last ``--window`` episodes (solid), and the evaluator's mean score (markers). For each
``--group`` of runs (seeds of one setting): the mean over its runs of that running mean,
with a band from the lowest to the highest run. ``--peers`` adds the published figures
of other agents at equal agent steps (PEERS below, with their sources).
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt

from a3c.cli import ArgumentParser
from a3c.metrics import EPISODE_RETURN_TAG
from scripts.run_logs import NotARun, episode_returns, read_scalars


def running_mean(values: list[float], window: int) -> list[float]:
    means, total = [], 0.0
    for k, value in enumerate(values):
        total += value - (values[k - window] if k >= window else 0.0)
        means.append(total / min(k + 1, window))
    return means


PEERS = {
    # name: ([(agent steps, score)], source)
    "original design (23 processes)": ([(1_000_000, 560), (2_000_000, 1_050), (10_000_000, 3_160)],
                                       "the project's design brief"),
    "DQN (Dopamine, sticky actions)": ([(1_000_000, 2_400), (2_000_000, 3_100), (5_000_000, 5_400)],
                                       "Dopamine's published baselines"),
    "Quantile (Dopamine, sticky actions)": ([(2_000_000, 5_400)], "Dopamine's published baselines"),
    "PPO (CleanRL, v5)": ([(10_000_000, 8_275)], "CleanRL's PPO benchmark"),
}
RANDOM_SCORE = 1_339  # Mnih et al. 2015


def group_curve(run_dirs: list[Path], window: int, points: int = 200):
    """(steps, mean, low, high) of the runs' running means on a common grid of steps, from
    the step by which every run has ended an episode (before it, a run has no score yet, and
    its first episode's would be shown before it was played) to the shortest run's last
    episode. Raises NotARun: a band must not quietly leave out a seed that logged nothing."""
    curves = []
    for run_dir in run_dirs:
        steps, scores = zip(*episode_returns(run_dir))
        curves.append((steps, running_mean(list(scores), window)))
    start, end = max(steps[0] for steps, _ in curves), min(steps[-1] for steps, _ in curves)
    grid = [start + (end - start) * k / (points - 1) for k in range(points)] if end > start else [end]
    at_grid = []
    for steps, means in curves:
        row, index = [], 0
        for mark in grid:  # the running mean of the last episode ended by each mark
            while index + 1 < len(steps) and steps[index + 1] <= mark:
                index += 1
            row.append(means[index])
        at_grid.append(row)
    columns = list(zip(*at_grid))
    return (grid, [sum(c) / len(c) for c in columns], [min(c) for c in columns], [max(c) for c in columns])


def plot_groups(groups: list[list[str]], out: Path, window: int, peers: bool, max_steps: int | None = None) -> int:
    many = len(groups) > 6  # then the legend goes beside the plot, where it hides no curve
    figure, axes = plt.subplots(figsize=(13 if many else 9, 5), dpi=110)
    palette = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")  # a colour of its own for each group
    for index, (name, *runs) in enumerate(groups):
        grid, mean, low, high = group_curve([Path(run) for run in runs], window)
        axes.plot(grid, mean, color=palette(index % palette.N), linewidth=2,
                  label=f"{name} ({len(runs)} run{'s' if len(runs) > 1 else ''})")
        if len(runs) > 1:
            axes.fill_between(grid, low, high, color=palette(index % palette.N), alpha=0.2, linewidth=0)
    if peers:
        for k, (name, (points, source)) in enumerate(PEERS.items()):
            points = [p for p in points if max_steps is None or p[0] <= max_steps]
            if points:
                axes.plot(*zip(*points), marker="sd^vPX"[k % 6], linestyle=":", color="0.35",  # one marker each
                          label=f"{name} ({source})")
        axes.axhline(RANDOM_SCORE, color="0.6", linestyle="--", linewidth=1, label="random agent (Mnih et al. 2015)")
    if max_steps is not None:
        axes.set_xlim(0, max_steps)
    finish(figure, axes, out, legend="outside" if many else "lower right")  # the curves rise to the upper right
    return 0


def finish(figure, axes, out: Path, legend: str = "upper left") -> None:
    axes.set_xlabel("agent steps")
    axes.set_ylabel("raw game score")
    axes.grid(alpha=0.3)
    if legend == "outside":
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    else:
        axes.legend(loc=legend, fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    print(f"wrote {out}")


def points(logged: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
    """The steps and the values of logged (step, value) pairs, as matplotlib takes them."""
    return [step for step, _ in logged], [value for _, value in logged]


def plot(run_dirs: list[Path], out: Path, window: int, labels: list[str] | None = None) -> int:
    figure, axes = plt.subplots(figsize=(9, 5), dpi=110)
    plotted = 0
    labels = labels or [run_dir.name for run_dir in run_dirs]
    for index, (run_dir, name) in enumerate(zip(run_dirs, labels)):
        colour = f"C{index}"
        steps, scores = points(read_scalars(run_dir, EPISODE_RETURN_TAG))
        if steps:
            axes.plot(steps, scores, ".", color=colour, alpha=0.15, markersize=3)
            axes.plot(steps, running_mean(scores, window), color=colour, linewidth=2,
                      label=f"{name}: training, mean of last {window} episodes")
            plotted += 1
        eval_steps, eval_scores = points(read_scalars(run_dir, "eval/mean_return"))
        if eval_steps:
            axes.plot(eval_steps, eval_scores, "o--", color=colour, markersize=4, linewidth=1,
                      label=f"{name}: evaluation")
            plotted += 1
    if not plotted:
        raise NotARun(f"no episode scores logged in {', '.join(map(str, run_dirs))} yet")
    finish(figure, axes, out)
    return 0


def main() -> int:
    parser = ArgumentParser(prog="python -m scripts.plot_curves", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run folders, or runs kept by scripts.keep_runs")
    parser.add_argument("--group", nargs="+", action="append", metavar=("NAME", "RUN"),
                        help="a named group of runs (seeds) drawn as their mean with a band; repeatable")
    parser.add_argument("--peers", action="store_true", help="add other agents' published figures")
    parser.add_argument("--max-steps", type=int, help="with --group: the x axis ends here (and so do the peers)")
    parser.add_argument("--out", type=Path, default=Path("learning_curve.png"))
    parser.add_argument("--window", type=int, default=100, help="episodes in the running mean")
    parser.add_argument("--labels", nargs="+", help="legend names of the runs (default: folder names)")
    args = parser.parse_args()
    if args.group:
        if args.runs or any(len(group) < 2 for group in args.group):
            parser.error("--group takes a name and at least one run; do not mix groups with plain runs")
    elif not args.runs:
        parser.error("give run directories or --group")
    elif args.labels and len(args.labels) != len(args.runs):
        parser.error(f"--labels needs one name per run ({len(args.runs)}), got {len(args.labels)}")
    if args.window <= 0:
        parser.error(f"--window must be a positive number of episodes, got {args.window}")
    try:
        if args.group:
            return plot_groups(args.group, args.out, args.window, args.peers, args.max_steps)
        return plot(args.runs, args.out, args.window, args.labels)
    except NotARun as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
