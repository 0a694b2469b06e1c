"""Numerically careful sigmoid and tanh, and the ELU and ReLU layers.

The textbook forms overflow or cancel in float32: ``1 / (1 + exp(-x))`` needs
``exp(88.8)`` and beyond, ``(e^x - e^-x) / (e^x + e^-x)`` is ``inf / inf`` at
``|x| > 89`` and ``1 - exp(-2x)`` loses every digit at ``|x| < 1e-8``.
``torch.sigmoid`` is the textbook form: it returns 0 below x = -88.7, where the true
value is still a float32 subnormal, and drifts beyond 2 ulps below about -16. The
forms below stay within 2 float32 ulps of a float64 reference over all the inputs
measured, subnormal results included (tests/test_activations.py), in as few tensor operations as possible: at the LSTM's
sizes each operation costs a few microseconds of dispatch whatever its arithmetic.
"""
from __future__ import annotations

import torch

from .base import Layer


def stable_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """sigma(x) = e^min(x, 0) * sigma(|x|).

    For x >= 0 this is sigma(x); for x < 0 it is e^x * sigma(-x) = e^x / (1 + e^x).
    ``sigma(|x|)`` lies in [0.5, 1], where ``torch.sigmoid`` is accurate, and ``exp``
    of a non-positive number neither overflows nor loses the subnormal tail, so the
    product is within 2 ulps everywhere (1.6 measured over the float32 range)."""
    return x.clamp(max=0.0).exp_().mul_(x.abs().sigmoid_())


def stable_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x), with ``torch.tanh``: it is already careful in float32.

    Measured against float64 over 2.4M points spanning +-120 and down to 1e-45 in
    magnitude: at most 0.51 ulps, finite everywhere, ``tanh(x) == x`` for tiny x (the
    vectorised SLEEF kernel picks its formula by range). One operation instead of the
    six of an ``expm1``-based form of the same accuracy; the tests hold it to 2 ulps,
    so a torch build that regressed would be caught there."""
    return torch.tanh(x)


class OutputRecordingActivation(Layer):
    """An elementwise activation whose slope follows from its output y alone: forward
    records y, backward multiplies the upstream gradient by ``slope(y)``."""

    def forward(self, x: torch.Tensor, *, record: bool = True) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() < 1:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{self.name}: input must be a tensor with a batch dimension, got {shape}")
        y = self.activate(x)
        if record:
            self._records.append((y,))
        return y

    def backward(self, grad_out: torch.Tensor) -> torch.Tensor:
        """dx = dy * slope(y); shapes (N, *) -> (N, *)."""
        records = self._pop_records(grad_out.shape[0] if grad_out.dim() else -1, tuple(grad_out.shape))
        y = records[0][0] if len(records) == 1 else torch.cat([r[0] for r in records])
        if grad_out.shape != y.shape:
            raise ValueError(
                f"{self.name}: upstream gradient has shape {tuple(grad_out.shape)}, "
                f"output had {tuple(y.shape)}"
            )
        return self.slope(y).mul_(grad_out)

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def slope(self, y: torch.Tensor) -> torch.Tensor:
        """dy/dx at the output y, as a new tensor."""
        raise NotImplementedError


class ELU(OutputRecordingActivation):
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

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.elu(x, self.alpha)

    def slope(self, y: torch.Tensor) -> torch.Tensor:
        if self.alpha == 1.0:  # then the slope is min(y + 1, 1): one pass over memory fewer
            return (y + 1.0).clamp_(max=1.0)
        return torch.where(y > 0, 1.0, y + self.alpha)


class ReLU(OutputRecordingActivation):
    """y = max(x, 0).

    Backward: dx = dy where y > 0, else 0 (the subgradient 0 at x = 0, as torch's), so
    only the output is recorded."""

    def __repr__(self) -> str:
        return "ReLU()"

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    def slope(self, y: torch.Tensor) -> torch.Tensor:
        return (y > 0).to(y.dtype)
