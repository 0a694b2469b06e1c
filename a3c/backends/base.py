"""The interface every backend gives the training loop (a3c.trainer)."""
from __future__ import annotations

from abc import ABC, abstractmethod

from a3c.config import Config
from a3c.mailbox import Mailbox
from a3c.messages import Message
from a3c.shared import SharedState


class BackendError(RuntimeError):
    """A backend cannot go on (a worker that cannot start, a lost parameter server)."""


class Backend(ABC):
    """Runs a run's workers against the global network.

    ``shared`` is the global network as this machine's processes (the evaluator) read it;
    ``mailbox`` (a3c.mailbox) gives each of this machine's processes a queue to the
    training loop.
    """

    def __init__(self, config: Config, shared: SharedState, mailbox: Mailbox, ctx, n_actions: int) -> None:
        self.config, self.shared, self.mailbox, self.ctx, self.n_actions = config, shared, mailbox, ctx, n_actions
        self.failure: str | None = None  # set when the backend cannot go on; the loop then stops

    @abstractmethod
    def start_workers(self, ranks, restart: int = 0) -> None:
        """Start the workers of these ranks (a run's first, or one that died; ``restart``
        counts the restarts so far: it changes the games' seeds). Raises BackendError when
        any cannot start."""

    @abstractmethod
    def running_workers(self) -> int:
        """How many workers are running or not yet reported ended."""

    @abstractmethod
    def ended_workers(self) -> list[tuple[int, int]]:
        """(rank, exit code) of each worker that ended since the last call; exit code 0 is
        a normal end, anything else a failure."""

    @abstractmethod
    def poll(self) -> list[Message]:
        """Messages the backend gathered itself (beyond ``mailbox``); refreshes ``shared``."""

    @abstractmethod
    def checkpoint_state(self) -> dict | None:
        """{model, optimizer, global_step, obs_norm} of the global network now, or None when
        it cannot be read (then no checkpoint is written)."""

    @abstractmethod
    def stop_workers(self) -> None:
        """Ask every worker to stop, wait a little, then end the ones still running."""

    def process_ids(self) -> dict[str, int]:
        return {}

    def close(self) -> str | None:
        """Release what the backend holds; returns a line for the run's summary, if any."""
        return None
