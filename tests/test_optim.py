"""The shared optimizers match torch.optim; their update count is shared across processes."""
from __future__ import annotations

import math

import pytest
import torch
import torch.multiprocessing as mp

from a3c.config import load_config
from a3c.optim import SharedAdam, SharedRMSprop, annealed_lr, clip_grad_norm, optimizer_for


def gradient_sequence(shapes, count=25, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=generator, dtype=torch.float64) for s in shapes] for _ in range(count)]


@pytest.mark.parametrize("ours_cls,torch_cls,kwargs", [
    (SharedAdam, torch.optim.Adam, {}),
    (SharedRMSprop, torch.optim.RMSprop, {"alpha": 0.99, "eps": 0.1}),
], ids=["adam", "rmsprop"])
def test_matches_torch_optim_on_the_same_gradients(ours_cls, torch_cls, kwargs):
    shapes = [(4, 3), (3,), (2, 2, 3, 3)]
    initial = [torch.randn(s, dtype=torch.float64) for s in shapes]
    ours_params = [p.clone() for p in initial]
    ref_params = [p.clone().requires_grad_() for p in initial]
    ours = ours_cls(ours_params, lr=1e-2)
    reference = torch_cls(ref_params, lr=1e-2, **kwargs)
    for grads in gradient_sequence(shapes):
        ours.step([g.clone() for g in grads])
        for p, g in zip(ref_params, grads):
            p.grad = g.clone()
        reference.step()
    for mine, theirs in zip(ours_params, ref_params):
        torch.testing.assert_close(mine, theirs.detach(), rtol=1e-12, atol=1e-12)
    assert ours.update_count == 25


@pytest.mark.parametrize("optimizer,own_eps", [("rmsprop", 0.1), ("adam", 1e-8)])
def test_optimizer_eps_replaces_the_optimizers_own_epsilon_and_empty_keeps_it(optimizer, own_eps):
    params = [torch.zeros(3)]
    assert optimizer_for(load_config(None, {"optimizer": optimizer}), params, 1).eps == own_eps
    chosen = optimizer_for(load_config(None, {"optimizer": optimizer, "optimizer_eps": 1e-3}), params, 1)
    assert chosen.eps == 1e-3


def test_a_smaller_rmsprop_epsilon_takes_a_larger_step_for_small_gradients():
    """RMSProp's step is lr g / (sqrt(v) + eps): for a gradient far below eps the step
    shrinks with g (the A3C paper's 0.1); with eps far below it the step is about lr / sqrt(1 - alpha)."""
    steps = {}
    for eps in (0.1, 1e-5):
        param = torch.zeros(1, dtype=torch.float64)
        SharedRMSprop([param], lr=1.0, eps=eps).step([torch.full((1,), 1e-3, dtype=torch.float64)])
        steps[eps] = -param.item()
    assert steps[0.1] == pytest.approx(1e-3 / (0.1 * 1e-3 + 0.1))
    assert steps[1e-5] == pytest.approx(1e-3 / (0.1 * 1e-3 + 1e-5))
    assert steps[1e-5] > 9 * steps[0.1]


def test_the_step_uses_the_schedules_rate_at_the_global_step():
    param = torch.zeros(1, dtype=torch.float64)
    optimizer = SharedRMSprop([param], lr=1.0, total_steps=100, anneal=True)
    assert optimizer.lr_at(50) == pytest.approx(0.5)
    optimizer.step([torch.ones(1, dtype=torch.float64)], global_step=100)  # annealed to zero: no move
    assert param.item() == 0.0
    optimizer.step([torch.ones(1, dtype=torch.float64)], global_step=0)
    assert param.item() < 0.0
    assert SharedRMSprop([param], lr=1.0, total_steps=100).lr_at(50) == 1.0  # no annealing asked


def _push_updates(optimizer, slot, count):
    torch.set_num_threads(1)
    for _ in range(count):
        optimizer.step([torch.ones_like(p) for p in optimizer.params], slot=slot)


def test_update_count_and_statistics_are_shared_across_processes():
    param = torch.zeros(3).share_memory_()
    optimizer = SharedAdam([param], lr=1e-3, slots=2)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_push_updates, args=(optimizer, slot, 5)) for slot in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert optimizer.update_count == 10
    assert (param < 0).all()  # the children's updates landed in the parent's tensor
    assert optimizer.state["exp_avg"][0].abs().sum() > 0


def test_state_dict_round_trip():
    params = [torch.zeros(2)]
    optimizer = SharedAdam(params, lr=1e-3)
    optimizer.step([torch.ones(2)])
    restored = SharedAdam([torch.zeros(2)], lr=1e-3, slots=3)
    restored.load_state_dict(optimizer.state_dict())
    assert restored.update_count == 1
    assert torch.equal(restored.state["exp_avg_sq"][0], optimizer.state["exp_avg_sq"][0])
    with pytest.raises(ValueError, match="optimizer state is for 'adam', this run uses 'rmsprop'"):
        SharedRMSprop([torch.zeros(2)], lr=1e-3).load_state_dict(optimizer.state_dict())


def test_clip_grad_norm_matches_torch_and_flags_non_finite():
    grads = [torch.tensor([3.0, 4.0]), torch.tensor([12.0])]
    reference = [g.clone().requires_grad_() for g in grads]
    for r, g in zip(reference, grads):
        r.grad = g.clone()
    expected = torch.nn.utils.clip_grad_norm_(reference, 6.5)
    norm = clip_grad_norm(grads, 6.5)
    assert norm == pytest.approx(expected.item())
    for r, g in zip(reference, grads):
        torch.testing.assert_close(g, r.grad)
    bad = [torch.tensor([float("nan"), 1.0])]
    assert not math.isfinite(clip_grad_norm(bad, 1.0))


def test_linear_annealing():
    assert annealed_lr(1e-4, 0, 100, True) == 1e-4
    assert annealed_lr(1e-4, 50, 100, True) == pytest.approx(5e-5)
    assert annealed_lr(1e-4, 150, 100, True) == 0.0
    assert annealed_lr(1e-4, 50, 100, False) == 1e-4


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_clipping_reports_a_non_finite_norm_and_leaves_such_gradients_unscaled(bad):
    grads = [torch.tensor([bad, 0.0])]
    norm = clip_grad_norm(grads, max_norm=1.0)
    assert not math.isfinite(norm) and grads[0][1] == 0.0 and (grads[0][0] == bad or math.isnan(bad))
    grads = [torch.tensor([3.0, 4.0])]
    assert clip_grad_norm(grads, max_norm=1.0) == pytest.approx(5.0)
    torch.testing.assert_close(grads[0], torch.tensor([0.6, 0.8]))
