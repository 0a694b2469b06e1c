"""Initialisation of the A3C network."""
from __future__ import annotations

import math

import torch

from a3c.model import ActorCritic
from layers import Conv2d, LSTMCell
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


def test_seed_fixes_the_initial_weights():
    a, b, c = ActorCritic(18, seed=3), ActorCritic(18, seed=3), ActorCritic(18, seed=4)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.convs[0].weight, c.convs[0].weight)
