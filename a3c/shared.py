"""The global network as processes on one machine share it.

Workers of the local backend update it in place; the evaluator process reads it. With
the Ray backend the driver keeps one of these as a mirror of the parameter server, so
that the evaluator reads it the same way.
"""
from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass

import torch

from a3c.model import ActorCritic
from a3c.optim import SharedOptimizer

PHASES = ("env", "forward", "backward", "optimizer")
"""Where a worker's time goes, per update: stepping the games (preprocessing included),
the network's forward steps and action sampling, the loss and backward, and clipping,
the shared optimizer step and pulling the new weights."""


def time_split(timings: torch.Tensor) -> dict[str, float]:
    """Milliseconds per update in each phase, averaged over the workers' rows of ``timings``."""
    totals = timings.sum(0)
    updates = max(float(totals[-1]), 1.0)
    return {phase: 1e3 * float(totals[k]) / updates for k, phase in enumerate(PHASES)}


class StopFlag:
    """The run's stop signal, shared with spawned children: ``set``, ``is_set`` and
    ``wait`` like ``multiprocessing.Event``, but one byte of shared memory and no lock.
    An Event guards its flag with a lock; a process killed (SIGKILL) while holding it,
    even inside ``is_set()``, leaves that lock taken forever, and the main process then
    hangs at ``set()`` when the run ends, before its final checkpoint."""

    POLL_SECONDS = 0.02  # how soon ``wait`` sees the flag set by another process

    def __init__(self):
        self.flag = torch.zeros(1, dtype=torch.uint8).share_memory_()

    def set(self) -> None:
        self.flag[0] = 1

    def is_set(self) -> bool:
        return bool(self.flag[0])

    def wait(self, timeout: float | None = None) -> bool:
        """True once set; False after ``timeout`` seconds (None: as long as it takes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            time.sleep(self.POLL_SECONDS if left is None else min(self.POLL_SECONDS, left))
        return True


def network_snapshot(model: ActorCritic, optimizer: SharedOptimizer, global_step: int,
                     obs_norm: torch.Tensor) -> dict:
    """Copies of what a checkpoint keeps of the global network, taken while workers update it."""
    return {"model": {k: v.clone() for k, v in model.state_dict().items()}, "optimizer": optimizer.state_dict(),
            "global_step": global_step, "obs_norm": obs_norm.clone()}


@dataclass
class SharedState:
    """Everything the workers share with the main process (picklable to spawned children)."""

    model: ActorCritic
    optimizer: SharedOptimizer
    steps: torch.Tensor  # (workers + 1,) int64: agent steps per worker slot, then the steps before a resume
    obs_norm: torch.Tensor  # (workers, 3) float64: each worker's normaliser state [mean, std, count]
    stop: StopFlag
    timings: torch.Tensor  # (workers, len(PHASES) + 1) float64: seconds per phase, then updates

    @classmethod
    def create(cls, model: ActorCritic, optimizer: SharedOptimizer, workers: int,
               start_step: int = 0) -> "SharedState":
        """Fresh counters and stop flag in shared memory; ``model`` and ``optimizer`` are moved there too."""
        steps = torch.zeros(workers + 1, dtype=torch.int64)
        steps[-1] = start_step
        return cls(model.share_memory(), optimizer, steps.share_memory_(),
                   torch.zeros(workers, 3, dtype=torch.float64).share_memory_(), StopFlag(),
                   cls.timing_table(workers))

    @staticmethod
    def timing_table(workers: int) -> torch.Tensor:
        return torch.zeros(workers, len(PHASES) + 1, dtype=torch.float64).share_memory_()

    @property
    def global_step(self) -> int:
        return int(self.steps.sum())

    def should_stop(self) -> bool:
        """Stop requested, or the main process is gone (killed: nobody would stop us)."""
        if self.stop.is_set():
            return True
        parent = multiprocessing.parent_process()
        return parent is not None and not parent.is_alive()
