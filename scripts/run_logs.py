"""Read what a training run logged: the scalars in RUN/tensorboard, as the report scripts
(learning_curve, plot_curves) need them, with a run folder that is not one named in a
clear error instead of TensorBoard's traceback."""
from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

EPISODE_RETURN = "train/episode_return"  # raw game score, logged at each episode's end against the global step


class NotARun(Exception):
    """A folder given as a run holds no training logs to report."""


def read_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of every point logged under ``tag``, in step order; [] when the run
    never logged that tag (e.g. no evaluation). Raises NotARun for a folder that is not a
    run (no ``tensorboard/`` inside: a typo, or the parent of the seed folders)."""
    if not (run_dir / "tensorboard").is_dir():
        raise NotARun(f"{run_dir} is not a run folder (it has no tensorboard/ inside)")
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return []
    return sorted((event.step, event.value) for event in events.Scalars(tag))


def episode_returns(run_dir: Path) -> list[tuple[int, float]]:
    """(global step at the episode's end, raw score) of every training episode; raises
    NotARun when there are none yet, since no score can be reported."""
    returns = read_scalars(run_dir, EPISODE_RETURN)
    if not returns:
        raise NotARun(f"no episodes logged in {run_dir} yet")
    return returns
