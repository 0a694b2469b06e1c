"""Keep runs' learning records in the repository, for reports after the runs are gone.

    python -m scripts.keep_runs runs/NAME/seed-1 runs/NAME/seed-2 --to scripts/runs/NAME
    python -m scripts.keep_runs runs/NAME/seed-1 --to scripts/runs/NAME --checkpoint

Each run's ``episodes.csv`` (a row per training episode: ~50 KB per 2M agent steps) and
``config.yaml`` go to TO/<the run folder's name>/, with a ``steps_trained`` file holding
the agent steps of its latest checkpoint and ``scalars.csv``, its training scalars from
TensorBoard (losses, gradient norm before clipping, learning rate, steps/s: a row per tag
per log interval, ~20 KB per 2M steps at learning_curve's 60 s); its checkpoints and event
files (megabytes) stay behind. ``learning_curve --read`` and ``plot_curves`` take a kept
run wherever they take a run folder, so a later ablation is compared with the curves it
is measured against, not only with the marks copied into scripts/RESULTS.md. Keeping a run again
(after it trained further) replaces what was kept of it.

``--checkpoint`` keeps ``checkpoints/latest.pt`` as well (weights, optimizer state and
input normalisation: ~12 MB at 84x84), for a run longer than its machine lasts: on the
next machine, copy the kept folder to ``runs/`` and resume it there
(``python -m a3c.train resume=runs/NAME/seed-1/checkpoints/latest.pt``); its episodes
carry on in the same ``episodes.csv``. Keeping the run again without ``--checkpoint``
(once it has finished) drops the kept checkpoint.
"""
from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

from a3c.cli import ArgumentParser
from a3c.metrics import REPORTED_TAGS
from scripts.run_logs import (CHECKPOINT, EPISODES_CSV, SCALARS_COLUMNS, SCALARS_CSV, STEPS_TRAINED, NotARun,
                              episode_returns, is_kept_run, read_scalars, steps_trained)

KEPT_FILES = (EPISODES_CSV, "config.yaml")


def check(run_dir: Path) -> list[tuple[int, float]]:
    """The run's episodes; raises NotARun for a folder that cannot be kept."""
    if is_kept_run(run_dir):
        raise NotARun(f"{run_dir} is a kept run already")
    missing = [name for name in KEPT_FILES if not (run_dir / name).is_file()]
    if missing:
        raise NotARun(f"{run_dir} is not a run folder of a3c.train (it has no {' or '.join(missing)})")
    return episode_returns(run_dir)


def keep(run_dir: Path, to: Path, steps: int, checkpoint: bool = False) -> tuple[Path, int]:
    """Copy what a checked run needs to be reported (and with ``checkpoint``, resumed)
    into ``to/<its name>``; the kept folder and the agent steps kept with it."""
    kept = to / run_dir.resolve().name
    # read before writing: a run restored from a kept copy reads that copy's scalars.csv
    scalars = {tag: read_scalars(run_dir, tag) for tag in REPORTED_TAGS}
    kept.mkdir(parents=True, exist_ok=True)
    for name in KEPT_FILES:
        shutil.copyfile(run_dir / name, kept / name)
    with open(kept / SCALARS_CSV, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(SCALARS_COLUMNS)
        writer.writerows((step, tag, value) for tag, points in scalars.items() for step, value in points)
    if checkpoint:
        (kept / CHECKPOINT).parent.mkdir(exist_ok=True)
        shutil.copyfile(run_dir / CHECKPOINT, kept / CHECKPOINT)
        steps = steps_trained(kept, [])  # a running run may have written a newer one since it was checked
    else:
        (kept / CHECKPOINT).unlink(missing_ok=True)  # a copy kept earlier, now stale
    (kept / STEPS_TRAINED).write_text(f"{steps}\n")
    return kept, steps


def main() -> int:
    parser = ArgumentParser(prog="python -m scripts.keep_runs", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (as a3c.train writes them)")
    parser.add_argument("--to", type=Path, required=True, help="folder to keep them in, each under its own name")
    parser.add_argument("--checkpoint", action="store_true",
                        help="keep checkpoints/latest.pt too, to resume the run on another machine (~12 MB)")
    args = parser.parse_args()
    names = [run.resolve().name for run in args.runs]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        parser.error(f"runs would be kept under the same name ({', '.join(clashes)}): keep them with separate --to")
    try:
        # every run checked before any is copied: no half-kept set
        steps = {run: steps_trained(run, check(run)) for run in args.runs}
        if args.checkpoint:
            without = [str(run) for run in args.runs if not (run / CHECKPOINT).is_file()]
            if without:
                raise NotARun(f"{', '.join(without)} has no {CHECKPOINT} to keep")
        for run, count in steps.items():
            kept, count = keep(run, args.to, count, args.checkpoint)
            with_checkpoint = f", with {CHECKPOINT}" if args.checkpoint else ""
            print(f"kept {run} in {kept} ({count} agent steps{with_checkpoint})")
    except NotARun as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write {error.filename or args.to}: {error.strerror or error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
