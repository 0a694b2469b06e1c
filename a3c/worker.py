"""One A3C worker: play a rollout, compute gradients by hand, update the global network.

A worker plays ``envs_per_worker`` games at once: the network runs on the batch of
their frames, each game keeps its own LSTM state (zeroed by a mask when its episode
restarts), and one update covers the T x B rollout; with ``epochs`` > 1 the rollout is
replayed with newer global weights for further, PPO-clipped updates; with ``sil_batch``
each rollout's first update also learns from a batch of the worker's past steps that did
better than the network expected (self-imitation, a3c.self_imitation); with
``pixel_control`` each rollout's own update also learns UNREAL's pixel-control task
(a3c.pixel_control) from the rollout's views; with ``replay_ratio`` each rollout goes into a memory of the worker's last rollouts and is
followed by that many updates on rollouts drawn from it, played again through the global
weights of the moment and corrected for the policy that played them with V-trace
(a3c.replay, a3c.loss). With ``action_reward_input`` the network also reads each
step's action and learnt reward before, which the worker keeps per step for replays. With ``early_steps``
the run starts with a smaller update (fewer games, shorter rollouts), then the worker
starts its full number of games. It reaches the
global network through a :class:`Link` that its backend provides (shared memory on this
machine, a parameter server on Ray), so this loop is the same everywhere.
"""
from __future__ import annotations

import math
import time
from typing import Protocol

import numpy as np
import torch

from a3c.config import Config
from a3c.envs import ObsNormalizer, make_vector_env
from a3c.loss import (a3c_loss, rollout_targets, self_imitation_loss, surrogate_loss, taken_log_probs,
                      vtrace_targets)
from a3c.messages import EpisodeEnded, UpdateDone
from a3c.model import ActorCritic, action_reward_inputs, network_settings
from a3c.optim import clip_grad_norm
from a3c.pixel_control import pixel_change_rewards, pixel_control_loss
from a3c.policy import select_action
from a3c.replay import RolloutReplay, StoredRollout
from a3c.self_imitation import SelfImitationMemory
from a3c.shared import PHASES


MEMORY_SEED_OFFSET = 1_000_003  # past any game seed's offsets (1000 per set of games, rank x games)
REPLAY_SEED_OFFSET = 2_000_003  # the rollout memory's draws: a stream of their own too


class Link(Protocol):
    """A worker's connection to the global network and to the training loop."""

    @property
    def global_step(self) -> int:
        """Agent steps of the whole run, as far as this worker knows."""

    def saved_obs_norm(self) -> list[float] | None:
        """The normaliser state [mean, std, count] this worker slot had, if any."""

    def pull(self, model: ActorCritic) -> None:
        """Copy the global weights into ``model``."""

    def push(self, grads: list[torch.Tensor] | None, steps: int, obs_norm: list[float],
             timings: torch.Tensor) -> None:
        """Apply ``grads`` (clipped; None for a skipped update) to the global network and
        record the ``steps`` played, the normaliser state and the phase timings."""

    def report(self, message) -> None:
        """Send a message (a3c.messages) to the training loop."""

    def stop_requested(self) -> bool:
        """Cheap check, made every step."""

    def should_stop(self) -> bool:
        """Stop requested or the run is gone: checked once per rollout and before each replay."""


class Worker:
    def __init__(self, rank: int, config: Config, link: Link, restart: int = 0,
                 dtype: torch.dtype = torch.float32) -> None:
        self.rank, self.link, self.restart, self.dtype = rank, link, restart, dtype
        self.run_config = config  # config is the update of the moment (early_steps), run_config the whole run's
        self.normalizer = ObsNormalizer()
        saved = link.saved_obs_norm()
        if saved is not None:
            self.normalizer.load_state(saved)
        self.memory = None  # kept across the early update's switch: only its waiting steps go with the games
        if config.sil_batch:
            self.memory = SelfImitationMemory(config.sil_capacity, (config.frame_stack, config.frame_size,
                                                                    config.frame_size),
                                              config.hidden_size, config.gamma, state_dtype=dtype)
        # kept across the early update's switch too: each stored rollout replays on its own
        self.replay = RolloutReplay(config.replay_capacity) if config.replay_ratio else None
        self.start_games(config.update_at(link.global_step))
        self.model = ActorCritic(self.n_actions, **network_settings(config), forget_bias=config.forget_bias,
                                 dtype=dtype)
        self.rng = torch.Generator().manual_seed(self.seed)
        # the memory's draws have their own stream: turning self-imitation on leaves the actions' alone
        self.draws = torch.Generator().manual_seed(self.seed + MEMORY_SEED_OFFSET)
        self.replay_draws = torch.Generator().manual_seed(self.seed + REPLAY_SEED_OFFSET)
        self.clock = [0.0] * len(PHASES)  # this update's seconds per phase, pushed once per update

    def start_games(self, config: Config) -> None:
        """New games and rollout buffers for ``config``'s update (envs_per_worker x num_steps)."""
        self.config = config
        self.num_envs = batch = config.envs_per_worker
        self.envs = make_vector_env(config.env_id, batch, config.frame, config.frame_size, config.reward_scale,
                                    config.reward_clip, config.frame_stack)
        self.n_actions = int(self.envs.single_action_space.n)
        # game seeds: distinct per worker and env; each new set of games a worker starts (after a
        # restart, and with early_steps the run's own games after the early ones) gets its own
        sets = 2 * self.restart + (config is self.run_config) if self.run_config.early_steps else self.restart
        self.seed = config.seed + 1000 * sets + self.rank * batch
        steps, side, dtype = config.num_steps, config.frame_size, self.dtype
        # rollout buffers, reused by every update (the layers' records point into frames
        # until the backward has consumed them)
        self.frames = torch.zeros(steps, batch, config.frame_stack, side, side, dtype=dtype)
        self.logits = torch.zeros(steps, batch, self.n_actions, dtype=dtype)
        self.values = torch.zeros(steps, batch, 1, dtype=dtype)
        self.actions = torch.zeros(steps, batch, dtype=torch.int64)
        self.rewards = torch.zeros(steps, batch, dtype=dtype)
        self.dones = torch.zeros(steps, batch, dtype=dtype)  # 1 where the episode ended at this step
        # each step's action and reward before (the core's input with action_reward_input), then
        # the bootstrap's; kept for every network: a few numbers per game
        self.previous = torch.zeros(steps + 1, batch, self.n_actions + 1, dtype=dtype)
        # what a replay of the rollout needs: the LSTM state it started from, each step's mask
        self.start_state = None
        self.masks: list[torch.Tensor | None] = [None] * steps
        self.final_obs, self.final_mask = None, None  # the view after the last step and its mask (the bootstrap's)
        self.final_hidden = None  # the core's output at that view (pixel control's bootstrap)
        self.last_views: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # step -> (games that ended, their last views)
        self.lives: np.ndarray | None = None  # each game's lives at the last step (ALE's info["lives"])
        if self.memory is not None:  # the LSTM state each step started from, for the memory
            self.step_h = torch.zeros(steps, batch, config.hidden_size, dtype=dtype)
            self.step_c = torch.zeros(steps, batch, config.hidden_size, dtype=dtype)
            self.memory.start_games(batch)

    def reset_games(self):
        """Every game from its start: (normalised frames, fresh LSTM state, no restart mask)."""
        obs, info = self.envs.reset(seed=[self.seed + k for k in range(self.num_envs)])
        self.lives = info.get("lives")
        self.previous[self.config.num_steps].zero_()  # the next rollout's first step: none before
        return self.normalizer.normalize_batch(obs), self.model.initial_state(self.num_envs), None

    def run(self) -> None:
        link, total_steps = self.link, self.run_config.total_steps
        obs, state, restart_mask = self.reset_games()
        while not link.should_stop() and link.global_step < total_steps:
            if self.config is not self.run_config and link.global_step >= self.run_config.early_steps:
                # the early update is over: the games in play are left unfinished (never
                # reported) and the run's own number of games starts
                self.envs.close()
                self.start_games(self.run_config)
                obs, state, restart_mask = self.reset_games()
            self._pull()
            rollout = self.collect(obs, state, restart_mask)
            if rollout is None:  # stop requested mid-rollout: a partial rollout is not learned from
                return
            obs, state, restart_mask, bootstrap = rollout
            self.learn(bootstrap)

    def collect(self, obs, state, restart_mask):
        """Play num_steps steps in every game, recording the network's forward steps.

        Returns (next obs, LSTM state, restart mask, bootstrap values V(s_T) (B,)), or None
        when a stop is requested.
        """
        model, clock, seconds = self.model, time.perf_counter, self.clock
        self.start_state = state
        self.last_views = {}
        steps = self.config.num_steps
        self.previous[0] = self.previous[steps]  # the last rollout's bootstrap step is this one's first
        for t in range(self.config.num_steps):
            if self.link.stop_requested():
                return None
            started = clock()
            frames = self.frames[t]
            frames.copy_(torch.from_numpy(obs))
            self.masks[t] = restart_mask
            if self.memory is not None:
                self._keep_state(t, state, restart_mask)
            logits, values, state = model.step(frames, state, restart_mask, previous=self.previous[t], record=True)
            actions, _ = select_action(logits, "sample", self.rng)
            self.logits[t], self.values[t], self.actions[t] = logits, values, actions
            stepped = clock()
            obs, rewards, terminated, truncated, info = self.envs.step(actions.numpy())
            ended = terminated | truncated
            obs = self.normalizer.normalize_batch(obs, ended, info.get("final_obs"))
            if self.config.pixel_control and ended.any():  # the view each ended game showed last (normalised)
                last = np.stack(info["final_obs"][ended])[:, -1]
                self.last_views[t] = (torch.from_numpy(ended.nonzero()[0]), torch.from_numpy(last).to(self.frames.dtype))
            seconds[1] += stepped - started
            seconds[0] += clock() - stepped
            self.rewards[t] = torch.from_numpy(rewards)
            self.previous[t + 1] = action_reward_inputs(actions, self.rewards[t], self.n_actions)
            lost = self._lives_lost(info, ended)
            ends_returns = lost is not None and self.config.life_loss_ends_returns
            self.dones[t] = torch.from_numpy(terminated | lost if ends_returns else terminated)
            if ended.any():
                self._end_episodes(t, ended, truncated & ~terminated, info, state)
            restarts = ended | lost if lost is not None and self.config.life_loss_resets_state else ended
            restart_mask = torch.from_numpy(~restarts).to(self.frames.dtype).unsqueeze(1) if restarts.any() else None
        started = clock()
        self.final_obs, self.final_mask = torch.from_numpy(obs).to(self.frames.dtype), restart_mask
        _, bootstrap, _ = model.step(self.final_obs, state, restart_mask, previous=self.previous[steps])
        if self.config.pixel_control:
            self.final_hidden = model.last_hidden
        seconds[1] += clock() - started
        return obs, state, restart_mask, bootstrap.view(-1)

    def _keep_state(self, t: int, state, restart_mask) -> None:
        """The LSTM state step t starts from, as the network uses it (zero for a game that restarts)."""
        h, c = state
        if restart_mask is not None:
            h, c = h * restart_mask, c * restart_mask
        self.step_h[t], self.step_c[t] = h, c

    def _lives_lost(self, info, ended) -> np.ndarray | None:
        """Games that lost a life at this step and go on. With life_loss_ends_returns their
        returns and advantages stop there, as at an episode's end; with
        life_loss_resets_state their LSTM starts again from zero; the game carries on. None
        when neither setting is on, or the game reports no lives."""
        lives, previous = info.get("lives"), self.lives
        self.lives = lives
        config = self.config
        if not (config.life_loss_ends_returns or config.life_loss_resets_state) or lives is None or previous is None:
            return None
        return (lives < previous) & ~ended  # an ended game's info already holds its next episode's lives

    def _end_episodes(self, t, ended, cut, info, state) -> None:
        """Report finished games; bootstrap the ones cut by a time limit.

        A game cut short (truncated, not terminated) still has a future: its last reward
        gets gamma V(final obs), computed with that game's LSTM state, and the step is then
        treated as an end, so the return is r + gamma V(s') as if the rollout had stopped there.
        """
        stats = info["final_info"]["episode"]
        step = self.link.global_step
        for env_index in ended.nonzero()[0]:
            self.link.report(EpisodeEnded(self.rank, int(env_index), step, float(stats["r"][env_index]),
                                          int(stats["l"][env_index])))
        if cut.any():
            rows = torch.from_numpy(cut.nonzero()[0])
            final = np.stack(info["final_obs"][cut])  # gymnasium gives an object array of frames
            final = torch.from_numpy(final).to(self.frames.dtype)
            _, final_values, _ = self.model.step(final, (state[0][rows], state[1][rows]),
                                                 previous=self.previous[t + 1][rows])
            self.rewards[t, rows] += self.config.gamma * final_values.view(-1)
            self.dones[t, rows] = 1.0

    def learn(self, bootstrap: torch.Tensor) -> None:
        """Gradients of the rollout's loss, clipped and pushed to the global network; then,
        with ``epochs`` > 1, the replays' updates. A non-finite gradient is never pushed (the
        update is skipped and reported)."""
        started = time.perf_counter()
        grads, terms = self.gradients(bootstrap)
        imitation = self.imitation_gradients() if self.memory is not None else None
        self.clock[2] += time.perf_counter() - started
        self._push(grads, terms, self.config.num_steps * self.num_envs, imitation)
        for _ in range(self.config.epochs - 1):
            if self.link.should_stop():
                return
            self._pull()
            grads, terms = self.replay_gradients(bootstrap)
            self._push(grads, terms, 0)  # the steps were counted with the rollout's first update
        if self.replay is None:
            return
        self.replay.add(self.frames, self.final_obs, [*self.masks, self.final_mask], self.start_state,
                        self.actions, self.rewards, self.dones, taken_log_probs(self.logits, self.actions),
                        self.previous)
        for _ in range(self.config.replay_ratio):
            if self.link.should_stop():
                return
            self._pull()
            grads, terms, cut = self.vtrace_gradients(self.replay.sample(self.replay_draws, self.dtype))
            self._push(grads, terms, 0, replay_cut=cut)

    def _pull(self) -> None:
        """The global weights into the model (timed with the optimizer's phase)."""
        started = time.perf_counter()
        self.link.pull(self.model)
        self.clock[3] += time.perf_counter() - started

    def _played_again(self, frames, state, masks, previous):
        """A rollout's steps played again through the model's current weights, recorded for
        the backward, from the LSTM state it started from, with its restart masks and each
        step's action and reward before -> (logits (T, B, A), values (T, B, 1), the state
        after the last step)."""
        logits, values = [], []
        for t in range(len(frames)):
            step_logits, step_values, state = self.model.step(frames[t], state, masks[t], previous=previous[t],
                                                              record=True)
            logits.append(step_logits)
            values.append(step_values)
        return torch.stack(logits), torch.stack(values), state

    def _push(self, grads: list[torch.Tensor], terms: tuple[float, ...], steps: int,
              imitation: tuple[float, float] | None = None, replay_cut: float = math.nan) -> None:
        config, clock = self.config, time.perf_counter
        started = clock()
        grad_norm = clip_grad_norm(grads, config.max_grad_norm)
        skipped = not math.isfinite(grad_norm)
        self.clock[3] += clock() - started
        timings = torch.tensor([*self.clock, 1.0], dtype=torch.float64)
        pushed = clock()
        self.link.push(None if skipped else grads, steps, self.normalizer.state(), timings)
        self.model.zero_grad()
        self.clock = [0.0, 0.0, 0.0, clock() - pushed]  # the push itself counts in the next update's split
        policy, value, entropy, *pixel = terms  # pixel control's loss, on a rollout's own update with it
        imitation_loss, imitated = imitation or (math.nan, math.nan)
        self.link.report(UpdateDone(self.rank, self.link.global_step, policy, value, entropy, grad_norm, skipped,
                                    imitation_loss, imitated, replay_cut, *pixel))

    def gradients(self, bootstrap: torch.Tensor) -> tuple[list[torch.Tensor], tuple[float, ...]]:
        """d(loss)/d(parameters) of the recorded rollout, by hand; and the (policy, value,
        entropy) sums for the logs, then pixel control's loss with it."""
        config = self.config
        terms = a3c_loss(
            self.logits, self.values, self.actions, self.rewards, self.dones, bootstrap,
            gamma=config.gamma, gae_lambda=config.gae_lambda,
            entropy_coef=config.entropy_coef, value_loss_coef=config.value_loss_coef,
            normalize_advantages=config.normalize_advantages,
        )
        logged = (terms.policy, terms.value, terms.entropy)
        pixel = self.pixel_control_terms() if config.pixel_control else None
        self.model.backward(terms.grad_logits, terms.grad_values, None if pixel is None else pixel.grad_q)
        if pixel is not None:
            logged += (pixel.loss,)
        return [p.grad for p in self.model.parameters()], logged

    def pixel_control_terms(self):
        """Pixel control's loss and dL/dQ on the recorded rollout, bootstrapped from the
        view after its last step."""
        return pixel_control_loss(self.model.recorded_pixel_q(), self.actions, self.pixel_control_rewards(),
                                  self.dones, self.model.pixel_q(self.final_hidden),
                                  gamma=self.config.pixel_control_gamma, coef=self.config.pixel_control_coef)

    def pixel_control_rewards(self) -> torch.Tensor:
        """The recorded rollout's pseudo-rewards (T, N, n, n) from its views: the newest of
        each step's stack, back in the view's own intensities; where a game ended, the
        change to the last view it showed, not to the next game's first."""
        cells = self.model.pixel_cells
        views = torch.cat([self.frames[:, :, -1], self.final_obs[None, :, -1]])
        rewards = pixel_change_rewards(views, cells)
        for t, (games, last) in self.last_views.items():
            rewards[t, games] = pixel_change_rewards(torch.stack([views[t, games], last]), cells)[0]
        return rewards * self.normalizer.scale()

    def imitation_gradients(self) -> tuple[float, float] | None:
        """The rollout's steps into the self-imitation memory (those whose life ended); then,
        once it holds a batch, d(self-imitation loss)/d(parameters) of ``sil_batch`` of its
        steps added into ``.grad`` (after the rollout's own: the update is their sum). Returns
        (the loss's policy term, the share of the batch it imitated), None while filling."""
        config = self.config
        self.memory.add_rollout(self.frames, self.step_h, self.step_c, self.actions, self.rewards,
                                self.values.squeeze(2), self.dones)
        if len(self.memory) < config.sil_batch:
            return None
        frames, state, actions, returns = self.memory.sample(config.sil_batch, self.draws, self.dtype)
        logits, values, _ = self.model.step(frames, state, record=True)
        terms = self_imitation_loss(logits, values, actions, returns, value_coef=config.sil_value_coef,
                                    clip=config.sil_clip)
        self.model.backward(terms.grad_logits, terms.grad_values)
        return terms.policy, terms.imitated / config.sil_batch

    def replay_gradients(self, bootstrap: torch.Tensor) -> tuple[list[torch.Tensor], tuple[float, float, float]]:
        """The rollout played again through the model's current weights, from the LSTM state
        it started from and with its masks: the clipped surrogate's gradients, by hand.

        The targets (returns, advantages) and the old policy stay the rollout's own."""
        config, clock = self.config, time.perf_counter
        started = clock()
        logits, values, _ = self._played_again(self.frames, self.start_state, self.masks, self.previous)
        mid = clock()
        returns, advantages = rollout_targets(self.values, self.rewards, self.dones, bootstrap, gamma=config.gamma,
                                              gae_lambda=config.gae_lambda,
                                              normalize_advantages=config.normalize_advantages)
        terms = surrogate_loss(logits, values, self.actions, returns, advantages,
                               entropy_coef=config.entropy_coef, value_loss_coef=config.value_loss_coef,
                               old_log_probs=taken_log_probs(self.logits, self.actions),
                               clip_range=config.clip_range)
        self.model.backward(terms.grad_logits, terms.grad_values)
        self.clock[1] += mid - started
        self.clock[2] += clock() - mid
        return [p.grad for p in self.model.parameters()], (terms.policy, terms.value, terms.entropy)

    def vtrace_gradients(self, rollout: StoredRollout) -> tuple[list[torch.Tensor], tuple[float, float, float], float]:
        """A stored rollout played again through the model's current weights, from the LSTM
        state it started from and with its masks, and its bootstrap from the view after its
        last step: the A3C loss's gradients with V-trace's targets, by hand; and the share of
        its steps whose importance weight was cut."""
        config, clock = self.config, time.perf_counter
        started = clock()
        steps = rollout.actions.shape[0]
        logits, values, state = self._played_again(rollout.frames[:steps], (rollout.start_h, rollout.start_c),
                                                   rollout.masks, rollout.previous)
        _, bootstrap, _ = self.model.step(rollout.frames[steps], state, rollout.masks[steps],
                                          previous=rollout.previous[steps])
        mid = clock()
        log_rhos = taken_log_probs(logits, rollout.actions) - rollout.behaviour_log_probs
        targets, advantages = vtrace_targets(log_rhos, rollout.rewards, rollout.dones, values.squeeze(2),
                                             bootstrap.view(-1), gamma=config.gamma, gae_lambda=config.gae_lambda,
                                             rho_clip=config.vtrace_rho_clip, c_clip=config.vtrace_c_clip)
        terms = surrogate_loss(logits, values, rollout.actions, targets, advantages,
                               entropy_coef=config.entropy_coef, value_loss_coef=config.value_loss_coef)
        self.model.backward(terms.grad_logits, terms.grad_values)
        self.clock[1] += mid - started
        self.clock[2] += clock() - mid
        cut = float((log_rhos > math.log(config.vtrace_rho_clip)).to(torch.float64).mean())
        return [p.grad for p in self.model.parameters()], (terms.policy, terms.value, terms.entropy), cut
