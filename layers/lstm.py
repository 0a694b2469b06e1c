"""LSTM cell with a hand-written backward through time."""
from __future__ import annotations

from typing import NamedTuple

import torch

from .activations import stable_sigmoid, stable_tanh
from .recurrent import RecurrentCell


class _Step(NamedTuple):
    """What one forward step records for its backward."""

    x: torch.Tensor  # (N, in)
    h: torch.Tensor  # (N, H), the state used (after the mask)
    c: torch.Tensor  # (N, H)
    sig: torch.Tensor  # (N, 4H): sigma of all four gate blocks; i, f and o are used
    g: torch.Tensor  # (N, H): tanh of the g block
    tanh_c: torch.Tensor  # (N, H): tanh(c')
    mask: torch.Tensor | None  # (N, 1)


def _fixed_view(name: str) -> property:
    """A read-only attribute for a view into the cell's joint weight matrix: assigning a
    new tensor would silently detach it from the matrix the forward uses, so weights are
    set in place (``copy_``, ``load_state_dict``) or their ``.data`` reassigned (the
    forward then rebuilds the joint matrix: ``LSTMCell.joint_weight``)."""
    def get(self) -> torch.Tensor:
        return getattr(self, "_" + name)

    def refuse(self, value) -> None:
        raise AttributeError(f"{self.name}: {name} is a view into the cell's weight matrix; "
                             f"set it in place ({name}.copy_(...) or load_state_dict)")

    return property(get, refuse)


class LSTMCell(RecurrentCell):
    """One step of ``torch.nn.LSTMCell`` (gate order i, f, g, o).

    Forward, with x (N, in), h and c (N, H), optional mask (N, 1) that zeroes the
    state of rows whose episode starts here (h, c <- mask * h, mask * c):
      a = x W_ih^T + b_ih + h W_hh^T + b_hh          (N, 4H)
      i, f, o = sigma(a_i), sigma(a_f), sigma(a_o);  g = tanh(a_g)
      c' = f c + i g;  h' = o tanh(c')

    Backward of one step, given dh' and dc' from above:
      dc  = dc' + dh' o (1 - tanh(c')^2)
      da  = [dc g i(1-i), dc c f(1-f), dc i (1-g^2), dh' tanh(c') o(1-o)]
      dx  = da W_ih;   dh = mask * (da W_hh);   dc_prev = mask * (dc f)
      dW_ih += da^T x;  dW_hh += da^T h;  db_ih, db_hh += sum_n da
    Steps are back-propagated in the reverse order of their forward calls.
    """

    _param_names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(input_size, hidden_size)
        dtype = dtype or torch.get_default_dtype()  # None follows torch.set_default_dtype, as torch.nn
        # W_ih and W_hh side by side in one (4H, in + H) matrix, exposed as two views: the
        # forward is then one matmul of [x, h] instead of two (at batch 1 the matmuls only
        # stream the 2 MB of weights, and one pass over both took 13-22% less time than two)
        self._weight = torch.zeros(4 * hidden_size, input_size + hidden_size, dtype=dtype)
        self._weight_ih = self._weight[:, :input_size]
        self._weight_hh = self._weight[:, input_size:]
        self.bias_ih = torch.zeros(4 * hidden_size, dtype=dtype) if bias else None
        self.bias_hh = torch.zeros(4 * hidden_size, dtype=dtype) if bias else None

    weight_ih = _fixed_view("weight_ih")
    weight_hh = _fixed_view("weight_hh")

    def joint_weight(self) -> torch.Tensor:
        """The (4H, in + H) matrix [W_ih, W_hh] the forward multiplies by.

        ``p.data = p.data.double()`` on a weight view (as code written for torch.nn does
        to convert parameters) gives that view storage of its own, apart from the joint
        matrix. Then the matrix is rebuilt from the two views, and they become its views
        again (same tensor objects, so an optimizer holding them still updates the weights
        the forward uses). A check of two pointers when nothing changed."""
        weight, ih, hh = self._weight, self._weight_ih, self._weight_hh
        base = weight.data_ptr()
        if ih.data_ptr() == base and hh.data_ptr() == base + self.input_size * weight.element_size() \
                and ih.dtype == weight.dtype and hh.dtype == weight.dtype:
            return weight
        return self._rejoin()

    def _rejoin(self) -> torch.Tensor:
        ih, hh = self._weight_ih, self._weight_hh
        params = self.parameters()
        if any(p.dtype != ih.dtype or p.device != ih.device for p in params):
            found = ", ".join(f"{name} {p.dtype} on {p.device}" for name, p in self.named_parameters())
            raise TypeError(f"{self.name}: parameters differ in dtype or device ({found}); convert all of "
                            f"them, or the whole layer with .to(dtype)")
        if ih.shape != (4 * self.hidden_size, self.input_size) or hh.shape != (4 * self.hidden_size, self.hidden_size):
            raise ValueError(f"{self.name}: weight_ih {tuple(ih.shape)} and weight_hh {tuple(hh.shape)} no longer "
                             f"have the cell's shapes (4H, in) and (4H, H)")
        joint = torch.cat((ih.data, hh.data), 1)
        ih.data, hh.data = joint[:, :self.input_size], joint[:, self.input_size:]
        self._weight = joint
        return joint

    def to(self, dtype: torch.dtype) -> "LSTMCell":
        """Convert the parameters, the joint matrix included (see ``Layer.to``)."""
        super().to(dtype)
        self.joint_weight()
        return self

    def __repr__(self) -> str:
        return f"LSTMCell({self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None})"

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None,
                mask: torch.Tensor | None = None, *, record: bool = True):
        """x (N, in), state (h, c) each (N, H) or None for zeros, mask (N, 1) -> (h', c')."""
        h, c = self._state_in(x, state, mask)
        hidden = self.hidden_size
        inputs = torch.cat((x, h), 1)
        weight = self.joint_weight()
        gates = torch.mm(inputs, weight.t()) if self.bias_ih is None else torch.addmm(self.bias_ih, inputs, weight.t())
        if self.bias_hh is not None:
            gates += self.bias_hh
        sig = stable_sigmoid(gates)  # the g block is computed but unused: one op, not three
        g = stable_tanh(gates[:, 2 * hidden:3 * hidden])
        i, f, _, o = sig.chunk(4, 1)
        c_new = torch.addcmul(f * c, i, g)
        tanh_c = stable_tanh(c_new)
        h_new = o * tanh_c
        if record:
            self._records.append(_Step(x, h, c, sig, g, tanh_c, mask))
        return h_new, c_new

    def _gate_grads(self, step: _Step, grad_h, grad_c):
        """da (N, 4H) and dc (N, H) of one step, from dh' and dc' (grad_c may be None)."""
        i, f, _, o = step.sig.chunk(4, 1)
        dc = grad_h * o * (1.0 - step.tanh_c * step.tanh_c)
        if grad_c is not None:
            dc = dc + grad_c
        return torch.cat((dc * step.g * i * (1.0 - i), dc * step.c * f * (1.0 - f),
                          dc * i * (1.0 - step.g * step.g), grad_h * step.tanh_c * o * (1.0 - o)), 1), dc

    def _accumulate_weights(self, d_gates, x, h_prev) -> None:
        self._accumulate(self.weight_ih, d_gates.t() @ x)
        self._accumulate(self.weight_hh, d_gates.t() @ h_prev)
        if self.bias_ih is not None:
            bias_grad = d_gates.sum(0)
            self._accumulate(self.bias_ih, bias_grad)
            self._accumulate(self.bias_hh, bias_grad.clone())

    def backward(self, grad_h: torch.Tensor, grad_c: torch.Tensor | None = None):
        """Back-propagate the latest un-backpropagated step.

        grad_h, grad_c (N, H) (grad_c None = 0) -> (grad_x (N, in), grad_h_prev, grad_c_prev),
        the last two with respect to the state passed to that forward call.
        """
        step = self._pop_step(grad_h, grad_c)
        d_gates, dc = self._gate_grads(step, grad_h, grad_c)
        self._accumulate_weights(d_gates, step.x, step.h)
        grad_h_prev = d_gates @ self.weight_hh
        grad_c_prev = dc * step.sig[:, self.hidden_size:2 * self.hidden_size]
        if step.mask is not None:
            grad_h_prev, grad_c_prev = grad_h_prev * step.mask, grad_c_prev * step.mask
        return d_gates @ self.weight_ih, grad_h_prev, grad_c_prev

    def backward_through_time(self, grad_hs: torch.Tensor, grad_c_last: torch.Tensor | None = None):
        """Back-propagate the last T recorded steps at once (the fast path for rollouts).

        grad_hs (T, N, H): the gradient reaching each step's output h from outside the
        recurrence (e.g. from the heads); grad_c_last (N, H) reaches the last c.
        Returns (grad_xs (T, N, in), grad_h0, grad_c0). Same maths as T calls of
        ``backward``, rearranged so that only the recurrence is stepped:
          da[:, :3H] = dc * [g i(1-i), c f(1-f), i (1-g^2)],  da[:, 3H:] = dh' tanh(c') o(1-o)
        where the bracketed factors, o (1 - tanh(c')^2) and mask * f are computed for all
        T steps up front, and the input and weight gradients are one matmul each.
        """
        records = self._pop_steps(grad_hs, grad_c_last)
        steps, n = grad_hs.shape[:2]
        hidden = self.hidden_size
        xs, hs_prev, cs_prev, sigs, gs, tanh_cs, masks = zip(*records)
        sigs, gs, tanh_cs, cs_prev = torch.stack(sigs), torch.stack(gs), torch.stack(tanh_cs), torch.stack(cs_prev)
        i, f, _, o = sigs.chunk(4, 2)
        slope = sigs * (1.0 - sigs)  # sigma' for i, f, o; the g block is unused
        cell_factors = torch.cat((gs * slope[..., :hidden], cs_prev * slope[..., hidden:2 * hidden],
                                  i * (1.0 - gs * gs)), 2).view(steps, n, 3, hidden)
        out_factor = tanh_cs * slope[..., 3 * hidden:]  # d a_o / d h'
        tanh_slope = o * (1.0 - tanh_cs * tanh_cs)  # d c / d h' through h' = o tanh(c')
        forget = f.clone()  # d c_prev / d c, masked where the state was reset
        for t, mask in enumerate(masks):
            if mask is not None:
                forget[t] *= mask

        d_gates = grad_hs.new_empty(steps, n, 4 * hidden)
        # unbind once: indexing T-long tensors inside the loop costs an op per access
        cell_factors_t, out_factor_t, tanh_slope_t = cell_factors.unbind(0), out_factor.unbind(0), tanh_slope.unbind(0)
        forget_t, d_gates_t, external_t = forget.unbind(0), d_gates.unbind(0), grad_hs.unbind(0)
        # a contiguous copy of W_hh for the T matmuls of the recurrence: as a column block of
        # the joint matrix it streams slower at batch 1, which costs more than one copy
        weight_hh = self._weight_hh.contiguous() if steps > 1 else self._weight_hh
        grad_h = external_t[-1]
        grad_c = grad_c_last if grad_c_last is not None else torch.zeros_like(grad_h)
        for t in range(steps - 1, -1, -1):
            dc = torch.addcmul(grad_c, grad_h, tanh_slope_t[t])
            torch.mul(cell_factors_t[t], dc.unsqueeze(1), out=d_gates_t[t][:, :3 * hidden].view(n, 3, hidden))
            torch.mul(grad_h, out_factor_t[t], out=d_gates_t[t][:, 3 * hidden:])
            grad_c = dc * forget_t[t]
            if masks[t] is not None:
                grad_h = (d_gates_t[t] @ weight_hh).mul_(masks[t])
                if t > 0:
                    grad_h += external_t[t - 1]
            elif t > 0:
                grad_h = torch.addmm(external_t[t - 1], d_gates_t[t], weight_hh)
            else:
                grad_h = d_gates_t[t] @ weight_hh
        d_gates_flat = d_gates.view(steps * n, 4 * hidden)
        self._accumulate_weights(d_gates_flat, torch.cat(xs), torch.cat(hs_prev))
        grad_xs = (d_gates_flat @ self.weight_ih).view(steps, n, self.input_size)
        return grad_xs, grad_h, grad_c
