"""What workers, the evaluator and the backends tell the training loop.

Each message is a small frozen dataclass; the training loop dispatches on its type.
They cross process boundaries pickled, and stay far below 4 KiB, the size up to which
a pipe write is atomic: a process killed mid-send never leaves half a message behind.
"""
from __future__ import annotations

from dataclasses import dataclass

TRACEBACK_CHARS = 3000  # the end of a traceback: keeps an error message under the atomic pipe write


@dataclass(frozen=True)
class EpisodeEnded:
    worker: int
    env_index: int
    global_step: int
    raw_return: float
    length: int


@dataclass(frozen=True)
class UpdateDone:
    worker: int
    global_step: int
    policy_loss: float
    value_loss: float
    entropy: float
    grad_norm: float
    skipped: bool  # a non-finite gradient: nothing was applied
    # self-imitation (sil_batch): its policy loss and the share of its batch it imitated; nan when off
    imitation_loss: float = float("nan")
    imitated: float = float("nan")
    # a V-trace replay's update (replay_ratio): the share of its steps whose importance weight
    # pi / mu was cut at vtrace_rho_clip; nan for a rollout's own update
    replay_cut: float = float("nan")
    # pixel control (pixel_control): its loss on the rollout's own update; nan when off or a replay
    pixel_control_loss: float = float("nan")


@dataclass(frozen=True)
class Evaluated:
    global_step: int
    mean_return: float
    mean_length: float
    policy: str = "sample"  # "sample" (actions drawn from pi) or "greedy" (the most probable)


@dataclass(frozen=True)
class EvalClip:
    global_step: int
    path: str


@dataclass(frozen=True)
class Failed:
    """A worker or the evaluator hit an exception (it exits; the loop decides on a restart)."""

    who: str  # "worker 3" or "evaluator"
    traceback: str

    @classmethod
    def now(cls, who: str) -> "Failed":
        import traceback

        return cls(who, traceback.format_exc()[-TRACEBACK_CHARS:])


@dataclass(frozen=True)
class Notice:
    """Something a backend wants the user to read in the progress log."""

    text: str


Message = EpisodeEnded | UpdateDone | Evaluated | EvalClip | Failed | Notice
