"""Where the workers run: worker processes on this machine, or actors on a Ray cluster.

Both backends give the training loop (:mod:`a3c.trainer`) the same small interface,
:class:`a3c.backends.base.Backend`; the loop does the rest (logging, restarts,
checkpoints, stopping).
"""
from __future__ import annotations

from a3c.backends.base import Backend, BackendError
from a3c.config import Config
from a3c.mailbox import Mailbox
from a3c.shared import SharedState

__all__ = ["Backend", "BackendError", "make_backend"]


def make_backend(config: Config, shared: SharedState, mailbox: Mailbox, ctx, n_actions: int) -> Backend:
    if config.backend == "ray":
        from a3c.backends.ray import RayBackend

        return RayBackend(config, shared, mailbox, ctx, n_actions)
    from a3c.backends.local import LocalBackend

    return LocalBackend(config, shared, mailbox, ctx, n_actions)
