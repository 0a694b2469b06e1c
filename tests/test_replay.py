"""The rollout memory a worker replays with V-trace (a3c.replay)."""
from __future__ import annotations

import pytest
import torch

from a3c.replay import RolloutReplay

STEPS, GAMES, HIDDEN, ACTIONS = 4, 3, 5, 6


def rollout(number: int, games: int = GAMES) -> dict:
    """A rollout whose every number is tagged by ``number``, with a game restarting before
    step 2 and none before the others."""
    tag = float(number)
    restart = torch.ones(games, 1)
    restart[1] = 0.0
    return dict(
        frames=torch.full((STEPS, games, 1, 6, 6), tag) + torch.rand(STEPS, games, 1, 6, 6),
        final_frames=torch.full((games, 1, 6, 6), tag),
        masks=[None, None, restart, None, None],
        start_state=(torch.full((games, HIDDEN), tag), torch.full((games, HIDDEN), -tag)),
        actions=torch.full((STEPS, games), number, dtype=torch.int64),
        rewards=torch.full((STEPS, games), tag), dones=torch.zeros(STEPS, games),
        behaviour_log_probs=torch.full((STEPS, games), -tag),
        previous=torch.full((STEPS + 1, games, ACTIONS + 1), tag))


def test_a_stored_rollout_comes_back_as_played_with_its_views_in_half_precision():
    memory, played = RolloutReplay(3), rollout(7)
    memory.add(**played)
    stored = memory.sample(torch.Generator().manual_seed(0), torch.float64)
    assert stored.frames.shape == (STEPS + 1, GAMES, 1, 6, 6)
    assert torch.equal(stored.frames[:STEPS], played["frames"].half().double())
    assert torch.equal(stored.frames[STEPS], played["final_frames"].double())
    assert stored.masks.shape == (STEPS + 1, GAMES, 1)
    assert torch.equal(stored.masks[2], played["masks"][2].double())
    assert torch.equal(stored.masks[[0, 1, 3, 4]], torch.ones(4, GAMES, 1, dtype=torch.float64))  # None: no restart
    assert torch.equal(stored.start_h, played["start_state"][0].double())
    assert torch.equal(stored.start_c, played["start_state"][1].double())
    for key in ["actions", "rewards", "dones", "behaviour_log_probs", "previous"]:
        assert torch.equal(getattr(stored, key), played[key].to(getattr(stored, key).dtype)), key
    assert stored.actions.dtype == torch.int64 and stored.rewards.dtype == torch.float64


def test_the_memory_copies_what_it_stores_so_the_workers_buffers_can_be_reused():
    memory, played = RolloutReplay(2), rollout(1)
    memory.add(**played)
    for key in ["frames", "final_frames", "actions", "rewards", "dones", "behaviour_log_probs", "previous"]:
        played[key].fill_(99)
    played["start_state"][0].fill_(99)
    stored = memory.sample(torch.Generator().manual_seed(0))
    assert stored.frames.max() < 3 and stored.start_h.max() == 1 and int(stored.actions.max()) == 1
    assert stored.rewards.max() == 1 and stored.behaviour_log_probs.min() == -1 and stored.previous.max() == 1


def test_the_ring_keeps_the_last_capacity_rollouts_and_draws_each_of_them():
    memory = RolloutReplay(3)
    for number in range(1, 6):
        memory.add(**rollout(number))
    assert len(memory) == 3
    generator = torch.Generator().manual_seed(1)
    drawn = [int(memory.sample(generator).actions[0, 0]) for _ in range(300)]
    assert set(drawn) == {3, 4, 5}  # 1 and 2, the oldest, went first
    assert all(80 <= drawn.count(number) <= 120 for number in (3, 4, 5))  # uniform: 100 each expected


def test_rollouts_of_different_batch_sizes_sit_side_by_side():
    memory = RolloutReplay(4)
    memory.add(**rollout(1, games=4))
    memory.add(**rollout(2, games=8))
    generator = torch.Generator().manual_seed(2)
    sizes = {int(stored.actions[0, 0]): stored.frames.shape[1] for stored in
             (memory.sample(generator) for _ in range(20))}
    assert sizes == {1: 4, 2: 8}


def test_an_empty_memory_or_no_room_is_refused():
    with pytest.raises(ValueError, match="capacity must be at least 1"):
        RolloutReplay(0)
    with pytest.raises(ValueError, match="nothing stored"):
        RolloutReplay(1).sample(torch.Generator())
