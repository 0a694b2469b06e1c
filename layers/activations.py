"""Numerically careful sigmoid and tanh, and the ELU layer.

The textbook forms overflow or cancel in float32: ``1 / (1 + exp(-x))`` needs
``exp(88.8)`` and beyond, ``(e^x - e^-x) / (e^x + e^-x)`` is ``inf / inf`` at
``|x| > 89`` and ``1 - exp(-2x)`` loses every digit at ``|x| < 1e-8``. The forms
below only ever exponentiate ``-|x|`` (no overflow) and use ``expm1`` where a
difference from 1 is needed (no cancellation), so they stay within a few float32
ulps of a float64 reference for any input (tests/test_activations.py).
"""
from __future__ import annotations

import torch

from .base import Layer


def stable_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """sigma(x) = e^min(x, 0) / (1 + e^-|x|): both exponents are <= 0, so nothing
    overflows, and no difference of nearly equal numbers is ever taken."""
    numerator = torch.exp(x.clamp(max=0.0))
    denominator = x.abs().neg_().exp_().add_(1.0)  # in-place: fewer allocations on the hot path
    return numerator.div_(denominator)


def stable_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) = sign(x) * (-m) / (2 + m) with m = expm1(-2|x|) in (-1, 0]."""
    m = x.abs().mul_(-2.0).expm1_()
    return m.div_(m + 2.0).copysign_(x)


class ELU(Layer):
    """y = x for x > 0, alpha * (e^x - 1) otherwise.

    Backward: dx = dy for y > 0, dy * (y + alpha) otherwise (e^x = y/alpha + 1),
    so only the output is recorded.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"ELU: alpha must be positive, got {alpha}")
        self.alpha = float(alpha)

    def __repr__(self) -> str:
        return f"ELU(alpha={self.alpha})"

    def forward(self, x: torch.Tensor, *, record: bool = True) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() < 1:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{self.name}: input must be a tensor with a batch dimension, got {shape}")
        y = torch.nn.functional.elu(x, self.alpha)
        if record:
            self._records.append((y,))
        return y

    def backward(self, grad_out: torch.Tensor) -> torch.Tensor:
        """dx = dy * where(y > 0, 1, y + alpha); shapes (N, *) -> (N, *)."""
        records = self._pop_records(grad_out.shape[0] if grad_out.dim() else -1, tuple(grad_out.shape))
        y = records[0][0] if len(records) == 1 else torch.cat([r[0] for r in records])
        if grad_out.shape != y.shape:
            raise ValueError(
                f"{self.name}: upstream gradient has shape {tuple(grad_out.shape)}, "
                f"output had {tuple(y.shape)}"
            )
        if self.alpha == 1.0:  # then the slope is min(y + 1, 1): one pass over memory fewer
            slope = (y + 1.0).clamp_(max=1.0)
        else:
            slope = torch.where(y > 0, 1.0, y + self.alpha)
        return slope.mul_(grad_out)
