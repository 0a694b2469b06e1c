"""Acting: sampled actions follow the policy's probabilities; greedy takes the most probable."""
from __future__ import annotations

import torch

from a3c.policy import select_action

DRAWS = 200_000


def test_sampled_actions_follow_the_softmax_of_the_logits():
    logits = torch.tensor([[2.0, 0.0, -1.0, float("-inf"), 1.0, -30.0]])  # one action impossible
    generator = torch.Generator().manual_seed(0)
    actions, probs = select_action(logits.expand(DRAWS, -1), "sample", generator)
    assert actions.shape == (DRAWS,) and actions.dtype == torch.int64
    expected = torch.softmax(logits, 1)[0].double()
    assert torch.allclose(probs[0].double(), expected)
    frequencies = torch.bincount(actions, minlength=logits.shape[1]).double() / DRAWS
    sigma = (expected * (1 - expected) / DRAWS).sqrt()
    assert ((frequencies - expected).abs() <= 5 * sigma + 1e-12).all(), (frequencies, expected)
    assert frequencies[3] == 0.0  # probability exactly 0: never drawn


def test_each_row_is_sampled_from_its_own_distribution():
    logits = torch.full((3, 18), -50.0)
    logits[0, 4] = logits[1, 17] = logits[2, 0] = 50.0  # each row all but certain of one action
    actions, _ = select_action(logits, "sample", torch.Generator().manual_seed(1))
    assert actions.tolist() == [4, 17, 0]


def test_actions_stay_in_range_even_when_the_draw_exceeds_the_rounded_total(monkeypatch):
    """torch.rand can return 1 - 2^-24; a float32 cumsum of probabilities can end below it."""
    largest_draw = torch.tensor(1.0).nextafter(torch.tensor(0.0))
    short = next(row for row in torch.randn(2000, 18, generator=torch.Generator().manual_seed(0)) * 3
                 if torch.softmax(row, 0).cumsum(0)[-1] < largest_draw)
    monkeypatch.setattr(torch, "rand", lambda *size, **kwargs: torch.full(size, largest_draw.item()))
    actions, _ = select_action(short.unsqueeze(0), "sample", torch.Generator())
    assert actions.tolist() == [17]  # the last action, not an index past the end


def test_the_same_seed_draws_the_same_actions():
    logits = torch.randn(8, 18, generator=torch.Generator().manual_seed(3))
    first, _ = select_action(logits, "sample", torch.Generator().manual_seed(4))
    second, _ = select_action(logits, "sample", torch.Generator().manual_seed(4))
    assert torch.equal(first, second)


def test_greedy_takes_the_most_probable_action():
    logits = torch.tensor([[0.0, 3.0, 1.0], [5.0, -1.0, 4.9]])
    actions, _ = select_action(logits, "greedy", torch.Generator())
    assert actions.tolist() == [1, 0]
