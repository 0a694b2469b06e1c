"""What every hand-differentiated layer shares: parameters, gradients, input checks.

A layer's ``forward`` records what its ``backward`` needs on a stack; ``backward``
pops the records it covers, returns the input gradient and *adds* parameter
gradients into ``param.grad``. Nothing here touches autograd.
"""
from __future__ import annotations

from typing import Iterator

import torch


class Layer:
    """Base class: named parameters in a fixed order, gradient bookkeeping, checks."""

    _param_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._records: list = []

    # --- parameters and gradients -------------------------------------------------
    def parameters(self) -> list[torch.Tensor]:
        """The parameter tensors in a fixed order (``None`` ones left out)."""
        return [p for _, p in self.named_parameters()]

    def named_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name in self._param_names:
            tensor = getattr(self, name)
            if tensor is not None:
                yield name, tensor

    def zero_grad(self) -> None:
        """Clear the accumulated parameter gradients (``.grad`` becomes ``None``)."""
        for p in self.parameters():
            p.grad = None

    def to(self, dtype: torch.dtype) -> "Layer":
        """Convert every parameter (and its gradient) to ``dtype`` in place, like
        ``torch.nn.Module.to``: the tensor objects stay the same, so whoever holds them (an
        optimizer, a shared-memory list) sees the converted values. Forward records are
        dropped (they hold the old dtype)."""
        for p in self.parameters():
            p.data = p.data.to(dtype)
            if p.grad is not None:
                p.grad = p.grad.to(dtype)
        self.reset()
        return self

    def reset(self) -> None:
        """Drop forward records that no backward will consume (e.g. after acting)."""
        self._records.clear()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: p for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy tensors in place, so a ``torch.nn`` module's ``state_dict()`` loads."""
        own = dict(self.named_parameters())
        missing, unexpected = own.keys() - state.keys(), state.keys() - own.keys()
        if missing or unexpected:
            raise ValueError(
                f"{self.name}: state_dict keys do not match "
                f"(missing {sorted(missing)}, unexpected {sorted(unexpected)})"
            )
        for name, p in own.items():
            src = state[name]
            if tuple(src.shape) != tuple(p.shape):
                raise ValueError(
                    f"{self.name}: {name} has shape {tuple(p.shape)}, "
                    f"state_dict gives {tuple(src.shape)}"
                )
            p.copy_(src.detach())

    @staticmethod
    def _accumulate(param: torch.Tensor, grad: torch.Tensor) -> None:
        """Add ``grad`` into ``param.grad``; ``grad`` must be a tensor nobody else holds."""
        if param.grad is None:
            param.grad = grad
        else:
            param.grad.add_(grad)

    # --- checks --------------------------------------------------------------------
    @property
    def name(self) -> str:
        return repr(self)

    def _check_tensor(self, what: str, x: torch.Tensor, shape: tuple) -> None:
        """Raise ``ValueError`` unless ``x`` matches ``shape`` (``None`` = any size),
        and the parameters' dtype and device.

        It runs for every input of every step, so the happy path is a handful of
        attribute reads; any mismatch falls through to ``_tensor_error``, which says what
        is wrong."""
        if isinstance(x, torch.Tensor) and x.dim() == len(shape):
            actual = x.shape
            for expected, size in zip(shape, actual):
                if expected is not None and expected != size:
                    break
            else:
                if not self._param_names:
                    return
                ref = getattr(self, self._param_names[0])
                # is_cpu first: building two torch.device objects costs more than the rest
                if x.dtype == ref.dtype and ((x.is_cpu and ref.is_cpu) or x.device == ref.device):
                    return
        self._tensor_error(what, x, shape)

    def _tensor_error(self, what: str, x, shape: tuple) -> None:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{self.name}: {what} must be a torch.Tensor, got {type(x).__name__}")
        actual = x.shape
        if len(actual) != len(shape) or any(s is not None and s != d for s, d in zip(shape, actual)):
            expected = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{self.name}: {what} must have shape {expected}, got {tuple(actual)}")
        ref = getattr(self, self._param_names[0])
        if x.dtype != ref.dtype:
            raise ValueError(f"{self.name}: {what} has dtype {x.dtype}, parameters have {ref.dtype}")
        raise ValueError(f"{self.name}: {what} is on {x.device}, parameters on {ref.device}")

    def _pop_records(self, batch: int, grad_shape: tuple) -> list:
        """Pop the most recent forward records whose batch sizes add up to ``batch``.

        One backward call may cover several forward calls (e.g. the T steps of a
        rollout): the upstream gradient is then their outputs concatenated along the
        batch dimension, in call order.
        """
        if not self._records:
            raise ValueError(
                f"{self.name}: backward called without a matching forward "
                f"(upstream gradient shape {grad_shape})"
            )
        total, count = 0, 0
        for record in reversed(self._records):
            total += record[0].shape[0]
            count += 1
            if total >= batch:
                break
        if total != batch:
            sizes = [r[0].shape[0] for r in self._records]
            raise ValueError(
                f"{self.name}: upstream gradient of shape {grad_shape} does not match the "
                f"recorded forward calls (batch sizes {sizes}, latest last)"
            )
        records = self._records[-count:]
        del self._records[-count:]
        return records
