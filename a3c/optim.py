"""Shared optimizers: state in shared memory, updates written by hand.

Workers call ``step(local_grads, slot, global_step)``: the gradients stay in the worker
(no aliasing of ``.grad`` between processes); the update is applied in place to the
shared parameters, lock-free (Hogwild), as in the A3C paper. The optimizer owns the
learning-rate schedule (``lr_at``), so the logs read the rate from the same place. The update count lives
in shared memory too, one slot per worker so that no lock is needed and a worker
killed mid-update cannot leave one held.
"""
from __future__ import annotations

import math

import torch

from a3c.config import shown


def clip_grad_norm(grads: list[torch.Tensor], max_norm: float) -> float:
    """Scale ``grads`` in place so their global L2 norm is at most ``max_norm``.

    Returns the norm before clipping (inf or nan when a gradient is not finite;
    then nothing is scaled and the caller must skip the update).
    """
    total = math.sqrt(sum(float(torch.dot(g.reshape(-1), g.reshape(-1))) for g in grads))
    if math.isfinite(total):
        scale = max_norm / (total + 1e-6)
        if scale < 1.0:
            for g in grads:
                g.mul_(scale)
    return total


class SharedOptimizer:
    """Common part: shared per-parameter state and a shared update counter."""

    kind = ""
    state_names: tuple[str, ...] = ()
    squares: tuple[str, ...] = ()  # statistics of squared gradients: a square root is taken

    def __init__(self, params: list[torch.Tensor], lr: float, slots: int = 1,
                 total_steps: int | None = None, anneal: bool = False) -> None:
        self.params = params
        self.lr, self.total_steps, self.anneal = lr, total_steps, anneal
        self.updates = torch.zeros(max(slots, 1), dtype=torch.int64).share_memory_()
        self.state = {name: [torch.zeros_like(p).share_memory_() for p in params] for name in self.state_names}

    @property
    def update_count(self) -> int:
        return int(self.updates.sum())

    def lr_at(self, global_step: int) -> float:
        """The learning rate at ``global_step``: constant, or annealed linearly to zero."""
        if not self.anneal or not self.total_steps:
            return self.lr
        return annealed_lr(self.lr, global_step, self.total_steps, True)

    def step(self, grads: list[torch.Tensor], slot: int = 0, global_step: int = 0) -> None:
        """Apply one update from ``grads`` (same order as ``params``) at the learning rate
        of ``global_step``; ``slot`` is the caller's own counter (no lock needed)."""
        if len(grads) != len(self.params):
            raise ValueError(f"{type(self).__name__}: {len(grads)} gradients for {len(self.params)} parameters")
        self.updates[slot] += 1
        self._apply(grads, self.lr_at(global_step), self.update_count)

    def _apply(self, grads, lr: float, count: int) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"kind": self.kind, "updates": self.update_count,
                **{name: [t.clone() for t in tensors] for name, tensors in self.state.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Copy a saved state in; anything that does not fit (a missing or malformed
        statistic, a non-finite or, for squares, negative value) is a ValueError in one line
        and nothing is changed."""
        if not isinstance(state, dict) or state.get("kind") != self.kind:
            kind = state.get("kind") if isinstance(state, dict) else None
            raise ValueError(f"optimizer state is for {shown(kind)}, this run uses {self.kind!r}")
        updates = state.get("updates")
        if isinstance(updates, bool) or not isinstance(updates, int) or not 0 <= updates < 2**62:
            raise ValueError(f"optimizer state: the update count {shown(updates)} is not a count")
        for name, tensors in self.state.items():
            saved = state.get(name)
            if not isinstance(saved, (list, tuple)) or len(saved) != len(tensors) or any(
                    not isinstance(s, torch.Tensor) or not s.is_floating_point() or s.shape != t.shape
                    for s, t in zip(saved, tensors)):
                raise ValueError(f"optimizer state {name!r} does not match the model's parameters")
            if not all(bool(torch.isfinite(s).all()) for s in saved) or \
                    (name in self.squares and any(bool((s < 0).any()) for s in saved)):
                raise ValueError(f"optimizer state {name!r} holds values that are not finite"
                                 f"{' or are negative' if name in self.squares else ''}")
        for name, tensors in self.state.items():
            for target, source in zip(tensors, state[name]):
                target.copy_(source)
        self.updates.zero_()
        self.updates[0] = updates


class SharedAdam(SharedOptimizer):
    """Adam (as torch.optim.Adam, no weight decay):
      m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
      p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    with t the shared update count."""

    kind = "adam"
    state_names = ("exp_avg", "exp_avg_sq")
    squares = ("exp_avg_sq",)

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, slots: int = 1,
                 total_steps: int | None = None, anneal: bool = False) -> None:
        super().__init__(params, lr, slots, total_steps, anneal)
        self.betas, self.eps = betas, eps

    def _apply(self, grads, lr, count):
        beta1, beta2 = self.betas
        step_size = lr / (1 - beta1 ** count)
        correction2_sqrt = math.sqrt(1 - beta2 ** count)
        for p, g, m, v in zip(self.params, grads, self.state["exp_avg"], self.state["exp_avg_sq"]):
            m.mul_(beta1).add_(g, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v.sqrt() / correction2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-step_size)


class SharedRMSprop(SharedOptimizer):
    """RMSProp with shared statistics (the A3C paper's choice; as torch.optim.RMSprop):
      v <- alpha v + (1 - alpha) g^2;   p <- p - lr g / (sqrt(v) + eps)"""

    kind = "rmsprop"
    state_names = ("square_avg",)
    squares = ("square_avg",)

    def __init__(self, params, lr: float, alpha: float = 0.99, eps: float = 0.1, slots: int = 1,
                 total_steps: int | None = None, anneal: bool = False) -> None:
        super().__init__(params, lr, slots, total_steps, anneal)
        self.alpha, self.eps = alpha, eps

    def _apply(self, grads, lr, count):
        for p, g, v in zip(self.params, grads, self.state["square_avg"]):
            v.mul_(self.alpha).addcmul_(g, g, value=1 - self.alpha)
            p.addcdiv_(g, v.sqrt().add_(self.eps), value=-lr)


def make_optimizer(kind: str, params, lr: float, slots: int = 1, total_steps: int | None = None,
                   anneal: bool = False, eps: float | None = None) -> SharedOptimizer:
    """``eps`` None keeps the optimizer's own (RMSProp 0.1 as in the A3C paper, Adam 1e-8)."""
    own_eps = {} if eps is None else {"eps": eps}
    if kind == "adam":
        return SharedAdam(params, lr, slots=slots, total_steps=total_steps, anneal=anneal, **own_eps)
    if kind == "rmsprop":
        return SharedRMSprop(params, lr, slots=slots, total_steps=total_steps, anneal=anneal, **own_eps)
    raise ValueError(f"unknown optimizer {kind!r}")


def optimizer_for(config, params, slots: int) -> SharedOptimizer:
    """The shared optimizer a run's settings ask for, with its learning-rate schedule."""
    return make_optimizer(config.optimizer, params, config.lr, slots, config.total_steps, config.lr_anneal,
                          config.optimizer_eps)


def annealed_lr(base_lr: float, step: int, total_steps: int, anneal: bool) -> float:
    return base_lr * max(0.0, 1.0 - step / total_steps) if anneal else base_lr
