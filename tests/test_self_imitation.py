"""Self-imitation: the memory keeps the steps whose return to their life's end beat their
value, and the loss's hand-written gradients equal autograd's (float64)."""
from __future__ import annotations

import pytest
import torch

from a3c.loss import self_imitation_loss
from a3c.model import ActorCritic
from a3c.self_imitation import SelfImitationMemory
from tests.autograd_reference import TorchActorCritic
from tests.helpers import assert_close

F64 = torch.float64
GAMMA = 0.9


def rollout(steps, games, rewards, values, dones, first_frame=0.0):
    """A rollout whose frame for (t, game) is filled with a number naming it, so a kept step
    shows where it came from: first_frame + 10 t + game."""
    names = first_frame + 10 * torch.arange(steps, dtype=F64).view(-1, 1) + torch.arange(games, dtype=F64)
    frames = names.view(steps, games, 1, 1, 1).expand(steps, games, 1, 2, 2).clone()
    h = names.view(steps, games, 1).expand(steps, games, 3).clone()
    actions = (names % 18).long()
    as_table = lambda rows: torch.tensor(rows, dtype=F64)  # noqa: E731
    return frames, h, -h, actions, as_table(rewards), as_table(values), as_table(dones)


def memory_of(capacity, games):
    memory = SelfImitationMemory(capacity, (1, 2, 2), 3, GAMMA, state_dtype=F64)
    memory.start_games(games)
    return memory


def kept(memory):
    """The kept steps as {frame name: return}."""
    return {float(memory.frames[k, 0, 0, 0]): float(memory.returns[k]) for k in range(len(memory))}


def test_a_life_that_spans_two_rollouts_is_kept_when_it_ends_with_each_steps_discounted_return():
    memory = memory_of(100, 2)
    # game 0's life runs through both rollouts and ends at the second's last step; game 1's
    # first life ends at step 1, its second is still going at the end
    first = rollout(2, 2, rewards=[[1, 1], [0, 1]], values=[[-5, -5], [-5, -5]], dones=[[0, 0], [0, 1]])
    assert memory.add_rollout(*first) == 2 and kept(memory) == {1.0: 1 + GAMMA * 1, 11.0: 1.0}
    second = rollout(2, 2, rewards=[[0, 1], [1, 0]], values=[[-5, -5], [-5, -5]], dones=[[0, 0], [1, 0]],
                     first_frame=100.0)
    assert memory.add_rollout(*second) == 4
    assert kept(memory) == pytest.approx({1.0: 1.9, 11.0: 1.0, 110.0: 1.0, 100.0: GAMMA * 1.0,
                                          10.0: GAMMA ** 2, 0.0: 1 + GAMMA ** 3})
    assert memory.waiting == [0, 2]  # game 1's second life goes on


def test_only_steps_whose_return_beat_the_value_they_were_played_with_are_kept():
    memory = memory_of(100, 1)
    # returns from the end: 1, 0.9, 1.81, 1.629
    memory.add_rollout(*rollout(4, 1, rewards=[[0], [1], [0], [1]], values=[[1.7], [1.81], [0.5], [0.0]],
                                dones=[[0], [0], [0], [1]]))
    assert kept(memory) == pytest.approx({30.0: 1.0, 20.0: 0.9})  # 1.81 is not above 1.81, 1.629 not above 1.7


def test_a_done_at_every_step_keeps_each_steps_own_reward_as_its_return():
    memory = memory_of(100, 2)
    memory.add_rollout(*rollout(2, 2, rewards=[[1, -1], [0, 1]], values=[[0, 0], [0, 0]], dones=[[1, 1], [1, 1]]))
    assert kept(memory) == {0.0: 1.0, 11.0: 1.0}


def test_the_memory_is_a_ring_that_keeps_the_newest_steps():
    memory = memory_of(3, 1)
    memory.add_rollout(*rollout(5, 1, rewards=[[1]] * 5, values=[[-1]] * 5, dones=[[1]] * 5))
    assert len(memory) == 3 and sorted(kept(memory)) == [20.0, 30.0, 40.0]


def test_a_life_longer_than_the_memory_keeps_its_last_steps_with_their_true_returns():
    memory = memory_of(2, 1)
    memory.add_rollout(*rollout(4, 1, rewards=[[1]] * 4, values=[[-1]] * 4, dones=[[0], [0], [0], [1]]))
    assert kept(memory) == pytest.approx({30.0: 1.0, 20.0: 1.9})


def test_each_game_waits_with_its_share_of_the_memory():
    memory = memory_of(4, 2)  # 2 waiting steps per game
    memory.add_rollout(*rollout(3, 2, rewards=[[1, 1]] * 3, values=[[-1, -1]] * 3, dones=[[0, 0], [0, 0], [0, 1]]))
    assert memory.waiting == [2, 0] and kept(memory) == pytest.approx({11.0: 1.9, 21.0: 1.0})
    memory.add_rollout(*rollout(1, 2, rewards=[[1, 1]], values=[[-1, -1]], dones=[[1, 0]], first_frame=100.0))
    # game 0's life: steps 0, 10, 20, 100; its first two had to go as its later ones came
    assert kept(memory) == pytest.approx({11.0: 1.9, 21.0: 1.0, 20.0: 1.9, 100.0: 1.0})


def test_new_games_keep_the_kept_steps_and_drop_the_old_games_waiting_ones():
    memory = memory_of(100, 2)
    memory.add_rollout(*rollout(2, 2, rewards=[[1, 1]] * 2, values=[[-1, -1]] * 2, dones=[[0, 1], [0, 0]]))
    before = kept(memory)
    memory.start_games(3)
    assert kept(memory) == before == {1.0: 1.0} and memory.waiting == [0, 0, 0]
    memory.add_rollout(*rollout(1, 3, rewards=[[1, 1, 1]], values=[[-1, -1, -1]], dones=[[1, 0, 0]],
                                first_frame=100.0))
    assert kept(memory) == {1.0: 1.0, 100.0: 1.0}  # game 0's steps before the switch are not in its new life


def test_a_step_whose_state_or_return_is_not_finite_is_never_kept():
    memory = memory_of(100, 1)
    frames, h, c, actions, rewards, values, dones = rollout(3, 1, rewards=[[1], [float("nan")], [1]],
                                                             values=[[-1]] * 3, dones=[[1], [0], [1]])
    h[2, 0, 1] = float("inf")
    memory.add_rollout(frames, h, c, actions, rewards, values, dones)
    assert kept(memory) == {0.0: 1.0}


def test_a_drawn_batch_holds_kept_steps_with_their_state_action_and_return():
    memory = memory_of(100, 2)
    memory.add_rollout(*rollout(3, 2, rewards=[[1, 1]] * 3, values=[[0, 0]] * 3, dones=[[0, 0], [0, 0], [1, 1]]))
    frames, (h, c), actions, returns = memory.sample(64, torch.Generator().manual_seed(0), F64)
    assert frames.shape == (64, 1, 2, 2) and h.shape == c.shape == (64, 3)
    assert frames.dtype == h.dtype == returns.dtype == F64 and actions.dtype == torch.int64
    names = frames[:, 0, 0, 0]
    table = kept(memory)
    assert set(names.tolist()) == set(table)  # 64 draws with replacement reach all six steps
    assert torch.equal(h, names.view(-1, 1).expand(-1, 3)) and torch.equal(c, -h)
    assert torch.equal(actions, (names % 18).long())
    assert returns.tolist() == pytest.approx([table[name] for name in names.tolist()])


def test_an_empty_memory_refuses_to_draw():
    memory = memory_of(10, 1)
    with pytest.raises(ValueError, match="nothing to sample"):
        memory.sample(4, torch.Generator())


@pytest.mark.parametrize("batch,frame_size,hidden,value_coef,clip", [
    (1, 42, 256, 0.01, None), (7, 42, 16, 0.5, None), (16, 24, 32, 1.0, None), (5, 84, 8, 0.0, None),
    (16, 24, 32, 0.5, 0.3), (7, 42, 16, 1.0, 1.0)])
def test_the_self_imitation_update_equals_autograd(batch, frame_size, hidden, value_coef, clip):
    torch.manual_seed(batch)
    model = ActorCritic(18, frame_size=frame_size, hidden_size=hidden, seed=batch, dtype=F64)
    reference = TorchActorCritic(18, frame_size=frame_size, hidden_size=hidden).double().load_from(model)
    frames = torch.randn(batch, 1, frame_size, frame_size, dtype=F64)
    state = (torch.randn(batch, hidden, dtype=F64), torch.randn(batch, hidden, dtype=F64))
    actions = torch.randint(0, 18, (batch,))
    with torch.no_grad():
        _, values, _ = reference(frames, state)
    # about half the steps beat their value (they give gradients), the others fall short (none)
    returns = values.squeeze(1) + torch.randn(batch, dtype=F64)
    returns[0] = values[0, 0] + 0.5  # at least one step is imitated

    logits, values, _ = reference(frames, state)
    shortfall = (returns - values.squeeze(1)).clamp(min=0.0)
    weight = shortfall if clip is None else shortfall.clamp(max=clip)
    taken = torch.log_softmax(logits, 1).gather(1, actions.unsqueeze(1)).squeeze(1)
    policy = -(taken * weight.detach()).sum()
    if clip is None:
        value = 0.5 * (shortfall ** 2).sum()
    else:  # a Huber loss on the shortfall: quadratic up to the clip, linear beyond
        value = torch.where(shortfall <= clip, 0.5 * shortfall ** 2, clip * (shortfall - 0.5 * clip)).sum()
        assert (shortfall > clip).any() and ((shortfall > 0) & (shortfall <= clip)).any()  # both sides met
    (policy + value_coef * value).backward()

    logits, values, _ = model.step(frames, state, record=True)
    terms = self_imitation_loss(logits, values, actions, returns, value_coef=value_coef, clip=clip)
    model.backward(terms.grad_logits, terms.grad_values)
    assert terms.policy == pytest.approx(policy.item(), rel=1e-10)
    assert terms.value == pytest.approx(value.item(), rel=1e-10)
    assert terms.imitated == int((shortfall > 0).sum()) >= 1
    expected = reference.gradients_like(model)
    for name, param in model.named_parameters():
        assert_close(param.grad, expected[name], what=name)


def test_steps_the_network_already_values_at_their_return_give_no_gradient():
    logits = torch.randn(4, 18, dtype=F64)
    values = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=F64)
    terms = self_imitation_loss(logits, values, torch.tensor([0, 1, 2, 3]), torch.tensor([0.5, 2.0, 1.0, 4.0],
                                dtype=F64), value_coef=0.5)
    assert terms.imitated == 0 and terms.policy == 0.0 and terms.value == 0.0
    assert not terms.grad_logits.any() and not terms.grad_values.any()
