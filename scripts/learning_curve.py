"""Measure learning: train for a fixed number of agent steps over one or more seeds,
then print, at every mark (default every 500k steps), each run's mean raw score of its
last 100 training episodes and their mean, sample standard deviation and minimum over
seeds.

    python -m scripts.learning_curve --steps 2000000 --seeds 1 2 3 --run-dir runs/NAME [--config FILE] [key=value ...]
    python -m scripts.learning_curve --read runs/NAME/seed-1 runs/NAME/seed-2 [--every 500000] [--scalar grad/norm]
    python -m scripts.learning_curve --read runs/NAME/seed-1 runs/NAME/seed-2 --baseline runs/DEFAULT/seed-1 ...

Training runs the seeds one after another (each uses every worker), in RUN_DIR/seed-K;
``--jobs N`` trains N seeds at the same time (give ``workers=`` so that they share the
cores as you mean them to), each seed's output in RUN_DIR/seed-K.log.
The report reads ``train/episode_return`` (raw game score, logged against the global
agent step at each episode's end) from each run's TensorBoard event files, or from a
kept run's episodes.csv (``scripts.keep_runs``). ``--scalar TAG`` adds a table of a
training scalar (e.g. ``grad/norm``, the gradient's norm before clipping), each run's
median over the points logged between one mark and the next. ``--baseline DIR ...`` (e.g.
the default's runs of the same seeds) adds, at each mark both sets reached, the baseline's
mean, the difference of the means, and how many of the runs read score above every
baseline run or below every one: with two or three seeds a difference of a few hundred
points is within one config's own spread, and the counts show whether it holds run by run.
"""
from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from a3c.cli import ArgumentParser
from a3c.metrics import REPORTED_TAGS
from scripts.run_logs import NotARun, episode_returns, read_scalars, steps_trained


def curve(returns: list[tuple[int, float]], every: int, window: int = 100,
          last: int | None = None) -> list[tuple[int, float, int]]:
    """(step, mean of the last ``window`` episodes ended by that step, episodes so far), at
    every mark the run reached (``last``: its step count; default its last episode's end)."""
    rows = []
    last = last if last is not None else (returns[-1][0] if returns else 0)
    for mark in range(every, last + 1, every):
        done = [value for step, value in returns if step <= mark]
        if done:
            recent = done[-window:]
            rows.append((mark, sum(recent) / len(recent), len(done)))
    return rows


def spread(scores: list[float]) -> tuple[float, float, float]:
    """(mean, standard deviation, minimum) of the seeds' scores at one mark. The deviation is
    the sample one (n - 1): the seeds are a sample of the runs the config gives, and with two
    or three of them the population's would read too low. One run: 0."""
    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
    return statistics.fmean(scores), std, min(scores)


def mark_scores(run_dirs: list[Path], every: int) -> dict[int, list[float]]:
    """{mark: each run's last-100 mean there} for the marks every run has reached. Raises NotARun."""
    curves = []
    for run_dir in run_dirs:
        returns = episode_returns(run_dir)
        curves.append({step: mean for step, mean, _ in curve(returns, every, last=steps_trained(run_dir, returns))})
    return {mark: [c[mark] for c in curves] for mark in sorted(set.intersection(*(set(c) for c in curves)))}


def report(run_dirs: list[Path], table: dict[int, list[float]], stream=sys.stdout) -> int:
    """Print the table of ``mark_scores``: a mark appears once every run has reached it."""
    for k, run_dir in enumerate(run_dirs):
        print(f"run {k + 1}: {run_dir}", file=stream)
    names = [f"run {k + 1}" for k in range(len(run_dirs))]
    print(f"{'agent steps':>12}  " + "  ".join(f"{name:>7}" for name in names)
          + f"  {'mean':>7}  {'std':>6}  {'min':>7}", file=stream)
    for mark, scores in table.items():
        mean, std, low = spread(scores)
        print(f"{mark:>12,}  " + "  ".join(f"{s:>7.0f}" for s in scores) + f"  {mean:>7.0f}  {std:>6.0f}  {low:>7.0f}",
              file=stream)
    return 0


def baseline_report(ours: dict[int, list[float]], baseline_dirs: list[Path], every: int, stream=sys.stdout) -> int:
    """Print the runs' mean (``ours``, their ``mark_scores``) against the baseline runs' at
    each mark both reached, the difference, and how many runs are above every baseline run,
    or below every one. Raises NotARun."""
    theirs = mark_scores(baseline_dirs, every)
    print(f"against the baseline: {', '.join(str(d) for d in baseline_dirs)}", file=stream)
    count = len(next(iter(ours.values()), []))
    print(f"{'agent steps':>12}  {'mean':>7}  {'baseline':>8}  {'diff':>6}  {'above all':>9}  {'below all':>9}",
          file=stream)
    for mark in sorted(ours.keys() & theirs.keys()):
        mean, base = statistics.fmean(ours[mark]), statistics.fmean(theirs[mark])
        above = sum(score > max(theirs[mark]) for score in ours[mark])
        below = sum(score < min(theirs[mark]) for score in ours[mark])
        print(f"{mark:>12,}  {mean:>7.0f}  {base:>8.0f}  {mean - base:>+6.0f}  {f'{above} of {count}':>9}  "
              f"{f'{below} of {count}':>9}", file=stream)
    return 0


def interval_medians(points: list[tuple[int, float]], every: int) -> dict[int, float]:
    """{mark: median of the values logged after the mark before it, up to the mark}, for every
    mark with a point in its interval (a median: a few updates' spike does not move it)."""
    last = points[-1][0] if points else 0
    medians = {}
    for mark in range(every, last + every, every):
        values = [value for step, value in points if mark - every < step <= mark]
        if values:
            medians[mark] = statistics.median(values)
    return medians


def scalar_report(run_dirs: list[Path], tag: str, every: int, stream=sys.stdout) -> int:
    """Print each run's interval medians of ``tag`` at the marks every run has; raises NotARun
    for a run that did not log it (runs kept before 2026-12-04 kept only their episodes)."""
    tables = []
    for run_dir in run_dirs:
        points = read_scalars(run_dir, tag)
        if not points:
            raise NotARun(f"{run_dir} has no {tag} points (a run kept before 2026-12-04 kept only its episodes)")
        tables.append(interval_medians(points, every))
    marks = sorted(set.intersection(*(set(table) for table in tables)))
    print(f"{tag}: median of the points logged after the mark before, up to the mark", file=stream)
    print(f"{'agent steps':>12}  " + "  ".join(f"{f'run {k + 1}':>9}" for k in range(len(run_dirs))), file=stream)
    for mark in marks:
        print(f"{mark:>12,}  " + "  ".join(f"{table[mark]:>9.4g}" for table in tables), file=stream)
    return 0


def train_seeds(commands: dict[int, list[str]], jobs: int, base: Path) -> int:
    """Run each seed's training command, ``jobs`` at a time; 0 when every one succeeded,
    else the first failure's exit code. A failure or a Ctrl-C starts no further seed but
    lets those running finish or save their checkpoints (SIGINT reaches each trainer,
    which stops cleanly): no seed's work is lost."""
    pending, running, failure = list(commands), {}, 0
    # Python keeps SIGINT ignored when it starts ignored (a background job of a shell
    # script, nohup ... &): `kill -INT` must still stop the seeds, as it stops a3c.train
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def start(seed: int) -> None:
        print("$", " ".join(commands[seed][1:]), flush=True)
        log = None
        if jobs > 1:  # side by side: one file per seed, not interleaved lines on the screen
            base.mkdir(parents=True, exist_ok=True)
            log = open(base / f"seed-{seed}.log", "w")
            print(f"seed {seed}: output in {log.name}", flush=True)
        running[seed] = (subprocess.Popen(commands[seed], stdout=log, stderr=log), time.monotonic(), log)

    try:
        while pending or running:
            while pending and len(running) < jobs:
                start(pending.pop(0))
            time.sleep(0.5)
            for seed, (process, started, log) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[seed]
                if log:
                    log.close()
                if process.returncode == 0:
                    print(f"seed {seed}: {(time.monotonic() - started) / 60:.1f} min wall time", flush=True)
                else:
                    print(f"training seed {seed} exited with code {process.returncode}", file=sys.stderr, flush=True)
                    failure = failure or process.returncode
                    pending.clear()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the checkpoints short
        for process, _, _ in running.values():
            process.send_signal(signal.SIGINT)  # also when only this process got the signal
        for process, _, log in running.values():
            process.wait()
            if log:
                log.close()
        print("interrupted: the seeds running stopped and saved their checkpoints", file=sys.stderr)
        return 130
    return failure


def report_or_error(run_dirs: list[Path], every: int, scalar: str | None = None,
                    baseline: list[Path] | None = None) -> int:
    """The table (and ``scalar``'s, and the comparison with ``baseline``'s runs), or one error
    line and exit code 2 for a folder that is not a run or has no episode yet (a typo, the
    parent of seed-K, a budget too small for a whole episode) or lacks the scalar."""
    try:
        table = mark_scores(run_dirs, every)  # read once for both tables
        code = report(run_dirs, table)
        if baseline:
            code = code or baseline_report(table, baseline, every)
        if scalar is not None:
            code = code or scalar_report(run_dirs, scalar, every)
        return code
    except NotARun as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def main() -> int:
    parser = ArgumentParser(prog="python -m scripts.learning_curve", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2_000_000, help="agent steps to train each seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="seeds to train, one run each")
    parser.add_argument("--every", type=int, default=500_000, help="report interval in agent steps")
    parser.add_argument("--read", type=Path, nargs="+", help="only report existing run directories")
    parser.add_argument("--run-dir", type=Path, help="where to train (default runs/curve-<time>); "
                                                      "each seed in RUN_DIR/seed-K")
    parser.add_argument("--jobs", type=int, default=1,
                        help="seeds trained at the same time, each with its own workers (default 1: one after "
                             "another); with more, each seed's output goes to RUN_DIR/seed-K.log")
    parser.add_argument("--scalar", choices=REPORTED_TAGS, metavar="TAG",
                        help=f"also report this training scalar's median per interval: {', '.join(REPORTED_TAGS)}")
    parser.add_argument("--baseline", type=Path, nargs="+", metavar="DIR",
                        help="runs to compare with at each mark (e.g. the default's): their mean, the "
                             "difference, and how many runs score above or below all of them")
    parser.add_argument("--config", help="YAML settings file passed to a3c.train (default: its default)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="passed to a3c.train")
    args = parser.parse_args()
    if args.every <= 0:
        parser.error(f"--every must be a positive number of agent steps, got {args.every}")
    if args.read:
        return report_or_error(args.read, args.every, args.scalar, args.baseline)

    if args.jobs <= 0:
        parser.error(f"--jobs must be a positive number of seeds, got {args.jobs}")
    base = args.run_dir or Path("runs") / time.strftime("curve-%Y%m%d-%H%M%S")
    config = ["--config", args.config] if args.config else []
    commands = {seed: [sys.executable, "-m", "a3c.train", *config, f"total_steps={args.steps}",
                       f"run_dir={base / f'seed-{seed}'}", "log_interval=60", *args.overrides, f"seed={seed}"]
                for seed in dict.fromkeys(args.seeds)}
    try:
        code = train_seeds(commands, args.jobs, base)
    except OSError as error:  # e.g. RUN_DIR not writable for the seeds' logs
        print(f"error: cannot write {error.filename or base}: {error.strerror or error}", file=sys.stderr)
        return 2
    if code != 0:
        return code
    return report_or_error([base / f"seed-{seed}" for seed in commands], args.every, args.scalar, args.baseline)


if __name__ == "__main__":
    sys.exit(main())
