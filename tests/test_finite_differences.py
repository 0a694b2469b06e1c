"""Autograd-free check: backward against centred finite differences in float64.

For a scalar probe L = sum(y * g) with fixed random g, dL/dθ_k ≈ (L(θ_k + ε) - L(θ_k - ε)) / 2ε.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from layers import ELU, Conv2d, ConvTranspose2d, LayerNormLSTMCell, Linear, LSTMCell, ReLU
from layers.softmax import entropy, entropy_backward, log_softmax, log_softmax_backward
from tests.helpers import assert_close

F64 = torch.float64
EPS = 1e-6
TOL = 1e-6  # the difference quotient itself is only accurate to about eps^2


def numerical_gradient(probe, tensor: torch.Tensor) -> torch.Tensor:
    """Centred differences of the scalar ``probe()`` with respect to each entry of ``tensor``."""
    grad = torch.zeros_like(tensor)
    for index in itertools.product(*map(range, tensor.shape)):  # parameters may be strided views
        saved = tensor[index].item()
        tensor[index] = saved + EPS
        upper = probe()
        tensor[index] = saved - EPS
        lower = probe()
        tensor[index] = saved
        grad[index] = (upper - lower) / (2 * EPS)
    return grad


def init_random(layer, seed):
    generator = torch.Generator().manual_seed(seed)
    for p in layer.parameters():
        p.copy_(torch.randn(p.shape, generator=generator, dtype=F64) * 0.5)


def check_layer(layer, x, grad_out, forward):
    """Compare the layer's input and parameter gradients with finite differences."""
    def probe():
        layer.reset()
        return (forward(x) * grad_out).sum().item()

    layer.reset()
    forward(x)
    grad_x = layer.backward(grad_out)
    assert_close(grad_x, numerical_gradient(probe, x), TOL, "input gradient")
    for name, param in layer.named_parameters():
        assert_close(param.grad, numerical_gradient(probe, param), TOL, name)


def test_conv2d_strided_dilated_grouped():
    conv = Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2, dtype=F64)
    init_random(conv, 0)
    x = torch.randn(2, 2, 6, 5, dtype=F64)
    grad_out = torch.randn_like(conv.forward(x, record=False))
    check_layer(conv, x, grad_out, conv.forward)


def test_conv2d_needing_output_padding():
    conv = Conv2d(1, 2, 3, stride=3, padding=1, dtype=F64)
    init_random(conv, 1)
    x = torch.randn(1, 1, 8, 7, dtype=F64)  # (8 + 2 - 3) % 3 != 0: the last rows are skipped
    grad_out = torch.randn_like(conv.forward(x, record=False))
    check_layer(conv, x, grad_out, conv.forward)


def test_conv_transpose2d_strided_dilated_grouped_with_output_padding():
    deconv = ConvTranspose2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 0), output_padding=(1, 1), dilation=(1, 2),
                             groups=2, dtype=F64)
    init_random(deconv, 4)
    x = torch.randn(2, 2, 4, 3, dtype=F64)
    grad_out = torch.randn_like(deconv.forward(x, record=False))
    check_layer(deconv, x, grad_out, deconv.forward)


def test_relu_away_from_its_kink():
    relu = ReLU()
    x = torch.randn(3, 5, dtype=F64)
    x = x + 0.1 * x.sign()  # at least 0.1 from 0: the finite difference's step never crosses it
    check_layer(relu, x, torch.randn(3, 5, dtype=F64), relu.forward)


def test_linear():
    linear = Linear(4, 3, dtype=F64)
    init_random(linear, 2)
    x = torch.randn(3, 4, dtype=F64)
    check_layer(linear, x, torch.randn(3, 3, dtype=F64), linear.forward)


def test_elu():
    elu = ELU(alpha=0.7)
    x = torch.randn(3, 5, dtype=F64) * 2
    x[x.abs() < 1e-3] = 0.5  # keep away from the kink at 0
    check_layer(elu, x, torch.randn(3, 5, dtype=F64), elu.forward)


@pytest.mark.parametrize("cell_type", [LSTMCell, LayerNormLSTMCell])
def test_lstm_cell_over_three_steps(cell_type):
    cell = cell_type(3, 4, dtype=F64)
    init_random(cell, 3)
    xs = torch.randn(3, 2, 3, dtype=F64)
    h0, c0 = torch.randn(2, 4, dtype=F64), torch.randn(2, 4, dtype=F64)
    grad_hs, grad_c = torch.randn(3, 2, 4, dtype=F64), torch.randn(2, 4, dtype=F64)

    def run():
        cell.reset()
        state = (h0, c0)
        outputs = []
        for x in xs:
            state = cell.forward(x, state)
            outputs.append(state[0])
        return torch.stack(outputs), state[1]

    def probe():
        hs, c = run()
        return ((hs * grad_hs).sum() + (c * grad_c).sum()).item()

    run()
    grad_xs, grad_h0, grad_c0 = cell.backward_through_time(grad_hs, grad_c)
    assert_close(grad_xs, numerical_gradient(probe, xs), TOL, "inputs")
    assert_close(grad_h0, numerical_gradient(probe, h0), TOL, "h0")
    assert_close(grad_c0, numerical_gradient(probe, c0), TOL, "c0")
    for name, param in cell.named_parameters():
        assert_close(param.grad, numerical_gradient(probe, param), TOL, name)


def test_log_softmax_and_entropy():
    logits = torch.randn(2, 5, dtype=F64) * 2
    grad_log_probs, grad_entropy = torch.randn(2, 5, dtype=F64), torch.randn(2, dtype=F64)

    def probe():
        log_probs = log_softmax(logits)
        return ((log_probs * grad_log_probs).sum() + (entropy(log_probs) * grad_entropy).sum()).item()

    log_probs = log_softmax(logits)
    grad = log_softmax_backward(grad_log_probs, log_probs.exp()) + entropy_backward(grad_entropy, log_probs)
    assert_close(grad, numerical_gradient(probe, logits), TOL, "logits")
