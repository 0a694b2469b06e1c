"""Initialisation of the A3C network."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from a3c.config import Config
from a3c.model import ActorCritic
from a3c.trainer import restore_training
from layers import Conv2d, LayerNormLSTMCell, LSTMCell
from layers import init as layer_init


def test_heads_have_normalized_rows():
    model = ActorCritic(18, seed=0)
    actor_norms = model.actor.weight.norm(dim=1)
    critic_norms = model.critic.weight.norm(dim=1)
    assert torch.allclose(actor_norms, torch.full_like(actor_norms, 0.01), rtol=1e-5)
    assert torch.allclose(critic_norms, torch.full_like(critic_norms, 1.0), rtol=1e-5)
    assert not model.actor.bias.any() and not model.critic.bias.any()


def test_fan_uniform_bound_and_zero_bias():
    conv = Conv2d(32, 32, 3)
    conv.bias.fill_(5.0)
    layer_init.fan_uniform_(conv, torch.Generator().manual_seed(0))
    bound = math.sqrt(6.0 / (32 * 9 + 32 * 9))
    assert conv.weight.abs().max() <= bound
    assert conv.weight.abs().max() > 0.9 * bound  # spread over the whole range
    assert not conv.bias.any()


def test_lstm_biases_zero_with_optional_forget_bias():
    cell = LSTMCell(4, 3)
    layer_init.lstm_(cell)
    assert not cell.bias_ih.any() and not cell.bias_hh.any()
    layer_init.lstm_(cell, forget_bias=1.0)
    total = cell.bias_ih + cell.bias_hh
    assert torch.equal(total[3:6], torch.ones(3))
    assert not total[:3].any() and not total[6:].any()


def test_layernorm_lstm_starts_with_unit_gains_and_biases_as_the_plain_cell():
    cell = LayerNormLSTMCell(4, 3)
    for name, param in cell.named_parameters():
        param.fill_(7.0)
    layer_init.lstm_(cell, forget_bias=1.0)
    assert torch.equal(cell.gain_ih, torch.ones(12)) and torch.equal(cell.gain_hh, torch.ones(12))
    assert torch.equal(cell.cell_gain, torch.ones(3)) and not cell.cell_bias.any()
    assert torch.equal(cell.bias, torch.tensor([0.0] * 3 + [1.0] * 3 + [0.0] * 6))
    bound = 1.0 / math.sqrt(3)
    assert cell.weight_ih.abs().max() <= bound and cell.weight_hh.abs().max() <= bound
    layer_init.lstm_orthogonal_(cell)
    assert _rows_orthonormal_times(cell.weight_ih, 1.0) and _rows_orthonormal_times(cell.weight_hh, 1.0)
    assert not cell.bias.any() and torch.equal(cell.gain_ih, torch.ones(12))


def test_seed_fixes_the_initial_weights():
    a, b, c = ActorCritic(18, seed=3), ActorCritic(18, seed=3), ActorCritic(18, seed=4)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.convs[0].weight, c.convs[0].weight)


def _rows_orthonormal_times(matrix: torch.Tensor, gain: float) -> bool:
    """A wide matrix's rows, or a tall one's columns, are orthogonal with norm ``gain``."""
    matrix = matrix.double()
    gram = matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
    return torch.allclose(gram, gain ** 2 * torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-5 * max(gain ** 2, 1))


def test_orthogonal_scheme_gives_each_layer_orthogonal_weights_of_its_gain():
    model = ActorCritic(18, hidden_size=64, weight_init="orthogonal", seed=0)
    for conv in model.convs:  # seen as (out, in * 3 * 3), gain sqrt(2) before the ELU
        assert _rows_orthonormal_times(conv.weight.flatten(1), math.sqrt(2.0))
        assert not conv.bias.any()
    assert _rows_orthonormal_times(model.lstm.weight_ih, 1.0)
    assert _rows_orthonormal_times(model.lstm.weight_hh, 1.0)
    assert not (model.lstm.bias_ih + model.lstm.bias_hh).any()
    assert _rows_orthonormal_times(model.critic.weight, 1.0)
    assert _rows_orthonormal_times(model.actor.weight, 0.01)  # a near-uniform first policy, as with 'a3c'
    assert not model.actor.bias.any() and not model.critic.bias.any()


def test_orthogonal_scheme_keeps_the_forget_bias_and_the_seed():
    a = ActorCritic(18, hidden_size=16, weight_init="orthogonal", forget_bias=1.0, seed=5)
    b = ActorCritic(18, hidden_size=16, weight_init="orthogonal", forget_bias=1.0, seed=5)
    default = ActorCritic(18, hidden_size=16, forget_bias=1.0, seed=5)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    total = a.lstm.bias_ih + a.lstm.bias_hh
    assert torch.equal(total[16:32], torch.ones(16)) and not total[:16].any() and not total[32:].any()
    assert not torch.equal(a.convs[0].weight, default.convs[0].weight)


def test_orthogonal_weights_are_the_same_in_float32_and_float64():
    single = ActorCritic(18, hidden_size=16, weight_init="orthogonal", seed=2)
    double = ActorCritic(18, hidden_size=16, weight_init="orthogonal", seed=2, dtype=torch.float64)
    for (name, p32), p64 in zip(single.named_parameters(), double.parameters()):
        assert torch.equal(p32, p64.float()), name


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="weight_init must be 'a3c' or 'orthogonal', got 'xavier'"):
        ActorCritic(18, hidden_size=16, weight_init="xavier")


def test_a_new_run_draws_its_network_with_the_configured_scheme():
    config = dataclasses.replace(Config(), workers=2, hidden_size=32, weight_init="orthogonal", seed=7)
    model, _ = restore_training(config, None, 18)
    assert _rows_orthonormal_times(model.lstm.weight_hh, 1.0)
    same = ActorCritic(18, hidden_size=32, weight_init="orthogonal", seed=7)
    assert torch.equal(model.convs[0].weight, same.convs[0].weight)


def test_the_feedforward_core_is_drawn_as_the_convolutions_in_either_scheme():
    a3c = ActorCritic(18, frame_size=42, hidden_size=64, core="feedforward", seed=1)
    bound = math.sqrt(6.0 / (288 + 64))  # Glorot-uniform, as the convolutions
    assert a3c.fc.weight.abs().max() <= bound and a3c.fc.weight.abs().max() > 0.9 * bound
    orthogonal = ActorCritic(18, frame_size=42, hidden_size=64, core="feedforward", weight_init="orthogonal", seed=1)
    assert _rows_orthonormal_times(orthogonal.fc.weight, math.sqrt(2.0))
    for model in (a3c, orthogonal):
        assert not model.fc.bias.any() and model.lstm is None
