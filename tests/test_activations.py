"""The float32 sigmoid and tanh used by the LSTM are as accurate as a float64 computation."""
from __future__ import annotations

import pytest
import torch

from layers import stable_sigmoid, stable_tanh

POINTS = [1e4, -1e4, 88.0, -88.0, 20.0, -20.0, 1e-8, -1e-8, 0.0, 0.5, -3.0, 9.0, -15.5, -95.0, -103.0]
FLOAT32_EPS = torch.finfo(torch.float32).eps
TINY = torch.finfo(torch.float32).tiny  # below this, float32 has fewer significant bits


def float32_accuracy(ours: torch.Tensor, reference64: torch.Tensor) -> torch.Tensor:
    """Error in units of float32 rounding: |ours - ref| / max(|ref| eps, tiny eps)."""
    scale = torch.maximum(reference64.abs(), torch.tensor(TINY, dtype=torch.float64)) * FLOAT32_EPS
    return (ours.double() - reference64).abs() / scale


@pytest.mark.parametrize("ours,reference", [(stable_sigmoid, torch.sigmoid), (stable_tanh, torch.tanh)],
                         ids=["sigmoid", "tanh"])
def test_within_two_float32_ulps_of_float64_reference(ours, reference):
    x = torch.tensor(POINTS, dtype=torch.float32)
    dense = torch.linspace(-110, 110, 44001, dtype=torch.float32)  # sigma < 1.2e-38 below -87: subnormals
    for inputs in (x, dense):
        result = ours(inputs)
        assert torch.isfinite(result).all()
        errors = float32_accuracy(result, reference(inputs.double()))
        worst = errors.argmax()
        assert errors.max() <= 2.0, f"x={inputs[worst].item()}: {errors.max().item():.2f} ulps"


def test_small_inputs_keep_their_relative_precision():
    x = torch.tensor([1e-8, -1e-8, 1e-30, -1e-30])
    assert torch.equal(stable_tanh(x), x)  # tanh(x) = x (1 - x^2/3 ...) exactly in float32
    assert torch.equal(stable_sigmoid(torch.tensor([-1e4, 1e4])), torch.tensor([0.0, 1.0]))


def test_textbook_sigmoid_would_lose_the_subnormal_tail():
    """Why stable_sigmoid exists: 1 / (1 + e^-x) overflows to 0 where sigma is still > 0."""
    x = torch.tensor([-95.0])
    assert (1.0 / (1.0 + torch.exp(-x))).item() == 0.0
    assert stable_sigmoid(x).item() == pytest.approx(torch.sigmoid(x.double()).item(), rel=1e-3)
    assert stable_sigmoid(x).item() > 0.0


def test_naive_tanh_would_fail_these_points():
    """Why the careful form exists: the textbook formula breaks at both ends."""
    x = torch.tensor([1e4, 1e-8])
    naive = (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x))
    assert torch.isnan(naive[0])
    assert naive[1] == 0.0  # every digit cancelled
