"""Initialisation schemes of the A3C network: the original A3C-LSTM code's, and the
orthogonal one of the PPO and A2C Atari baselines.

All take an optional ``torch.Generator`` so a seed fixes the initial weights.
"""
from __future__ import annotations

import math

import torch

from .conv import Conv2d
from .layernorm_lstm import LayerNormLSTMCell
from .linear import Linear
from .lstm import LSTMCell


def normalized_columns_(weight: torch.Tensor, std: float, generator: torch.Generator | None = None) -> None:
    """Gaussian rows rescaled so each output unit's weight vector has norm ``std``.

    (The original TensorFlow code stores weights as (in, out) and normalises columns;
    in torch's (out, in) layout those are rows.) Small ``std`` for the actor makes the
    initial policy near uniform; ``std`` 1.0 for the critic.
    """
    sample = torch.randn(weight.shape, generator=generator, dtype=torch.float64)
    sample *= std / sample.pow(2).sum(1, keepdim=True).sqrt()
    weight.copy_(sample)


def fan_uniform_(layer: Conv2d | Linear, generator: torch.Generator | None = None) -> None:
    """U(-b, b) with b = sqrt(6 / (fan_in + fan_out)); bias zero.

    Conv2d: fan_in = C_in/groups * kh * kw, fan_out = C_out * kh * kw; Linear: in, out.
    """
    weight = layer.weight
    receptive = weight[0, 0].numel() if weight.dim() == 4 else 1
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    sample = torch.rand(weight.shape, generator=generator, dtype=torch.float64) * (2 * bound) - bound
    weight.copy_(sample)
    if layer.bias is not None:
        layer.bias.zero_()


def lstm_(cell: LSTMCell | LayerNormLSTMCell, forget_bias: float = 0.0,
          generator: torch.Generator | None = None) -> None:
    """Weights U(-1/sqrt(H), 1/sqrt(H)) as torch.nn.LSTMCell; biases zero, except the
    forget gate's total bias (b_ih + b_hh) set to ``forget_bias`` if given. A
    layer-normalised cell's gains start at 1 and its biases as the plain cell's (the
    normalisation undoes the overall scale of each weight matrix)."""
    bound = 1.0 / math.sqrt(cell.hidden_size)
    for weight in (cell.weight_ih, cell.weight_hh):
        weight.copy_(torch.rand(weight.shape, generator=generator, dtype=torch.float64) * (2 * bound) - bound)
    if isinstance(cell, LayerNormLSTMCell):
        for gain in (cell.gain_ih, cell.gain_hh, cell.cell_gain):
            gain.fill_(1.0)
        cell.cell_bias.zero_()
        cell.bias.zero_()
        cell.bias[cell.hidden_size:2 * cell.hidden_size] = forget_bias
    elif cell.bias_ih is not None:
        cell.bias_ih.zero_()
        cell.bias_hh.zero_()
        cell.bias_ih[cell.hidden_size:2 * cell.hidden_size] = forget_bias


def orthogonal_(layer: Conv2d | Linear, gain: float, generator: torch.Generator | None = None) -> None:
    """Orthogonal weights scaled by ``gain`` (torch.nn.init.orthogonal_ on the weight seen
    as a matrix (out, in * kh * kw)); bias zero. The PPO and A2C Atari baselines use gain
    sqrt(2) before a rectifier, 1 for the value head and 0.01 for the policy head."""
    _orthogonal_copy_(layer.weight, gain, generator)
    if layer.bias is not None:
        layer.bias.zero_()


def lstm_orthogonal_(cell: LSTMCell | LayerNormLSTMCell, forget_bias: float = 0.0,
                     generator: torch.Generator | None = None) -> None:
    """Orthogonal input and recurrent weights (gain 1, each as one (4H, in) matrix), biases
    as ``lstm_``: zero, except the forget gate's total set to ``forget_bias``."""
    lstm_(cell, forget_bias, generator)
    for weight in (cell.weight_ih, cell.weight_hh):
        _orthogonal_copy_(weight, 1.0, generator)


def _orthogonal_copy_(weight: torch.Tensor, gain: float, generator: torch.Generator | None) -> None:
    # drawn in float64 whatever the layer's dtype, so one seed gives the same network in either
    sample = torch.empty(weight.shape, dtype=torch.float64)
    torch.nn.init.orthogonal_(sample, gain, generator=generator)
    weight.copy_(sample)
