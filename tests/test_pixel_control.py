"""UNREAL's pixel-control task: its pseudo-rewards, targets and loss (a3c.pixel_control)
and its head (a3c.model). Its gradients through the network and within the whole
update are tests/test_model_gradients.py's, tests/test_a3c_update.py's and
tests/test_worker_rollout.py's subject."""
from __future__ import annotations

import pytest
import torch

from a3c.config import SMALLEST_PIXEL_CONTROL_FRAME
from a3c.model import ActorCritic, pixel_map_side
from a3c.pixel_control import grid_cells, pixel_change_rewards, pixel_control_loss, pixel_control_targets

F64 = torch.float64


def test_the_grid_covers_the_central_80x80_of_an_84x84_view_in_4x4_cells():
    assert grid_cells(84) == 20 and grid_cells(42) == 8 and grid_cells(20) == 4
    assert grid_cells(SMALLEST_PIXEL_CONTROL_FRAME - 1) < 4 <= grid_cells(SMALLEST_PIXEL_CONTROL_FRAME)
    assert pixel_map_side(84) == 9  # the head's 9 x 9 maps become 20 x 20 through a 4x4, stride-2 deconvolution
    with pytest.raises(ValueError, match="pixel control needs frame_size of at least 20, got 19"):
        pixel_map_side(19)


def test_a_change_in_one_cell_rewards_that_cell_alone_with_its_mean_absolute_change():
    views = torch.zeros(3, 1, 84, 84, dtype=F64)
    views[1, 0, 2 + 4 * 5 + 1, 2 + 4 * 7 + 2] = 0.8  # one pixel of cell (5, 7) lights up at step 1 ...
    views[1, 0, 2 + 4 * 5, 2 + 4 * 7] = -0.4  # ... and another darkens
    rewards = pixel_change_rewards(views, grid_cells(84))
    assert rewards.shape == (2, 1, 20, 20)
    expected = torch.zeros(2, 1, 20, 20, dtype=F64)
    expected[:, 0, 5, 7] = (0.8 + 0.4) / 16  # on, then off again: the same change both steps
    assert torch.equal(rewards, expected)


def test_changes_outside_the_central_crop_are_not_rewarded():
    views = torch.zeros(2, 2, 84, 84, dtype=F64)
    views[1, :, :2] = views[1, :, -2:] = views[1, :, :, :2] = views[1, :, :, -2:] = 1.0  # the 2-pixel border
    assert not pixel_change_rewards(views, 20).any()
    views[1, 1, 2, 2] = 1.0  # the crop's first pixel
    assert pixel_change_rewards(views, 20)[0, 1, 0, 0] == 1 / 16


def test_a_change_of_normalised_views_times_the_normalisers_scale_is_the_change_of_the_views():
    """The worker's pseudo-rewards are in the view's own [0, 1] intensities, whatever
    the input normalisation has learnt."""
    from a3c.envs import ObsNormalizer

    normalizer = ObsNormalizer()
    assert normalizer.scale() == 1.0  # nothing seen: the views pass unchanged
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        normalizer(torch.rand(1, 84, 84, generator=generator).numpy() * 0.6)
    before, after = torch.rand(2, 1, 84, 84, generator=generator, dtype=F64).numpy()
    change = (normalizer(after, update=False) - normalizer(before, update=False)) * normalizer.scale()
    assert normalizer.scale() != pytest.approx(1.0, abs=0.1)
    assert change == pytest.approx(after - before, abs=1e-6)


def test_targets_discount_the_pseudo_rewards_and_start_from_the_best_action_after_the_rollout():
    rewards = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=F64).view(3, 2, 1, 1)
    dones = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=F64)  # game 1's life ends at step 1
    bootstrap_q = torch.tensor([[-1.0, 10.0, 2.0], [7.0, 0.0, 3.0]], dtype=F64).view(2, 3, 1, 1)
    returns = pixel_control_targets(rewards, dones, bootstrap_q, 0.5).view(3, 2)
    # game 0: 5 + 0.5 * 10 = 10, 3 + 5 = 8, 1 + 4 = 5; game 1: 6 + 3.5 = 9.5, 4 (no bootstrap across the end), 2 + 2 = 4
    assert returns.tolist() == [[5.0, 4.0], [8.0, 4.0], [10.0, 9.5]]


def test_the_loss_pulls_only_the_taken_actions_q_toward_its_target():
    torch.manual_seed(0)
    q = torch.randn(4, 3, 5, 2, 2, dtype=F64)
    actions = torch.randint(0, 5, (4, 3))
    rewards, dones = torch.rand(4, 3, 2, 2, dtype=F64), torch.zeros(4, 3, dtype=F64)
    bootstrap_q = torch.randn(3, 5, 2, 2, dtype=F64)
    terms = pixel_control_loss(q, actions, rewards, dones, bootstrap_q, gamma=0.9, coef=0.05)
    returns = pixel_control_targets(rewards, dones, bootstrap_q, 0.9)
    taken = torch.nn.functional.one_hot(actions, 5).to(F64).view(4, 3, 5, 1, 1)
    error = returns - (q * taken).sum(2)
    assert terms.loss == pytest.approx(0.05 * 0.5 * float((error ** 2).sum()), rel=1e-12)
    assert torch.equal(terms.grad_q != 0, (taken != 0).expand_as(q))  # no gradient for the actions not taken
    assert torch.allclose((terms.grad_q * taken).sum(2), -0.05 * error, rtol=0, atol=1e-15)


def test_the_head_is_a_dueling_one_and_the_policy_never_reads_it():
    """The Q maps average, over actions, to the value map; a network with the head acts as the
    same seed's network without it (the head is drawn last)."""
    with_head = ActorCritic(18, frame_size=84, hidden_size=16, conv_channels=8, pixel_control=True, seed=3, dtype=F64)
    without = ActorCritic(18, frame_size=84, hidden_size=16, conv_channels=8, seed=3, dtype=F64)
    frames = torch.rand(2, 1, 84, 84, dtype=F64)
    logits, values, _ = with_head.step(frames, with_head.initial_state(2))
    logits_without, values_without, _ = without.step(frames, without.initial_state(2))
    assert torch.equal(logits, logits_without) and torch.equal(values, values_without)
    q = with_head.pixel_q(with_head.last_hidden)
    assert q.shape == (2, 18, 20, 20)
    x = torch.relu(torch.nn.functional.linear(with_head.last_hidden, with_head.pixel_fc.weight, with_head.pixel_fc.bias))
    maps = torch.nn.functional.conv_transpose2d(x.view(2, 32, 9, 9), with_head.pixel_deconv.weight,
                                                with_head.pixel_deconv.bias, stride=2)
    assert torch.allclose(q.mean(1), maps[:, 0], rtol=0, atol=1e-12)
    # and the actions differ by their advantages: Q_a - Q_b = A_a - A_b
    assert torch.allclose(q - q[:, :1], maps[:, 1:] - maps[:, 1:2], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="this network has no pixel-control head"):
        without.pixel_q(without.last_hidden)
