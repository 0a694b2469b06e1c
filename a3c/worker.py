"""One A3C worker: play a rollout, compute gradients by hand, update the shared network.

Runs in its own process and plays ``envs_per_worker`` games at once: the network runs
on the batch of their frames, each game keeps its own LSTM state (zeroed by a mask when
its episode restarts), and one update covers the T x B rollout. Messages to the main
process go through ``queue`` as tuples:
  ("episode", rank, env_index, global_step, raw_return, length)
  ("update", rank, global_step, policy_loss, value_loss, entropy, grad_norm, lr, skipped)
  ("error", rank, traceback_text)
"""
from __future__ import annotations

import multiprocessing
import signal
import time
import traceback
from dataclasses import dataclass

import numpy as np
import torch

from a3c.config import Config
from a3c.envs import ObsNormalizer, make_vector_env
from a3c.evaluate import select_action
from a3c.loss import a3c_loss
from a3c.memory import keep_freed_memory
from a3c.model import ActorCritic
from a3c.optim import SharedOptimizer, annealed_lr


PHASES = ("env", "forward", "backward", "optimizer")
"""Where a worker's time goes, per update: stepping the games (preprocessing included),
the network's forward steps and action sampling, the loss and backward, and clipping,
the shared optimizer step and pulling the new weights."""


def time_split(timings: torch.Tensor) -> dict[str, float]:
    """Milliseconds per update in each phase, averaged over the workers' rows of ``timings``."""
    totals = timings.sum(0)
    updates = max(float(totals[-1]), 1.0)
    return {phase: 1e3 * float(totals[k]) / updates for k, phase in enumerate(PHASES)}


@dataclass
class SharedState:
    """Everything the workers share with the main process (picklable to children)."""

    model: ActorCritic
    optimizer: SharedOptimizer
    steps: torch.Tensor  # (slots,) int64: agent steps per worker slot, plus a resume offset
    obs_norm: torch.Tensor  # (workers, 3) float64: each worker's normaliser state
    stop: object  # multiprocessing.Event
    timings: torch.Tensor  # (workers, len(PHASES) + 1) float64: seconds per phase, then updates

    @staticmethod
    def timing_table(workers: int) -> torch.Tensor:
        return torch.zeros(workers, len(PHASES) + 1, dtype=torch.float64).share_memory_()

    @property
    def global_step(self) -> int:
        return int(self.steps.sum())

    def should_stop(self) -> bool:
        """Stop requested, or the main process is gone (killed: nobody would stop us)."""
        if self.stop.is_set():
            return True
        parent = multiprocessing.parent_process()
        return parent is not None and not parent.is_alive()


def run_worker(rank: int, config: Config, shared: SharedState, queue, restart: int = 0) -> None:
    """Process entry point: never raises; reports errors on the queue and exits 1."""
    torch.set_num_threads(1)  # one core per worker; also avoids OpenMP trouble in children
    keep_freed_memory()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    try:
        Worker(rank, config, shared, queue, restart).run()
    except Exception:  # noqa: BLE001 - anything a worker hits is reported, then the process ends
        queue.put(("error", rank, traceback.format_exc()[-3000:]))  # small: atomic pipe write
        raise SystemExit(1)


class Worker:
    def __init__(self, rank: int, config: Config, shared: SharedState, queue, restart: int = 0,
                 dtype: torch.dtype = torch.float32) -> None:
        self.rank, self.config, self.shared, self.queue = rank, config, shared, queue
        self.normalizer = ObsNormalizer()
        if shared.obs_norm[rank, 2] > 0:
            self.normalizer.load_state(shared.obs_norm[rank].tolist())
        self.num_envs = batch = config.envs_per_worker
        self.envs = make_vector_env(config.env_id, batch, self.normalizer, config.frame, config.frame_size)
        self.n_actions = int(self.envs.single_action_space.n)
        # game seeds: distinct per worker and env; a restarted worker plays new games
        self.seed = config.seed + 1000 * restart + rank * batch
        self.model = ActorCritic(self.n_actions, frame_size=config.frame_size, forget_bias=config.forget_bias, dtype=dtype)
        self.rng = torch.Generator().manual_seed(self.seed)
        steps = config.num_steps
        # rollout buffers, reused by every update (the layers' records point into frames
        # until the backward has consumed them)
        self.frames = torch.zeros(steps, batch, 1, config.frame_size, config.frame_size, dtype=dtype)
        self.logits = torch.zeros(steps, batch, self.n_actions, dtype=dtype)
        self.values = torch.zeros(steps, batch, 1, dtype=dtype)
        self.actions = torch.zeros(steps, batch, dtype=torch.int64)
        self.rewards = torch.zeros(steps, batch, dtype=dtype)
        self.dones = torch.zeros(steps, batch, dtype=dtype)  # 1 where the episode ended at this step
        self.timings = shared.timings[rank]
        self.clock = [0.0] * len(PHASES)  # this update's seconds per phase, added to timings once

    def run(self) -> None:
        config, shared = self.config, self.shared
        obs, _ = self.envs.reset(seed=[self.seed + k for k in range(self.num_envs)])
        state = self.model.initial_state(self.num_envs)
        restart_mask = None  # (B, 1): 0 for games whose episode starts at the next step
        while not shared.should_stop() and shared.global_step < config.total_steps:
            started = time.perf_counter()
            self.model.copy_from(shared.model)
            self.clock[3] += time.perf_counter() - started
            rollout = self.collect(obs, state, restart_mask)
            if rollout is None:  # stop requested mid-rollout: a partial rollout is not learned from
                return
            obs, state, restart_mask, bootstrap = rollout
            shared.steps[self.rank] += self.config.num_steps * self.num_envs
            self.learn(bootstrap, shared.global_step)
            shared.obs_norm[self.rank] = torch.tensor(self.normalizer.state(), dtype=torch.float64)

    def collect(self, obs, state, restart_mask):
        """Play num_steps steps in every game, recording the network's forward steps.

        Returns (next obs, LSTM state, restart mask, bootstrap values V(s_T) (B,)), or None
        when a stop is requested.
        """
        model, clock, seconds = self.model, time.perf_counter, self.clock
        for t in range(self.config.num_steps):
            if self.shared.stop.is_set():
                return None
            started = clock()
            frames = self.frames[t]
            frames.copy_(torch.from_numpy(obs))
            logits, values, state = model.step(frames, state, restart_mask, record=True)
            actions, _ = select_action(logits, "sample", self.rng)
            self.logits[t], self.values[t], self.actions[t] = logits, values, actions
            stepped = clock()
            obs, rewards, terminated, truncated, info = self.envs.step(actions.numpy())
            seconds[1] += stepped - started
            seconds[0] += clock() - stepped
            self.rewards[t] = torch.from_numpy(rewards)
            self.dones[t] = torch.from_numpy(terminated)
            ended = terminated | truncated
            if ended.any():
                self._end_episodes(t, ended, truncated & ~terminated, info, state)
                restart_mask = torch.from_numpy(~ended).to(self.frames.dtype).unsqueeze(1)
            else:
                restart_mask = None
        started = clock()
        _, bootstrap, _ = model.step(torch.from_numpy(obs).to(self.frames.dtype), state, restart_mask)
        seconds[1] += clock() - started
        return obs, state, restart_mask, bootstrap.view(-1)

    def _end_episodes(self, t, ended, cut, info, state) -> None:
        """Report finished games; bootstrap the ones cut by a time limit.

        A game cut short (truncated, not terminated) still has a future: its last reward
        gets gamma V(final obs), computed with that game's LSTM state, and the step is then
        treated as an end, so the return is r + gamma V(s') as if the rollout had stopped there.
        """
        stats = info["final_info"]["episode"]
        step = self.shared.global_step
        for env_index in ended.nonzero()[0]:
            self.queue.put(("episode", self.rank, int(env_index), step, float(stats["r"][env_index]),
                            int(stats["l"][env_index])))
        if cut.any():
            rows = torch.from_numpy(cut.nonzero()[0])
            final = np.stack(info["final_obs"][cut])  # gymnasium gives an object array of frames
            final = torch.from_numpy(final).to(self.frames.dtype)
            _, final_values, _ = self.model.step(final, (state[0][rows], state[1][rows]))
            self.rewards[t, rows] += self.config.gamma * final_values.view(-1)
            self.dones[t, rows] = 1.0

    def learn(self, bootstrap: torch.Tensor, global_step: int) -> None:
        """Gradients of the rollout's loss, clipped and applied to the shared network."""
        config, clock = self.config, time.perf_counter
        started = clock()
        grads, (policy, value, entropy) = self.gradients(bootstrap)
        mid = clock()
        lr = annealed_lr(config.lr, global_step, config.total_steps, config.lr_anneal)
        grad_norm, applied = self.shared.optimizer.clip_and_step(grads, config.max_grad_norm, lr, self.rank)
        self.model.zero_grad()
        self.clock[2] += mid - started
        self.clock[3] += clock() - mid
        self.timings += torch.tensor([*self.clock, 1.0], dtype=torch.float64)  # one shared write per update
        self.clock = [0.0] * len(PHASES)
        self.queue.put(("update", self.rank, global_step, policy, value, entropy, grad_norm, lr, not applied))

    def gradients(self, bootstrap: torch.Tensor) -> tuple[list[torch.Tensor], tuple[float, float, float]]:
        """d(loss)/d(parameters) of the recorded rollout, by hand; and the (policy, value,
        entropy) sums for the logs."""
        config = self.config
        terms = a3c_loss(
            self.logits, self.values, self.actions, self.rewards, self.dones, bootstrap,
            gamma=config.gamma, gae_lambda=config.gae_lambda,
            entropy_coef=config.entropy_coef, value_loss_coef=config.value_loss_coef,
        )
        self.model.backward(terms.grad_logits, terms.grad_values)
        return [p.grad for p in self.model.parameters()], (terms.policy, terms.value, terms.entropy)
