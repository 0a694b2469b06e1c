"""What the LSTM cells share: their sizes, the state they start from, and the checks on
a step's inputs and on the gradients that come back to them."""
from __future__ import annotations

import torch

from .base import Layer


class RecurrentCell(Layer):
    """A cell stepped once per forward call, (x, (h, c), mask) -> (h', c'), its steps
    back-propagated in the reverse order of their calls (``backward`` one at a time,
    ``backward_through_time`` the last T at once). ``weight_ih`` must be a parameter:
    the state takes its dtype and device."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"{type(self).__name__}: sizes must be positive, got {input_size}, {hidden_size}")
        self.input_size, self.hidden_size = input_size, hidden_size

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(batch, self.hidden_size, dtype=self.weight_ih.dtype, device=self.weight_ih.device)
        return zeros, zeros.clone()

    def _state_in(self, x: torch.Tensor, state, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """A forward step's checked inputs: the state it starts from (zeros for None), zeroed
        in the rows whose ``mask`` is 0."""
        self._check_tensor("input", x, (None, self.input_size))
        n, hidden = x.shape[0], self.hidden_size
        h, c = self.initial_state(n) if state is None else state
        self._check_tensor("h", h, (n, hidden))
        self._check_tensor("c", c, (n, hidden))
        if mask is not None:
            self._check_tensor("mask", mask, (n, 1))
            h, c = h * mask, c * mask
        return h, c

    def _pop_step(self, grad_h: torch.Tensor, grad_c: torch.Tensor | None):
        """The latest un-backpropagated step's record, once the gradients reaching its
        output are checked against it."""
        self._check_tensor("upstream gradient grad_h", grad_h, (None, self.hidden_size))
        if grad_c is not None:
            self._check_tensor("upstream gradient grad_c", grad_c, tuple(grad_h.shape))
        if self._records and self._records[-1].x.shape[0] != grad_h.shape[0]:
            raise ValueError(f"{self.name}: upstream gradient of shape {tuple(grad_h.shape)} does not match "
                             f"the latest step (batch {self._records[-1].x.shape[0]}): one step at a time")
        (step,) = self._pop_records(grad_h.shape[0], tuple(grad_h.shape))
        return step

    def _pop_steps(self, grad_hs: torch.Tensor, grad_c_last: torch.Tensor | None) -> list:
        """The last T steps' records, in forward order, once grad_hs (T, N, H) and
        grad_c_last (N, H) are checked against them."""
        self._check_tensor("upstream gradient grad_hs", grad_hs, (None, None, self.hidden_size))
        steps, n = grad_hs.shape[:2]
        if steps < 1:  # records[-0:] would be all of them
            raise ValueError(f"{self.name}: grad_hs of shape {tuple(grad_hs.shape)} covers no step")
        if grad_c_last is not None:
            self._check_tensor("upstream gradient grad_c_last", grad_c_last, (n, self.hidden_size))
        if steps > len(self._records) or any(r.x.shape[0] != n for r in self._records[-steps:]):
            raise ValueError(
                f"{self.name}: grad_hs of shape {tuple(grad_hs.shape)} does not match the "
                f"recorded steps (batch sizes {[r.x.shape[0] for r in self._records]})"
            )
        records = self._records[-steps:]
        del self._records[-steps:]
        return records
