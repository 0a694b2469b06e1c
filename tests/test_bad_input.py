"""Bad input raises a ValueError that names the layer and the shapes, never a silent result."""
from __future__ import annotations

import re

import pytest
import torch

from a3c.model import ActorCritic
from layers import ELU, Conv2d, ConvTranspose2d, LayerNormLSTMCell, Linear, LSTMCell, ReLU


def raises(match: str):
    return pytest.raises(ValueError, match=match)


@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 1, 3, 8, 8), (8,)])
def test_conv2d_wrong_rank(shape):
    with raises(r"Conv2d\(3, 4.*input must have shape \(N, 3, N, N\), got " + re.escape(str(shape))):
        Conv2d(3, 4, 3).forward(torch.zeros(shape))


def test_conv2d_wrong_channel_count():
    with raises(r"Conv2d\(3, 4.*input must have shape \(N, 3, N, N\), got \(1, 2, 8, 8\)"):
        Conv2d(3, 4, 3).forward(torch.zeros(1, 2, 8, 8))


def test_conv2d_input_smaller_than_kernel():
    with raises(r"Conv2d.*\(1, 3, 2, 2\) is smaller than the dilated kernel"):
        Conv2d(3, 4, 3).forward(torch.zeros(1, 3, 2, 2))


def test_linear_wrong_feature_count():
    with raises(r"Linear\(5, 2.*input must have shape \(N, 5\), got \(4, 6\)"):
        Linear(5, 2).forward(torch.zeros(4, 6))


def test_lstm_wrong_state_shape():
    with raises(r"LSTMCell\(3, 4.*h must have shape \(2, 4\), got \(2, 5\)"):
        LSTMCell(3, 4).forward(torch.zeros(2, 3), (torch.zeros(2, 5), torch.zeros(2, 4)))


@pytest.mark.parametrize("layer,x", [
    (Conv2d(1, 2, 3), torch.zeros(1, 1, 5, 5, dtype=torch.float64)),
    (ConvTranspose2d(1, 2, 3), torch.zeros(1, 1, 5, 5, dtype=torch.float64)),
    (Linear(3, 2), torch.zeros(1, 3, dtype=torch.float64)),
    (LSTMCell(3, 2), torch.zeros(1, 3, dtype=torch.float64)),
])
def test_dtype_mismatch(layer, x):
    with raises(r"input has dtype torch.float64, parameters have torch.float32"):
        layer.forward(x)


def test_device_mismatch():
    with raises(r"Linear\(3, 2.*input is on meta, parameters on cpu"):
        Linear(3, 2).forward(torch.zeros(1, 3, device="meta"))


@pytest.mark.parametrize("layer,grad", [
    (Conv2d(1, 2, 3), torch.zeros(1, 2, 3, 3)),
    (ConvTranspose2d(1, 2, 3), torch.zeros(1, 2, 3, 3)),
    (Linear(3, 2), torch.zeros(1, 2)),
    (ELU(), torch.zeros(1, 2)),
    (ReLU(), torch.zeros(1, 2)),
])
def test_backward_without_forward(layer, grad):
    with raises(r"backward called without a matching forward"):
        layer.backward(grad)


def test_lstm_backward_without_forward():
    with raises(r"LSTMCell.*backward called without a matching forward"):
        LSTMCell(3, 2).backward(torch.zeros(1, 2))
    with raises(r"LSTMCell.*does not match the recorded steps"):
        LSTMCell(3, 2).backward_through_time(torch.zeros(4, 1, 2))


@pytest.mark.parametrize("cell_type", [LSTMCell, LayerNormLSTMCell])
def test_lstm_backward_takes_one_step_at_a_time_and_at_least_one_through_time(cell_type):
    cell = cell_type(3, 2)
    for _ in range(2):
        cell.forward(torch.zeros(1, 3))
    with raises(rf"{cell_type.__name__}.*does not match the latest step \(batch 1\): one step at a time"):
        cell.backward(torch.zeros(2, 2))
    with raises(rf"{cell_type.__name__}.*grad_hs of shape \(0, 1, 2\) covers no step"):
        cell.backward_through_time(torch.zeros(0, 1, 2))
    assert len(cell._records) == 2  # nothing consumed by the refused calls
    cell.backward_through_time(torch.zeros(2, 1, 2))


def test_a_layer_normalised_cell_needs_two_units():
    with raises(r"LayerNormLSTMCell: hidden_size must be at least 2, got 1"):
        LayerNormLSTMCell(3, 1)


def test_upstream_gradient_of_wrong_shape():
    conv = Conv2d(1, 2, 3)
    conv.forward(torch.zeros(2, 1, 5, 5))
    with raises(r"upstream gradient has shape \(2, 2, 4, 4\), the output had \(2, 2, 3, 3\)"):
        conv.backward(torch.zeros(2, 2, 4, 4))
    with raises(r"upstream gradient must have shape \(N, 2, N, N\), got \(2, 3, 3, 3\)"):
        conv.backward(torch.zeros(2, 3, 3, 3))
    linear = Linear(3, 2)
    linear.forward(torch.zeros(2, 3))
    with raises(r"upstream gradient of shape \(3, 2\) does not match the recorded forward calls"):
        linear.backward(torch.zeros(3, 2))
    elu = ELU()
    elu.forward(torch.zeros(2, 3))
    with raises(r"ELU.*upstream gradient has shape \(2, 4\), output had \(2, 3\)"):
        elu.backward(torch.zeros(2, 4))
    relu = ReLU()
    relu.forward(torch.zeros(2, 3))
    with raises(r"ReLU.*upstream gradient has shape \(2, 4\), output had \(2, 3\)"):
        relu.backward(torch.zeros(2, 4))
    deconv = ConvTranspose2d(3, 2, 4, stride=2)
    deconv.forward(torch.zeros(2, 3, 5, 5))
    with raises(r"ConvTranspose2d\(3, 2.*upstream gradient has shape \(2, 2, 11, 11\), the output had \(2, 2, 12, 12\)"):
        deconv.backward(torch.zeros(2, 2, 11, 11))
    with raises(r"ConvTranspose2d\(3, 2.*input must have shape \(N, 3, N, N\), got \(1, 2, 5, 5\)"):
        deconv.forward(torch.zeros(1, 2, 5, 5))


def test_lstm_upstream_gradient_of_wrong_shape():
    cell = LSTMCell(3, 2)
    cell.forward(torch.zeros(2, 3))
    with raises(r"grad_c must have shape \(2, 2\), got \(2, 3\)"):
        cell.backward(torch.zeros(2, 2), torch.zeros(2, 3))


def test_invalid_construction():
    with raises(r"groups=2 must divide in_channels=3"):
        Conv2d(3, 4, 3, groups=2)
    with raises(r"kernel_size, stride and dilation must be >= 1"):
        Conv2d(1, 1, 3, stride=0)
    with raises(r"ELU: alpha must be positive"):
        ELU(alpha=0)
    with raises(r"ConvTranspose2d: groups=2 must divide in_channels=3 and out_channels=4"):
        ConvTranspose2d(3, 4, 3, groups=2)
    with raises(r"ConvTranspose2d: kernel_size, stride and dilation must be >= 1"):
        ConvTranspose2d(1, 1, 3, stride=0)
    with raises(r"ConvTranspose2d: output_padding must be >= 0 and smaller than the stride or the dilation"):
        ConvTranspose2d(1, 1, 3, stride=2, output_padding=2)
    with raises(r"ConvTranspose2d.*gives an empty output"):
        ConvTranspose2d(1, 1, 1, padding=1).forward(torch.zeros(1, 1, 1, 1))


def test_state_dict_mismatch():
    with raises(r"weight has shape \(2, 3\), state_dict gives \(3, 3\)"):
        Linear(3, 2).load_state_dict({"weight": torch.zeros(3, 3), "bias": torch.zeros(2)})
    with raises(r"missing \['bias'\]"):
        Linear(3, 2).load_state_dict({"weight": torch.zeros(2, 3)})


def test_model_backward_with_wrong_step_count():
    model = ActorCritic(18, seed=0)
    model.step(torch.zeros(1, 1, 42, 42), model.initial_state(1), record=True)
    with raises(r"ActorCritic: backward needs grad_logits \(T=1, N, 18\)"):
        model.backward(torch.zeros(2, 1, 18), torch.zeros(2, 1, 1))

