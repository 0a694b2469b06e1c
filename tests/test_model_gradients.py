"""The A3C network stack: every parameter's gradient over a 20-step rollout equals autograd's."""
from __future__ import annotations

import torch

from a3c.model import ActorCritic
from tests.autograd_reference import TorchActorCritic
from tests.helpers import assert_close

F64 = torch.float64
STEPS, BATCH, ACTIONS = 20, 2, 18


def test_rollout_gradients_match_autograd_for_every_parameter():
    torch.manual_seed(0)
    model = ActorCritic(ACTIONS, seed=0, dtype=F64)
    reference = TorchActorCritic(ACTIONS).double().load_from(model)
    frames = torch.rand(STEPS, BATCH, 1, 42, 42, dtype=F64)
    # episode starts inside the rollout: row 1 resets at step 7, row 0 at step 13
    masks = torch.ones(STEPS, BATCH, 1, dtype=F64)
    masks[7, 1] = masks[13, 0] = 0.0
    grad_logits = torch.randn(STEPS, BATCH, ACTIONS, dtype=F64)
    grad_values = torch.randn(STEPS, BATCH, 1, dtype=F64)
    h0, c0 = torch.randn(BATCH, 256, dtype=F64), torch.randn(BATCH, 256, dtype=F64)

    state, logits_ref, values_ref = (h0, c0), [], []
    for t in range(STEPS):
        logits, values, state = reference(frames[t], state, masks[t])
        logits_ref.append(logits)
        values_ref.append(values)
    ((torch.stack(logits_ref) * grad_logits).sum() + (torch.stack(values_ref) * grad_values).sum()).backward()

    state = (h0, c0)
    for t in range(STEPS):
        logits, values, state = model.step(frames[t], state, masks[t], record=True)
        assert_close(logits, logits_ref[t].detach(), what=f"logits at step {t}")
        assert_close(values, values_ref[t].detach(), what=f"values at step {t}")
    model.backward(grad_logits, grad_values)

    reference_grads = reference.gradients_like(model)
    for name, param in model.named_parameters():
        assert_close(param.grad, reference_grads[name], what=name)


def test_acting_keeps_no_records():
    model = ActorCritic(ACTIONS, seed=0)
    state = model.initial_state(1)
    for _ in range(3):
        _, _, state = model.step(torch.rand(1, 1, 42, 42), state)
    assert all(not layer._records for layer in [*model.layers, *model.elus])
