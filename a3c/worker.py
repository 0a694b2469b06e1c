"""One A3C worker: play a rollout, compute gradients by hand, update the shared network.

Runs in its own process. Messages to the main process go through ``queue`` as tuples:
  ("episode", rank, global_step, raw_return, length)
  ("update", rank, global_step, policy_loss, value_loss, entropy, grad_norm, lr, skipped)
  ("error", rank, traceback_text)
"""
from __future__ import annotations

import multiprocessing
import signal
import traceback
from dataclasses import dataclass

import torch

from a3c.config import Config
from a3c.envs import ObsNormalizer, make_env
from a3c.evaluate import select_action
from a3c.loss import a3c_loss
from a3c.model import ActorCritic
from a3c.optim import SharedOptimizer, annealed_lr


@dataclass
class SharedState:
    """Everything the workers share with the main process (picklable to children)."""

    model: ActorCritic
    optimizer: SharedOptimizer
    steps: torch.Tensor  # (slots,) int64: agent steps per worker slot, plus a resume offset
    obs_norm: torch.Tensor  # (workers, 3) float64: each worker's normaliser state
    stop: object  # multiprocessing.Event

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
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    try:
        Worker(rank, config, shared, queue, restart).run()
    except Exception:  # noqa: BLE001 - anything a worker hits is reported, then the process ends
        queue.put(("error", rank, traceback.format_exc()[-3000:]))  # small: atomic pipe write
        raise SystemExit(1)


class Worker:
    def __init__(self, rank: int, config: Config, shared: SharedState, queue, restart: int = 0) -> None:
        self.rank, self.config, self.shared, self.queue = rank, config, shared, queue
        self.normalizer = ObsNormalizer()
        if shared.obs_norm[rank, 2] > 0:
            self.normalizer.load_state(shared.obs_norm[rank].tolist())
        self.env = make_env(config.env_id, seed=config.seed + rank, normalizer=self.normalizer)
        self.seed = config.seed + rank + 1000 * restart  # a restarted worker plays new games
        self.model = ActorCritic(int(self.env.action_space.n), forget_bias=config.forget_bias)
        self.rng = torch.Generator().manual_seed(self.seed)

    def run(self) -> None:
        config, shared = self.config, self.shared
        obs, _ = self.env.reset(seed=self.seed)
        state = self.model.initial_state(1)
        episode_return, episode_length = 0.0, 0
        while not shared.should_stop() and shared.global_step < config.total_steps:
            self.model.copy_from(shared.model)
            self.model.zero_grad()
            rewards, dones, actions, logits_seq, values_seq = [], [], [], [], []
            done = False
            for _ in range(config.num_steps):
                if shared.stop.is_set():  # stop promptly; a partial rollout is not learned from
                    return
                frame = torch.from_numpy(obs).unsqueeze(0)
                logits, value, state = self.model.step(frame, state, record=True)
                action, _ = select_action(logits, "sample", self.rng)
                obs, reward, terminated, truncated, info = self.env.step(action)
                done = terminated or truncated
                episode_return += info["raw_reward"]
                episode_length += 1
                actions.append(action)
                rewards.append(reward)
                dones.append(float(terminated))  # a time limit is not a terminal: bootstrap below
                logits_seq.append(logits)
                values_seq.append(value)
                if done:
                    break
            steps_taken = len(actions)
            shared.steps[self.rank] += steps_taken
            global_step = shared.global_step
            if dones[-1]:
                bootstrap = torch.zeros(1)  # V(s_T) = 0 after a terminal
            else:
                _, bootstrap_value, _ = self.model.step(torch.from_numpy(obs).unsqueeze(0), state)
                bootstrap = bootstrap_value.view(1)
            if done:
                self.queue.put(("episode", self.rank, global_step, episode_return, episode_length))
                episode_return, episode_length = 0.0, 0
                obs, _ = self.env.reset()
                state = self.model.initial_state(1)
            self._learn(logits_seq, values_seq, actions, rewards, dones, bootstrap, global_step)
            shared.obs_norm[self.rank] = torch.tensor(self.normalizer.state(), dtype=torch.float64)

    def _learn(self, logits_seq, values_seq, actions, rewards, dones, bootstrap, global_step) -> None:
        config = self.config
        terms = a3c_loss(
            torch.stack(logits_seq), torch.stack(values_seq),
            torch.tensor(actions).view(-1, 1), torch.tensor(rewards, dtype=torch.float32).view(-1, 1),
            torch.tensor(dones).view(-1, 1), bootstrap,
            gamma=config.gamma, gae_lambda=config.gae_lambda,
            entropy_coef=config.entropy_coef, value_loss_coef=config.value_loss_coef,
        )
        self.model.backward(terms.grad_logits, terms.grad_values)
        grads = [p.grad for p in self.model.parameters()]
        lr = annealed_lr(config.lr, global_step, config.total_steps, config.lr_anneal)
        grad_norm, applied = self.shared.optimizer.clip_and_step(grads, config.max_grad_norm, lr, self.rank)
        self.queue.put(("update", self.rank, global_step, terms.policy, terms.value, terms.entropy,
                        grad_norm, lr, not applied))
