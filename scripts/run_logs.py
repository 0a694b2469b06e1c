"""Read what a training run logged, as the report scripts (learning_curve, plot_curves)
need it, with a folder that is not a run named in a clear error instead of a traceback.

Two kinds of folder are runs: a run folder as ``a3c.train`` writes it (its scalars in
``tensorboard/``, its agent steps in ``checkpoints/latest.pt``), and a kept run
(``scripts.keep_runs``): the run's ``episodes.csv`` and ``config.yaml``, a
``steps_trained`` file and ``scalars.csv`` (the training scalars: losses, gradient norm,
learning rate, steps/s), small enough for the repository once the run folder is gone, with
``checkpoints/latest.pt`` too when it is kept to be resumed elsewhere.

The episodes' scores and lengths come from ``episodes.csv`` wherever a folder has one: it
is the whole run's table (appended to on every resume), while ``tensorboard/`` of a run
restored from a kept copy holds only the events logged since. Likewise the training
scalars of such a run are its kept ``scalars.csv`` up to the restore, then its events.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from a3c.metrics import EPISODE_LENGTH_TAG, EPISODE_RETURN_TAG, EPISODES_CSV, REPORTED_TAGS

CHECKPOINT = Path("checkpoints") / "latest.pt"  # the one a run resumes from and counts its steps by
STEPS_TRAINED = "steps_trained"  # a kept run's agent steps, read from its checkpoint when it was kept
CSV_COLUMNS = {EPISODE_RETURN_TAG: "return", EPISODE_LENGTH_TAG: "length"}  # what a kept run can still tell
SCALARS_CSV = "scalars.csv"  # a kept run's REPORTED_TAGS points: a row (step, tag, value) each
SCALARS_COLUMNS = ("step", "tag", "value")


class NotARun(Exception):
    """A folder given as a run holds no training logs to report."""


def is_kept_run(run_dir: Path) -> bool:
    return not (run_dir / "tensorboard").is_dir() and (run_dir / EPISODES_CSV).is_file()


def complete_lines(path: Path) -> list[str]:
    """The file's lines but a running run's last row, flushed in part."""
    with open(path, newline="") as file:
        lines = file.readlines()
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    return lines


def kept_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """``tag``'s points in the folder's scalars.csv, in step order; [] without one."""
    if tag not in REPORTED_TAGS or not (run_dir / SCALARS_CSV).is_file():
        return []
    return sorted((int(row["step"]), float(row["value"]))
                  for row in csv.DictReader(complete_lines(run_dir / SCALARS_CSV)) if row["tag"] == tag)


def read_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of every point logged under ``tag``, in step order; [] when the run
    never logged that tag (e.g. no evaluation, or in a kept run any tag but the episodes'
    and REPORTED_TAGS; those only from runs kept since 2026-12-04).
    Raises NotARun for a folder that is not a run (a typo, or the parent of the seed folders)."""
    if tag in CSV_COLUMNS and (run_dir / EPISODES_CSV).is_file():
        return sorted((int(row["step"]), float(row[CSV_COLUMNS[tag]]))
                      for row in csv.DictReader(complete_lines(run_dir / EPISODES_CSV)))
    kept = kept_scalars(run_dir, tag)
    if is_kept_run(run_dir):
        return kept
    if not (run_dir / "tensorboard").is_dir():
        raise NotARun(f"{run_dir} is not a run folder (it has neither tensorboard/ nor {EPISODES_CSV} inside)")
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    logged = sorted((event.step, event.value) for event in events.Scalars(tag)) \
        if tag in events.Tags()["scalars"] else []
    restored = logged[0][0] if logged else math.inf  # a run restored from a kept copy logs from here on
    return [point for point in kept if point[0] < restored] + logged


def episode_returns(run_dir: Path) -> list[tuple[int, float]]:
    """(global step at the episode's end, raw score) of every training episode; raises
    NotARun when there are none yet, since no score can be reported."""
    returns = read_scalars(run_dir, EPISODE_RETURN_TAG)
    if not returns:
        raise NotARun(f"no episodes logged in {run_dir} yet")
    return returns


def steps_trained(run_dir: Path, returns: list[tuple[int, float]]) -> int:
    """Agent steps the run reached: its latest checkpoint's count, else the count kept
    with it (a kept run without its checkpoint), else its last episode's end. The
    checkpoint comes first: a run restored from a kept copy and trained on has a stale
    ``steps_trained`` beside a newer checkpoint."""
    checkpoint = run_dir / CHECKPOINT
    if checkpoint.is_file():  # torch is imported only for a folder with a checkpoint
        from a3c.checkpoint import CheckpointError, load_checkpoint

        try:
            return int(load_checkpoint(checkpoint)["global_step"])
        except CheckpointError:
            pass
    kept = run_dir / STEPS_TRAINED
    if kept.is_file():
        return int(kept.read_text())
    return returns[-1][0] if returns else 0
