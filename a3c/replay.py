"""A worker's memory of its last rollouts, replayed off-policy with V-trace (``replay_ratio``).

A3C learns from each rollout once; the DQN-style agents the issue compares against
learn from each step about eight times, out of a replay memory. This memory keeps a
worker's last ``capacity`` rollouts whole, with what playing one again through newer
weights needs: each step's view and the one after the last (for the bootstrap), the
restart masks the LSTM saw, the state it started from, the actions, the rewards and done
flags it learnt from (a time limit's bootstrap included, as played), and the log
probability the playing policy gave each action, mu(a_t|s_t), which V-trace's ratios
need (a3c.loss), and each step's action and reward before (the core's input with
``action_reward_input``). A drawn rollout is replayed from its start state as it was played, so
the LSTM sees the river as it did.

Views are kept in half precision, as the self-imitation memory keeps them (the
normalised frames lose ~3 decimal digits, the memory half its size). The memory lives in
its worker's process and is not saved: a resumed or restarted worker starts empty.
Rollouts of different batch sizes (the early update's and the run's own) can sit side
by side: each is replayed on its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StoredRollout:
    """One rollout of T steps in B games."""

    frames: torch.Tensor  # (T + 1, B, C, S, S): each step's view, then the view after the last step
    masks: torch.Tensor  # (T + 1, B, 1): 0 where a game restarted before that step (its state zeroed)
    start_h: torch.Tensor  # (B, H): the LSTM state the rollout started from
    start_c: torch.Tensor  # (B, H)
    actions: torch.Tensor  # (T, B) int64
    rewards: torch.Tensor  # (T, B): the rewards learnt from
    dones: torch.Tensor  # (T, B): 1 where the returns stop after the step
    behaviour_log_probs: torch.Tensor  # (T, B): log mu(a_t|s_t) of the policy that played
    previous: torch.Tensor  # (T + 1, B, A + 1): each step's action and reward before (a3c.model.action_reward_inputs)

    def to(self, dtype: torch.dtype) -> "StoredRollout":
        """Every floating tensor in ``dtype`` (the actions stay int64)."""
        return StoredRollout(*(tensor if tensor.dtype == torch.int64 else tensor.to(dtype)
                               for tensor in vars(self).values()))


class RolloutReplay:
    """A ring of the last ``capacity`` rollouts; ``sample`` draws one uniformly."""

    def __init__(self, capacity: int, frame_dtype: torch.dtype = torch.float16) -> None:
        if capacity < 1:
            raise ValueError(f"RolloutReplay: capacity must be at least 1, got {capacity}")
        self.capacity, self.frame_dtype = capacity, frame_dtype
        self.rollouts: list[StoredRollout] = []
        self.next = 0  # the slot the next rollout goes to once the ring is full

    def __len__(self) -> int:
        return len(self.rollouts)

    def add(self, frames, final_frames, masks, start_state, actions, rewards, dones, behaviour_log_probs,
            previous) -> None:
        """A played rollout: frames (T, B, C, S, S) and final_frames (B, C, S, S), the view
        after its last step; masks, a list of T + 1 (B, 1) restart masks or None (no game
        restarted before that step; the last is the bootstrap's); start_state (h, c); actions,
        rewards, dones and behaviour_log_probs (T, B); previous (T + 1, B, A + 1), each
        step's action and reward before, the bootstrap's last. Everything is copied: the worker
        reuses its buffers."""
        steps, batch = frames.shape[:2]
        ones = torch.ones(batch, 1, dtype=rewards.dtype)
        # the views written straight into their half-precision copy: a full-precision one in
        # between would leave a hole twice its size in the heap each time, which the next
        # stored views only half fill (measured: ~4.4 MB per kept 2.4 MB rollout at 84x84)
        views = torch.empty((steps + 1, *frames.shape[1:]), dtype=self.frame_dtype)
        views[:steps].copy_(frames)
        views[steps].copy_(final_frames)
        rollout = StoredRollout(
            frames=views,
            masks=torch.stack([ones if mask is None else mask.to(rewards.dtype) for mask in masks]),
            start_h=start_state[0].clone(), start_c=start_state[1].clone(),
            actions=actions.clone(), rewards=rewards.clone(), dones=dones.clone(),
            behaviour_log_probs=behaviour_log_probs.clone(), previous=previous.to(rewards.dtype, copy=True))
        if len(self.rollouts) < self.capacity:
            self.rollouts.append(rollout)
        else:  # the oldest goes
            self.rollouts[self.next] = rollout
            self.next = (self.next + 1) % self.capacity

    def sample(self, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> StoredRollout:
        """One stored rollout, drawn uniformly, its floating tensors in ``dtype``."""
        if not self.rollouts:
            raise ValueError("RolloutReplay: nothing stored to sample from")
        index = int(torch.randint(len(self.rollouts), (1,), generator=generator))
        return self.rollouts[index].to(dtype)
