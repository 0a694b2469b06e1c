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

It lives in its worker's process and is not saved: a resumed or restarted worker starts
with an empty memory.
"""
from __future__ import annotations

from collections import deque

import torch


class SelfImitationMemory:
    def __init__(self, capacity: int, games: int, frame_shape: tuple[int, ...], hidden_size: int,
                 gamma: float, frame_dtype: torch.dtype = torch.float16,
                 state_dtype: torch.dtype = torch.float32) -> None:
        if capacity < 1 or games < 1:
            raise ValueError(f"SelfImitationMemory: capacity and games must be at least 1, got {capacity}, {games}")
        self.capacity, self.gamma = capacity, gamma
        # views in half precision: the normalised frames lose ~3 decimal digits, the memory half its size
        self.frames = torch.zeros(capacity, *frame_shape, dtype=frame_dtype)
        self.h = torch.zeros(capacity, hidden_size, dtype=state_dtype)
        self.c = torch.zeros(capacity, hidden_size, dtype=state_dtype)
        self.actions = torch.zeros(capacity, dtype=torch.int64)
        self.returns = torch.zeros(capacity, dtype=torch.float64)
        self.size, self.next = 0, 0  # steps held; where the next one goes
        # steps of each game's current life, oldest first: (frame, h, c, action, reward, value);
        # a life longer than the memory drops its oldest steps (their returns need only later rewards)
        self.pending: list[deque] = [deque(maxlen=capacity) for _ in range(games)]

    def __len__(self) -> int:
        return self.size

    def add_rollout(self, frames, h, c, actions, rewards, values, dones) -> int:
        """A rollout of T steps in B games: frames (T, B, C, S, S), the LSTM state each step
        started from h, c (T, B, H) (already zeroed where an episode restarted), actions,
        rewards, values and dones (T, B) (done: the returns stop after this step). Returns
        the number of steps kept."""
        kept = 0
        for t in range(frames.shape[0]):
            for game, waiting in enumerate(self.pending):
                waiting.append((frames[t, game].to(self.frames.dtype, copy=True), h[t, game].clone(), c[t, game].clone(),
                                int(actions[t, game]), float(rewards[t, game]), float(values[t, game])))
                if dones[t, game]:
                    kept += self._end_life(game)
        return kept

    def _end_life(self, game: int) -> int:
        steps, self.pending[game] = self.pending[game], deque(maxlen=self.capacity)
        kept, ret = 0, 0.0
        for frame, h, c, action, reward, value in reversed(steps):
            ret = reward + self.gamma * ret
            if ret > value:
                self._store(frame, h, c, action, ret)
                kept += 1
        return kept

    def _store(self, frame, h, c, action: int, ret: float) -> None:
        k = self.next
        self.frames[k], self.h[k], self.c[k] = frame, h, c
        self.actions[k], self.returns[k] = action, ret
        self.next = (k + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch: int, generator: torch.Generator, dtype: torch.dtype = torch.float32):
        """``batch`` kept steps drawn uniformly (with replacement): frames (batch, C, S, S),
        the LSTM state (h, c), actions and returns; ``dtype`` for the network's inputs."""
        if self.size == 0:
            raise ValueError("SelfImitationMemory: nothing to sample yet")
        rows = torch.randint(0, self.size, (batch,), generator=generator)
        return (self.frames[rows].to(dtype), (self.h[rows].to(dtype), self.c[rows].to(dtype)),
                self.actions[rows], self.returns[rows].to(dtype))
