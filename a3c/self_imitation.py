"""A worker's memory of its good steps, for self-imitation (Oh et al. 2018).

Each game's steps wait until their life ends (a lost life with ``life_loss_ends_returns``,
the episode's end, a time limit): then every step gets its return, the discounted sum
of the rewards the A3C update used from that step to the end, and the steps whose return
beat the value the network gave them when they were played are kept. The others would
give no gradient now either unless the value has since fallen, so keeping only these
spends the memory on what can be imitated (the paper prioritises by the same gap). A
kept step holds what one forward step needs: the view, the LSTM state it started from
(so the network sees it with its memory of the river, as when it was played), the
action taken and the return. The memory is a ring: the oldest step goes first.

The steps waiting for their life's end hold at most ``capacity`` in all (each game its
share): a longer life keeps only its last steps, whose returns need only later rewards.
The memory lives in its worker's process and is not saved: a resumed or restarted worker
starts with an empty one.
"""
from __future__ import annotations

from collections import deque

import torch


class SelfImitationMemory:
    def __init__(self, capacity: int, frame_shape: tuple[int, ...], hidden_size: int, gamma: float,
                 frame_dtype: torch.dtype = torch.float16, state_dtype: torch.dtype = torch.float32) -> None:
        if capacity < 1:
            raise ValueError(f"SelfImitationMemory: capacity must be at least 1, got {capacity}")
        self.capacity, self.gamma = capacity, gamma
        # views in half precision: the normalised frames lose ~3 decimal digits, the memory half its size
        self.frames = torch.zeros(capacity, *frame_shape, dtype=frame_dtype)
        self.h = torch.zeros(capacity, hidden_size, dtype=state_dtype)
        self.c = torch.zeros(capacity, hidden_size, dtype=state_dtype)
        self.actions = torch.zeros(capacity, dtype=torch.int64)
        self.returns = torch.zeros(capacity, dtype=torch.float64)
        self.size, self.next = 0, 0  # steps held; where the next one goes
        self.start_games(1)

    def __len__(self) -> int:
        return self.size

    def start_games(self, games: int) -> None:
        """A new set of ``games`` (a worker's start, or its switch from the early update's
        games): the kept steps stay, the old games' waiting steps go with their games."""
        # per game, its current life's steps in pieces of a rollout each, oldest first:
        # (frames, h, c, actions, rewards, values)
        self.pending: list[deque] = [deque() for _ in range(games)]
        self.waiting = [0] * games  # steps each game has waiting
        self.waiting_limit = max(1, self.capacity // games)

    def add_rollout(self, frames, h, c, actions, rewards, values, dones) -> int:
        """A rollout of T steps in B games: frames (T, B, C, S, S), the LSTM state each step
        started from h, c (T, B, H) (already zeroed where an episode restarted), actions,
        rewards, values and dones (T, B) (done: the returns stop after this step). Returns
        the number of steps kept."""
        steps, kept = frames.shape[0], 0
        for game in range(len(self.pending)):
            first = 0
            for last in [*dones[:, game].nonzero().flatten().tolist(), None]:
                end = steps if last is None else last + 1
                if end > first:
                    self._wait(game, slice(first, end), frames, h, c, actions, rewards, values)
                if last is not None:
                    kept += self._end_life(game)
                first = end
        return kept

    def _wait(self, game: int, rows: slice, frames, h, c, actions, rewards, values) -> None:
        self.pending[game].append((frames[rows, game].to(self.frames.dtype, copy=True),
                                   h[rows, game].to(self.h.dtype, copy=True), c[rows, game].to(self.c.dtype, copy=True),
                                   actions[rows, game].clone(), rewards[rows, game].to(torch.float64, copy=True),
                                   values[rows, game].to(torch.float64, copy=True)))
        self.waiting[game] += rows.stop - rows.start
        excess, waiting = self.waiting[game] - self.waiting_limit, self.pending[game]
        while excess > 0:  # the oldest steps of a life longer than this game's share go
            oldest = len(waiting[0][0])
            if oldest <= excess:
                waiting.popleft()
            else:
                waiting[0] = tuple(part[excess:] for part in waiting[0])
            dropped = min(oldest, excess)
            self.waiting[game] -= dropped
            excess -= dropped

    def _end_life(self, game: int) -> int:
        frames, h, c, actions, rewards, values = (torch.cat(part) for part in zip(*self.pending[game]))
        self.pending[game].clear()
        self.waiting[game] = 0
        returns, ret = [0.0] * len(rewards), 0.0
        for k, reward in zip(range(len(rewards) - 1, -1, -1), reversed(rewards.tolist())):
            ret = reward + self.gamma * ret
            returns[k] = ret
        returns = torch.tensor(returns, dtype=torch.float64)
        # a comparison with NaN is false: a non-finite return is never kept, nor a non-finite state
        keep = ((returns > values) & torch.isfinite(h).all(1) & torch.isfinite(c).all(1)).nonzero().flatten()
        self._store(frames[keep], h[keep], c[keep], actions[keep], returns[keep])
        return len(keep)

    def _store(self, frames, h, c, actions, returns) -> None:
        """Steps in order into the ring, over its oldest (a life's waiting steps, and so its
        kept ones, never outnumber the ring)."""
        count = len(returns)
        rows = (self.next + torch.arange(count)) % self.capacity
        self.frames[rows], self.h[rows], self.c[rows] = frames, h, c
        self.actions[rows], self.returns[rows] = actions, returns
        self.next = (self.next + count) % self.capacity
        self.size = min(self.size + count, self.capacity)

    def sample(self, batch: int, generator: torch.Generator, dtype: torch.dtype = torch.float32):
        """``batch`` kept steps drawn uniformly (with replacement): frames (batch, C, S, S),
        the LSTM state (h, c), actions and returns; ``dtype`` for the network's inputs."""
        if self.size == 0:
            raise ValueError("SelfImitationMemory: nothing to sample yet")
        rows = torch.randint(0, self.size, (batch,), generator=generator)
        return (self.frames[rows].to(dtype), (self.h[rows].to(dtype), self.c[rows].to(dtype)),
                self.actions[rows], self.returns[rows].to(dtype))
