"""LSTM cell with layer normalisation (Ba, Kiros and Hinton 2016), hand-written backward.

Layer normalisation keeps each step's gate inputs at a fixed scale whatever the sizes of
the weights and of the incoming features, so the gates neither saturate nor fade as
training moves the weights; the paper's recurrent models trained faster with it.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .activations import stable_sigmoid, stable_tanh
from .recurrent import RecurrentCell

EPS = 1e-5  # added to the variance, as torch.nn.LayerNorm's default


def _normalize(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of z (N, D) -> (z - mean) / sqrt(var + EPS) and 1 / sqrt(var + EPS) (N, 1),
    the variance the biased one (over D), as in layer normalisation."""
    centred = z - z.mean(1, keepdim=True)
    inverse_std = torch.rsqrt((centred * centred).mean(1, keepdim=True) + EPS)
    return centred * inverse_std, inverse_std


def _normalize_backward(grad_normed: torch.Tensor, normed: torch.Tensor, inverse_std: torch.Tensor) -> torch.Tensor:
    """d(loss)/dz from d(loss)/d(normed), where normed = _normalize(z) over the last axis:
    (g - mean(g) - normed * mean(g * normed)) / std; any leading axes are rows."""
    mean_grad = grad_normed.mean(-1, keepdim=True)
    mean_projection = (grad_normed * normed).mean(-1, keepdim=True)
    return (grad_normed - mean_grad - normed * mean_projection) * inverse_std


class _Step(NamedTuple):
    """What one forward step records for its backward."""

    x: torch.Tensor  # (N, in)
    h: torch.Tensor  # (N, H), the state used (after the mask)
    c: torch.Tensor  # (N, H)
    normed_x: torch.Tensor  # (N, 4H): x W_ih^T normalised
    inverse_std_x: torch.Tensor  # (N, 1)
    normed_h: torch.Tensor  # (N, 4H): h W_hh^T normalised
    inverse_std_h: torch.Tensor  # (N, 1)
    sig: torch.Tensor  # (N, 4H): sigma of all four gate blocks; i, f and o are used
    g: torch.Tensor  # (N, H): tanh of the g block
    normed_c: torch.Tensor  # (N, H): c' normalised
    inverse_std_c: torch.Tensor  # (N, 1)
    tanh_c: torch.Tensor  # (N, H): tanh of c' normalised, scaled and shifted
    mask: torch.Tensor | None  # (N, 1)


class LayerNormLSTMCell(RecurrentCell):
    """One step of the layer-normalised LSTM of Ba et al. (2016), eqs. 20-22 (gate order
    i, f, g, o as ``LSTMCell``).

    Forward, with x (N, in), h and c (N, H), optional mask (N, 1) that zeroes the state
    of rows whose episode starts here (h, c <- mask * h, mask * c); LN(z) normalises each
    row of z to mean 0 and variance 1 (over its 4H or H entries):
      a  = gain_ih * LN(x W_ih^T) + gain_hh * LN(h W_hh^T) + bias      (N, 4H)
      i, f, o = sigma(a_i), sigma(a_f), sigma(a_o);  g = tanh(a_g)
      c' = f c + i g;  h' = o tanh(cell_gain * LN(c') + cell_bias)
    The state carried to the next step is c' itself; only what h' reads of it is
    normalised. The two input terms are normalised apart, so the recurrent term keeps its
    scale beside a wide input. The paper's shifts of the two normalised terms are folded
    into ``bias``. At least 2 units: the cell normalised over one entry is always 0, and
    h' would never read it.

    Backward of one step, given dh' and dc' from above, with
    LN'(u) = (u - mean(u) - n mean(u n)) / std for the gradient u reaching the normalised n:
      dy  = dh' o (1 - t^2)  where t = tanh(cell_gain n_c + cell_bias)
      dc  = dc' + LN'(dy cell_gain)
      da  = [dc g i(1-i), dc c f(1-f), dc i (1-g^2), dh' t o(1-o)]
      dz_x = LN'(da gain_ih);  dz_h = LN'(da gain_hh)
      dx  = dz_x W_ih;  dh = mask * (dz_h W_hh);  dc_prev = mask * (dc f)
      dW_ih += dz_x^T x;  dW_hh += dz_h^T h;  dbias += sum da;
      dgain_ih += sum da n_x;  dgain_hh += sum da n_h;  dcell_gain += sum dy n_c;  dcell_bias += sum dy
    """

    _param_names = ("weight_ih", "weight_hh", "bias", "gain_ih", "gain_hh", "cell_gain", "cell_bias")

    def __init__(self, input_size: int, hidden_size: int, dtype: torch.dtype | None = None) -> None:
        super().__init__(input_size, hidden_size)
        if hidden_size < 2:
            raise ValueError(f"LayerNormLSTMCell: hidden_size must be at least 2, got {hidden_size}")
        dtype = dtype or torch.get_default_dtype()  # None follows torch.set_default_dtype, as torch.nn
        gates = 4 * hidden_size
        self.weight_ih = torch.zeros(gates, input_size, dtype=dtype)
        self.weight_hh = torch.zeros(gates, hidden_size, dtype=dtype)
        self.bias = torch.zeros(gates, dtype=dtype)
        self.gain_ih = torch.ones(gates, dtype=dtype)
        self.gain_hh = torch.ones(gates, dtype=dtype)
        self.cell_gain = torch.ones(hidden_size, dtype=dtype)
        self.cell_bias = torch.zeros(hidden_size, dtype=dtype)

    def __repr__(self) -> str:
        return f"LayerNormLSTMCell({self.input_size}, {self.hidden_size})"

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None,
                mask: torch.Tensor | None = None, *, record: bool = True):
        """x (N, in), state (h, c) each (N, H) or None for zeros, mask (N, 1) -> (h', c')."""
        h, c = self._state_in(x, state, mask)
        hidden = self.hidden_size
        normed_x, inverse_std_x = _normalize(x @ self.weight_ih.t())
        normed_h, inverse_std_h = _normalize(h @ self.weight_hh.t())
        gates = torch.addcmul(torch.addcmul(self.bias, normed_x, self.gain_ih), normed_h, self.gain_hh)
        sig = stable_sigmoid(gates)  # the g block is computed but unused: one op, not three
        g = stable_tanh(gates[:, 2 * hidden:3 * hidden])
        i, f, _, o = sig.chunk(4, 1)
        c_new = torch.addcmul(f * c, i, g)
        normed_c, inverse_std_c = _normalize(c_new)
        tanh_c = stable_tanh(torch.addcmul(self.cell_bias, normed_c, self.cell_gain))
        h_new = o * tanh_c
        if record:
            self._records.append(_Step(x, h, c, normed_x, inverse_std_x, normed_h, inverse_std_h, sig, g,
                                       normed_c, inverse_std_c, tanh_c, mask))
        return h_new, c_new

    def backward(self, grad_h: torch.Tensor, grad_c: torch.Tensor | None = None):
        """Back-propagate the latest un-backpropagated step.

        grad_h, grad_c (N, H) (grad_c None = 0) -> (grad_x (N, in), grad_h_prev, grad_c_prev),
        the last two with respect to the state passed to that forward call.
        """
        step = self._pop_step(grad_h, grad_c)
        grad_xs, grad_h_prev, grad_c_prev = self._backward_steps([step], grad_h.unsqueeze(0), grad_c)
        return grad_xs[0], grad_h_prev, grad_c_prev

    def backward_through_time(self, grad_hs: torch.Tensor, grad_c_last: torch.Tensor | None = None):
        """Back-propagate the last T recorded steps at once (a rollout).

        grad_hs (T, N, H): the gradient reaching each step's output h from outside the
        recurrence (e.g. from the heads); grad_c_last (N, H) reaches the last c.
        Returns (grad_xs (T, N, in), grad_h0, grad_c0). Only the recurrence is stepped;
        the input side's normalisation and every weight gradient are done for all T
        steps at once after it.
        """
        return self._backward_steps(self._pop_steps(grad_hs, grad_c_last), grad_hs, grad_c_last)

    def _backward_steps(self, records: list[_Step], grad_hs: torch.Tensor, grad_c_last: torch.Tensor | None):
        steps, n, hidden = grad_hs.shape[0], grad_hs.shape[1], self.hidden_size
        d_gates = grad_hs.new_empty(steps, n, 4 * hidden)
        d_cell_out = grad_hs.new_empty(steps, n, hidden)  # dy: the gradient at tanh's input
        d_recurrent = grad_hs.new_empty(steps, n, 4 * hidden)  # dz_h: at h W_hh^T
        grad_h = grad_hs[-1]
        grad_c = grad_c_last if grad_c_last is not None else torch.zeros_like(grad_h)
        for t in range(steps - 1, -1, -1):
            step = records[t]
            i, f, _, o = step.sig.chunk(4, 1)
            d_cell_out[t] = grad_h * o * (1.0 - step.tanh_c * step.tanh_c)
            dc = grad_c + _normalize_backward(d_cell_out[t] * self.cell_gain, step.normed_c, step.inverse_std_c)
            torch.cat((dc * step.g * i * (1.0 - i), dc * step.c * f * (1.0 - f),
                       dc * i * (1.0 - step.g * step.g), grad_h * step.tanh_c * o * (1.0 - o)), 1, out=d_gates[t])
            d_recurrent[t] = _normalize_backward(d_gates[t] * self.gain_hh, step.normed_h, step.inverse_std_h)
            grad_h = d_recurrent[t] @ self.weight_hh
            grad_c = dc * f
            if step.mask is not None:
                grad_h, grad_c = grad_h * step.mask, grad_c * step.mask
            if t > 0:
                grad_h = grad_h + grad_hs[t - 1]
        normed_x = torch.stack([step.normed_x for step in records])
        inverse_std_x = torch.stack([step.inverse_std_x for step in records])
        d_input = _normalize_backward(d_gates * self.gain_ih, normed_x, inverse_std_x)  # dz_x, all steps
        flat = steps * n
        self._accumulate(self.weight_ih, d_input.view(flat, -1).t() @ torch.cat([step.x for step in records]))
        self._accumulate(self.weight_hh, d_recurrent.view(flat, -1).t() @ torch.cat([step.h for step in records]))
        self._accumulate(self.bias, d_gates.sum((0, 1)))
        self._accumulate(self.gain_ih, (d_gates * normed_x).sum((0, 1)))
        self._accumulate(self.gain_hh, (d_gates * torch.stack([step.normed_h for step in records])).sum((0, 1)))
        self._accumulate(self.cell_gain, (d_cell_out * torch.stack([step.normed_c for step in records])).sum((0, 1)))
        self._accumulate(self.cell_bias, d_cell_out.sum((0, 1)))
        grad_xs = (d_input.view(flat, -1) @ self.weight_ih).view(steps, n, self.input_size)
        return grad_xs, grad_h, grad_c
