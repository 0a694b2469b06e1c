"""A worker playing B games at once: its updates equal autograd on a replay (float64).

The games are scripted (random frames, River Raid's points as rewards, episodes of set
lengths that end by termination or by a time limit), stepped through the same gymnasium
vector env, episode statistics and reward wrapper (clipped or scaled) as training. Two
consecutive rollouts cover: episodes ending at different steps of one rollout, an episode
cut by its time limit on a rollout's last step (its reset reaches the next rollout) and one
terminated on the last rollout's last step, truncations inside a rollout (bootstrapped from
the final frame), lives lost mid-rollout and at a rollout's first and last steps (with
``life_loss_resets_state`` each restarts the LSTM state there), and the LSTM state
carried from one rollout into the next. With ``epochs`` > 1
each rollout is replayed with the weights of that moment (a stand-in optimizer moves
them after every push) and PPO's clipped surrogate, some of whose steps are clipped. With
``sil_batch`` each update adds the self-imitation loss of the batch the worker drew from
its memory, and every step drawn is one the games played, with the state it started from,
its action and its return to the end of its life, kept because that return beat its value.
With ``replay_ratio`` each rollout's update is followed by updates on rollouts drawn from
the worker's rollout memory, each played again from its start state through the weights
of that moment (moved as for PPO's replays) with V-trace's targets, some of whose
importance weights are cut; every rollout drawn is one the games played, stored by then.
With ``action_reward_input`` the core also reads each step's action and reward before,
which the reference builds from the games' own logs (zeros where a game restarts). With
``pixel_control`` each rollout's own update adds UNREAL's pixel-control loss, whose
pseudo-rewards the reference computes cell by cell from the frames the games showed
(where a game ended, to its last frame), with the rollout's done flags and its
bootstrap's Q.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import RecordEpisodeStatistics

import a3c.worker as worker_module
from a3c.config import load_config
from a3c.envs import ClipRewardKeepScore
from a3c.messages import EpisodeEnded, UpdateDone
from a3c.model import ActorCritic, network_settings
from a3c.worker import Worker
from tests.autograd_reference import TorchActorCritic
from tests.helpers import assert_close
from tests.test_a3c_update import reference_targets, reference_vtrace

F64 = torch.float64
STEPS, BATCH, ROLLOUTS = 5, 3, 2
# per game: (length, how it ends) of its successive episodes, at global steps 0..9
EPISODES = [
    [(3, "terminated"), (7, "terminated"), (99, "")],   # ends at steps 2 and 9 (the last rollout's last step)
    [(5, "truncated"), (3, "truncated"), (99, "")],     # ends at 4 (a rollout's last step) and 7
    [(7, "terminated"), (99, "")],                      # ends at 6
]
# per game: global steps at which it loses a life and plays on (mid-rollout, at a rollout's
# first step, at a rollout's last step)
LIFE_LOSSES = [{1, 5}, {6}, {4}]
# frame_size: the scripted games' 42x42 frames, small enough for float64; hidden_size: 256,
# not the default's 512, which no rule depends on and which doubles the float64 references'
# cost (the network's other sizes are tests/test_a3c_update.py's subject)
SETTINGS = dict(gamma=0.9, gae_lambda=0.95, entropy_coef=0.01, value_loss_coef=0.5, frame_size=42, hidden_size=256)
# the game's points: nothing, a tanker, a helicopter, a fuel depot, a bridge; and a loss
# River Raid never gives, for the lower bound of the clip
POINTS = [0, 0, 0, 30, 60, 80, 500, -20]


class ScriptedGame(gym.Env):
    """Random frames and rewards; episode lengths, endings and lost lives from a script.

    Logs what the agent saw before each step (``seen``), each reward, and the last frame
    of each episode that a time limit cut (``final_frames``, by step). Reports its lives
    in ``info["lives"]`` as ALE does.
    """

    action_space = gym.spaces.Discrete(18)

    def __init__(self, index: int, channels: int = 1) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (channels, 42, 42), np.float64)
        self.script, self.life_losses = list(EPISODES[index]), LIFE_LOSSES[index]
        self.rng = np.random.default_rng(100 + index)
        self.seen, self.rewards, self.final_frames = [], [], {}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.remaining, self.ending = self.script.pop(0)
        self.current = self.rng.standard_normal(self.observation_space.shape)
        self.lives = 4
        return self.current, {"lives": self.lives}

    def step(self, action):
        self.seen.append(self.current)
        reward = float(self.rng.choice(POINTS))
        self.rewards.append(reward)
        self.current = self.rng.standard_normal(self.observation_space.shape)
        self.remaining -= 1
        ended = self.remaining == 0
        if ended:
            self.final_frames[len(self.seen) - 1] = self.current
        if len(self.seen) - 1 in self.life_losses:
            self.lives -= 1
        return (self.current, reward, ended and self.ending == "terminated", ended and self.ending == "truncated",
                {"lives": self.lives})


class Snapshot:
    """A network's weights at one moment, named as ``ActorCritic.named_parameters``."""

    def __init__(self, model: ActorCritic) -> None:
        self.params = [(name, tensor.clone()) for name, tensor in model.named_parameters()]

    def named_parameters(self):
        return iter(self.params)


class RecordingLink:
    """A worker's link that keeps each pushed update's gradients and steps, every message
    and a snapshot of the weights served at each pull; a push moves the weights by plain
    gradient descent with ``step_size`` (0: fixed weights)."""

    def __init__(self, model: ActorCritic, step_size: float = 0.0) -> None:
        self.model, self.global_step, self.step_size = model, 0, step_size
        self.updates: list[list[torch.Tensor] | None] = []
        self.steps: list[int] = []
        self.served: list[Snapshot] = []
        self.messages: list = []

    def saved_obs_norm(self):
        return None

    def pull(self, model) -> None:
        self.served.append(Snapshot(self.model))
        model.copy_from(self.model)

    def push(self, grads, steps, obs_norm, timings) -> None:
        self.updates.append(None if grads is None else [g.clone() for g in grads])
        self.steps.append(steps)
        if grads is not None and self.step_size:
            for param, grad in zip(self.model.parameters(), grads):
                param -= self.step_size * grad

    def report(self, message) -> None:
        self.messages.append(message)

    def stop_requested(self) -> bool:
        return False

    def should_stop(self) -> bool:
        return False


VARIANTS = {
    "lives-ignored": {"life_loss_ends_returns": False},
    "a-lost-life-ends-returns": {"life_loss_ends_returns": True},
    "advantages-normalized": {"normalize_advantages": True},
    "ppo-replays": {"epochs": 3, "clip_range": 0.1, "life_loss_ends_returns": True},
    "ppo-replays-advantages-normalized": {"epochs": 2, "clip_range": 0.02, "normalize_advantages": True},
    "two-views-stacked": {"frame_stack": 2, "life_loss_ends_returns": True},
    "feedforward-four-views-stacked": {"core": "feedforward", "frame_stack": 4, "life_loss_ends_returns": True},
    "feedforward-self-imitation-ppo-replays": {"core": "feedforward", "frame_stack": 2, "sil_batch": 3,
                                               "sil_capacity": 50, "sil_value_coef": 0.3, "epochs": 2,
                                               "clip_range": 0.02, "life_loss_ends_returns": True},
    "a-lost-life-resets-the-state": {"life_loss_ends_returns": True, "life_loss_resets_state": True},
    "a-lost-life-resets-the-state-returns-go-on": {"life_loss_ends_returns": False, "life_loss_resets_state": True},
    "a-lost-life-resets-the-state-self-imitation-ppo-replays": {
        "life_loss_ends_returns": True, "life_loss_resets_state": True, "sil_batch": 3, "sil_capacity": 50,
        "sil_value_coef": 0.3, "epochs": 2, "clip_range": 0.02},
    "nature-convolutions": {"conv_stack": "nature", "life_loss_ends_returns": True},
    "rewards-scaled-not-clipped": {"reward_scale": 0.01, "reward_clip": 10.0, "life_loss_ends_returns": True},
    "rewards-scaled-and-clipped": {"reward_scale": 0.01, "reward_clip": 1.0, "life_loss_ends_returns": True},
    "self-imitation": {"sil_batch": 4, "sil_capacity": 50, "sil_value_coef": 0.3, "life_loss_ends_returns": True},
    "self-imitation-lives-ignored": {"sil_batch": 2, "sil_capacity": 6, "sil_value_coef": 0.3},
    "self-imitation-clipped-ppo-replays": {"sil_batch": 3, "sil_capacity": 50, "sil_value_coef": 0.3, "sil_clip": 0.4,
                                           "epochs": 2, "clip_range": 0.02, "life_loss_ends_returns": True},
    "v-trace-replays": {"replay_ratio": 2, "replay_capacity": 50, "vtrace_rho_clip": 1.0, "vtrace_c_clip": 1.0,
                        "life_loss_ends_returns": True},
    # the bootstrap's own restart mask matters only where a lost life resets the state and the returns go on
    "v-trace-replays-one-kept-a-lost-life-resets-the-state-returns-go-on": {
        "replay_ratio": 1, "replay_capacity": 1, "vtrace_rho_clip": 0.98, "vtrace_c_clip": 1.02,
        "life_loss_ends_returns": False, "life_loss_resets_state": True},
    "v-trace-replays-self-imitation-feedforward": {
        "replay_ratio": 2, "replay_capacity": 50, "sil_batch": 3, "sil_capacity": 50, "sil_value_coef": 0.3,
        "core": "feedforward", "frame_stack": 2, "life_loss_ends_returns": True},
    "layernorm-lstm": {"core": "layernorm_lstm", "life_loss_ends_returns": True},
    "layernorm-lstm-v-trace-replays-a-lost-life-resets-the-state": {
        "core": "layernorm_lstm", "replay_ratio": 1, "replay_capacity": 50, "life_loss_ends_returns": True,
        "life_loss_resets_state": True},
    "action-and-reward-input": {"action_reward_input": True, "life_loss_ends_returns": True},
    # scaled rewards: the reward read is the one learnt from, not the game's points nor their sign
    "action-and-reward-input-rewards-scaled-ppo-replays": {
        "action_reward_input": True, "reward_scale": 0.01, "reward_clip": 10.0, "epochs": 2, "clip_range": 0.02},
    "action-and-reward-input-v-trace-replays-a-lost-life-resets-the-state": {
        "action_reward_input": True, "replay_ratio": 1, "replay_capacity": 50, "life_loss_ends_returns": False,
        "life_loss_resets_state": True},
    "action-and-reward-input-feedforward": {"action_reward_input": True, "core": "feedforward", "frame_stack": 2,
                                            "life_loss_ends_returns": True},
}
# pixel control changes only the updates' gradients: checked by the update test alone (and its logging)
PIXEL_CONTROL_VARIANTS = {
    "pixel-control": {"pixel_control": True, "pixel_control_coef": 0.3, "pixel_control_gamma": 0.8,
                      "life_loss_ends_returns": True},
    # the newest view of each stack is the one whose change is rewarded; the replays have no pixel-control term
    "pixel-control-two-views-stacked-ppo-replays": {"pixel_control": True, "frame_stack": 2, "epochs": 2,
                                                    "clip_range": 0.02, "life_loss_ends_returns": False},
    "pixel-control-feedforward-v-trace-replays": {"pixel_control": True, "core": "feedforward", "replay_ratio": 1,
                                                  "replay_capacity": 50, "life_loss_ends_returns": True},
    "pixel-control-self-imitation": {"pixel_control": True, "sil_batch": 3, "sil_capacity": 50,
                                     "sil_value_coef": 0.3, "life_loss_ends_returns": True},
}
REPLAY_STEP_SIZE = 0.02  # moves the policy enough between passes that some ratios leave [0.9, 1.1]


def reference_network(config, weights) -> TorchActorCritic:
    """The torch.nn twin of the worker's network (float64), with ``weights``'s values."""
    return TorchActorCritic(18, **network_settings(config)).double().load_from(weights)


def previous_inputs(actions, rewards, step, rows=slice(None)):
    """The core's action-and-reward input at global ``step``, from the games' logs: the
    action taken one-hot and the reward learnt from at the step before (zeros at the
    first); ``rows``: those games only."""
    inputs = torch.zeros(BATCH, 18 + 1, dtype=F64)
    if step > 0:
        inputs[torch.arange(BATCH), actions[step - 1]] = 1.0
        inputs[:, 18] = rewards[step - 1]
    return inputs[rows]


def updates_per_rollout(config) -> int:
    """The rollout's own update, its PPO replays (epochs - 1) and its V-trace replays."""
    return config.epochs + config.replay_ratio


class Played(NamedTuple):
    """A worker after its ROLLOUTS updates, the games it played and what it saw, did and sent."""
    worker: Worker
    games: list  # the ScriptedGames, each with the frames it showed and the rewards it gave
    frames: torch.Tensor  # every frame the network saw, (steps, games, stack, 42, 42)
    actions: torch.Tensor  # every action taken, (steps, games)
    link: RecordingLink  # what was served to the worker and what it pushed
    messages: list  # what it reported to the trainer


@pytest.fixture(params=list(VARIANTS.values()), ids=list(VARIANTS))
def played(monkeypatch, request):
    """A float64 worker after ROLLOUTS updates on scripted games, once per entry of VARIANTS
    (return rules, PPO replays, stacked views, reward handling, self-imitation)."""
    games = [ScriptedGame(k, request.param.get("frame_stack", 1)) for k in range(BATCH)]
    monkeypatch.setattr(worker_module, "make_vector_env", scripted_vector_env(games))
    # max_grad_norm: no clipping, so the pushed gradients are the raw ones autograd gives
    # pixel control off unless a variant turns it on (PIXEL_CONTROL_VARIANTS)
    config = load_config(None, {"workers": 1, "envs_per_worker": BATCH, "num_steps": STEPS,
                                "max_grad_norm": 1e12, "pixel_control": False, **request.param, **SETTINGS})
    link = RecordingLink(ActorCritic(18, **network_settings(config), seed=5, dtype=F64),
                         REPLAY_STEP_SIZE if updates_per_rollout(config) > 1 else 0.0)
    worker = Worker(0, config, link, dtype=F64)
    link.imitation_batches = {}  # rollout -> the self-imitation batch its update drew
    if config.sil_batch:
        draw = worker.memory.sample

        def recorded_draw(*args, **kwargs):
            link.imitation_batches[len(link.updates) // updates_per_rollout(config)] = batch = draw(*args, **kwargs)
            return batch

        worker.memory.sample = recorded_draw
    link.replayed = {}  # update index -> the stored rollout its V-trace replay drew
    if config.replay_ratio:
        draw_rollout = worker.replay.sample

        def recorded_rollout_draw(*args, **kwargs):
            link.replayed[len(link.updates)] = rollout = draw_rollout(*args, **kwargs)
            return rollout

        worker.replay.sample = recorded_rollout_draw
    frames, actions = play_rollouts(worker, link)
    return Played(worker, games, frames, actions, link, link.messages)


def scripted_vector_env(games):
    """A stand-in for a3c.worker.make_vector_env that serves ``games``, wrapped as training's
    make_vector_env wraps Atari's: the score recorded on the raw game, then the reward to learn from."""
    def make(env_id, num_envs, frame, frame_size, reward_scale, reward_clip, frame_stack):
        return gym.vector.SyncVectorEnv(
            [lambda game=game: ClipRewardKeepScore(RecordEpisodeStatistics(game), reward_scale, reward_clip)
             for game in games], copy=False, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return make


def play_rollouts(worker: Worker, link: RecordingLink) -> tuple[torch.Tensor, torch.Tensor]:
    """ROLLOUTS rollouts and updates of ``worker`` from its games' first steps, its input
    normaliser frozen at the identity (the network sees the games' own frames) -> every
    frame it saw (steps, games, stack, 42, 42) and every action it took (steps, games)."""
    worker.normalizer.frozen = True
    obs, _ = worker.envs.reset(seed=[0, 1, 2])
    state, mask, frames, actions = worker.model.initial_state(BATCH), None, [], []
    for _ in range(ROLLOUTS):
        link.pull(worker.model)
        obs, state, mask, bootstrap = worker.collect(obs, state, mask)
        frames.append(worker.frames.clone())
        actions.append(worker.actions.clone())
        worker.learn(bootstrap)
    return torch.cat(frames), torch.cat(actions)


def ends_by_step() -> dict[int, dict[int, str]]:
    """{step: {game: "terminated" | "truncated"}} from the script."""
    ends: dict[int, dict[int, str]] = {}
    for game, episodes in enumerate(EPISODES):
        step = -1
        for length, ending in episodes[:-1]:
            step += length
            ends.setdefault(step, {})[game] = ending
    return ends


def restart_mask(ends, step, lives_reset=False):
    """(B, 1) zeros for the games whose episode ended at ``step``, and with ``lives_reset``
    those that lost a life there (their state restarts), or None."""
    restarting = set(ends.get(step, {}))
    if lives_reset:
        restarting |= {game for game in range(BATCH) if step in LIFE_LOSSES[game]}
    if not restarting:
        return None
    mask = torch.ones(BATCH, 1, dtype=F64)
    mask[sorted(restarting)] = 0.0
    return mask


def reference_updates(served, games, actions, config, clip_counts=None, imitation_batches=None, played_steps=None,
                      replayed=None):
    """Autograd through the same network and loss on the games' own logs, rollout by rollout,
    with the weights ``served`` at each pull; each rollout's replays (config.epochs - 1)
    follow its update.

    A lost life, when it ends returns, is a done flag (no bootstrapping across it); it
    restarts the LSTM state only with life_loss_resets_state. ``clip_counts`` collects (clipped steps, steps) per replay.
    ``imitation_batches``: {rollout: the self-imitation batch its update adds}; ``played_steps``
    collects each step's (rollout, game, frame, the LSTM state it started from, action, reward
    learnt from, value, done). ``replayed``: {update index: the stored rollout its V-trace
    replay drew}; the reference finds which played rollout that is by its views and replays
    its own record of it (``clip_counts`` then collects (steps whose weight was cut, steps))."""
    life_loss_ends_returns, normalize_advantages = config.life_loss_ends_returns, config.normalize_advantages
    epochs, clip_range, resets = config.epochs, config.clip_range, config.life_loss_resets_state
    per_rollout = updates_per_rollout(config)
    kept = []  # per rollout played: what its V-trace replays need
    ends, gamma = ends_by_step(), SETTINGS["gamma"]
    seen = torch.tensor(np.stack([np.stack(game.seen) for game in games], 1))  # (steps, B, K, 42, 42)
    points = torch.tensor([game.rewards for game in games], dtype=F64).t()  # (steps, B): the game's own
    rewards = (config.reward_scale * points).clamp(-config.reward_clip, config.reward_clip)  # what is learnt from
    state = (torch.zeros(BATCH, config.hidden_size, dtype=F64), torch.zeros(BATCH, config.hidden_size, dtype=F64))
    updates = []
    for rollout, start in enumerate(range(0, STEPS * ROLLOUTS, STEPS)):
        reference = reference_network(config, served[rollout * per_rollout])
        state = (state[0].detach(), state[1].detach())  # truncated BPTT between rollouts
        start_state = state
        logits_seq, values_seq, starts, hidden_seq = [], [], [], []
        targets = rewards[start:start + STEPS].clone()
        dones = torch.zeros(STEPS, BATCH, dtype=F64)
        for t in range(start, start + STEPS):
            mask = restart_mask(ends, t - 1, resets)
            started = state if mask is None else (state[0] * mask, state[1] * mask)
            logits, values, state = reference(seen[t], state, mask, previous_inputs(actions, rewards, t))
            hidden_seq.append(reference.last_hidden)
            starts.append(started)
            logits_seq.append(logits)
            values_seq.append(values.squeeze(1))
            for game in range(BATCH):
                if life_loss_ends_returns and t in LIFE_LOSSES[game] and game not in ends.get(t, {}):
                    dones[t - start, game] = 1.0
            for game, ending in ends.get(t, {}).items():
                dones[t - start, game] = 1.0
                if ending == "truncated":  # r + gamma V(final frame), from this game's state
                    final = torch.from_numpy(games[game].final_frames[t]).unsqueeze(0)
                    with torch.no_grad():
                        _, value, _ = reference(final, (state[0][game:game + 1], state[1][game:game + 1]), None,
                                                previous_inputs(actions, rewards, t + 1, slice(game, game + 1)))
                    targets[t - start, game] += gamma * value.item()
        last = start + STEPS - 1
        following = seen[last + 1] if last + 1 < len(seen) else \
            torch.tensor(np.stack([game.current for game in games]))
        with torch.no_grad():
            _, bootstrap, _ = reference(following, state, restart_mask(ends, last, resets),
                                        previous_inputs(actions, rewards, last + 1))
            following_hidden = reference.last_hidden
        logits, values = torch.stack(logits_seq), torch.stack(values_seq)
        returns, advantages = reference_targets(targets, dones, values.detach(), bootstrap.squeeze(1),
                                                gamma, SETTINGS["gae_lambda"])
        if normalize_advantages:  # over the rollout's T x B steps
            advantages = (advantages - advantages.mean()) / (advantages.std(unbiased=False) + 1e-8)
        log_probs = torch.log_softmax(logits, 2)
        taken = actions[start:start + STEPS].unsqueeze(2)
        policy = -(log_probs.gather(2, taken).squeeze(2) * advantages).sum()
        entropy = -(log_probs.exp() * log_probs).sum()
        value = 0.5 * ((returns - values) ** 2).sum()
        loss = policy + SETTINGS["value_loss_coef"] * value - SETTINGS["entropy_coef"] * entropy
        if config.pixel_control:
            views = torch.cat([seen[start:start + STEPS, :, -1], following[None, :, -1]])
            # where a game ended: the last frame it showed, not the next episode's first
            last_frames = {(t - start, game): torch.from_numpy(games[game].final_frames[t][-1])
                           for t in range(start, start + STEPS) for game in ends.get(t, {})}
            loss = loss + pixel_control_reference(reference, torch.stack(hidden_seq), following_hidden, views,
                                                  last_frames, actions[start:start + STEPS], dones, config)
        if imitation_batches and rollout in imitation_batches:
            loss = loss + imitation_loss(reference, imitation_batches[rollout], config.sil_value_coef,
                                         config.sil_clip)
        loss.backward()
        grads = reference.gradients_like(served[0])
        updates.append({name: grads[name].clone() for name in grads})
        if played_steps is not None:
            for t in range(STEPS):
                for game in range(BATCH):
                    played_steps.append((rollout, game, seen[start + t][game], starts[t][0][game].detach(),
                                         starts[t][1][game].detach(), int(taken[t, game]), float(targets[t, game]),
                                         float(values[t, game].detach()), bool(dones[t, game])))
        old_log_probs = log_probs.gather(2, taken).squeeze(2).detach()
        for replay in range(1, epochs):
            network = reference_network(config, served[rollout * per_rollout + replay])
            replay_state, replay_logits, replay_values = start_state, [], []
            for t in range(start, start + STEPS):
                logits, values, replay_state = network(seen[t], replay_state, restart_mask(ends, t - 1, resets),
                                                       previous_inputs(actions, rewards, t))
                replay_logits.append(logits)
                replay_values.append(values.squeeze(1))
            log_probs = torch.log_softmax(torch.stack(replay_logits), 2)
            ratio = (log_probs.gather(2, taken).squeeze(2) - old_log_probs).exp()
            clipped = ratio.clamp(1 - clip_range, 1 + clip_range)
            policy = -torch.minimum(ratio * advantages, clipped * advantages).sum()
            entropy = -(log_probs.exp() * log_probs).sum()
            value = 0.5 * ((returns - torch.stack(replay_values)) ** 2).sum()
            (policy + SETTINGS["value_loss_coef"] * value - SETTINGS["entropy_coef"] * entropy).backward()
            grads = network.gradients_like(served[0])
            updates.append({name: grads[name].clone() for name in grads})
            if clip_counts is not None:
                held = ((advantages > 0) & (ratio > 1 + clip_range)) | ((advantages < 0) & (ratio < 1 - clip_range))
                clip_counts.append((int(held.sum()), held.numel()))
        kept.append(dict(start=start, state=start_state, rewards=targets, dones=dones, behaviour=old_log_probs,
                         following=following, last_mask=restart_mask(ends, last, resets)))
        for replay in range(epochs, epochs + config.replay_ratio):
            index = rollout * per_rollout + replay
            drawn = replayed[index]
            # which played rollout it is: its views, as kept in half precision
            number = next(k for k, record in enumerate(kept) if torch.equal(
                drawn.frames[:STEPS], seen[record["start"]:record["start"] + STEPS].half().double()))
            record = kept[number]
            network = reference_network(config, served[index])
            replay_state, replay_logits, replay_values = record["state"], [], []
            for t in range(record["start"], record["start"] + STEPS):
                logits, values, replay_state = network(seen[t].half().double(), replay_state,
                                                       restart_mask(ends, t - 1, resets),
                                                       previous_inputs(actions, rewards, t))
                replay_logits.append(logits)
                replay_values.append(values.squeeze(1))
            with torch.no_grad():
                _, bootstrap, _ = network(record["following"].half().double(), replay_state, record["last_mask"],
                                          previous_inputs(actions, rewards, record["start"] + STEPS))
            log_probs = torch.log_softmax(torch.stack(replay_logits), 2)
            taken = actions[record["start"]:record["start"] + STEPS].unsqueeze(2)
            taken_log_probs = log_probs.gather(2, taken).squeeze(2)
            values = torch.stack(replay_values)
            log_rhos = (taken_log_probs - record["behaviour"]).detach()
            targets, advantages = reference_vtrace(log_rhos, record["rewards"], record["dones"], values.detach(),
                                                   bootstrap.squeeze(1), gamma, SETTINGS["gae_lambda"],
                                                   config.vtrace_rho_clip, config.vtrace_c_clip)
            policy = -(taken_log_probs * advantages).sum()
            entropy = -(log_probs.exp() * log_probs).sum()
            value = 0.5 * ((targets - values) ** 2).sum()
            (policy + SETTINGS["value_loss_coef"] * value - SETTINGS["entropy_coef"] * entropy).backward()
            grads = network.gradients_like(served[0])
            updates.append({name: grads[name].clone() for name in grads})
            if clip_counts is not None:
                cut = log_rhos.exp() > config.vtrace_rho_clip
                clip_counts.append((int(cut.sum()), cut.numel()))
    return updates


def pixel_control_reference(network, hidden, following_hidden, views, last_frames, actions, dones, config):
    """UNREAL's pixel-control loss for autograd, cell by cell: the pseudo-reward of step t
    in a cell is the mean absolute change of its 4x4 pixels from view t to view t + 1 (to
    ``last_frames[t, game]`` where the game ended at t) over the central 4n x 4n pixels;
    n-step Q-learning targets with the rollout's done flags, started from max_a Q of the
    view after its last step."""
    steps, side = len(views) - 1, views.shape[-1]
    cells = network.pixel_side * 2 + 2
    start = (side - 4 * cells) // 2
    pseudo = torch.zeros(steps, BATCH, cells, cells, dtype=F64)
    for t in range(steps):
        for game in range(BATCH):
            after = last_frames.get((t, game), views[t + 1, game])
            for i in range(cells):
                for j in range(cells):
                    rows, cols = slice(start + 4 * i, start + 4 * i + 4), slice(start + 4 * j, start + 4 * j + 4)
                    pseudo[t, game, i, j] = (after[rows, cols] - views[t, game, rows, cols]).abs().mean()
    q = torch.stack([network.pixel_q(h) for h in hidden])  # (T, B, A, n, n)
    with torch.no_grad():
        following = network.pixel_q(following_hidden).max(1).values  # (B, n, n)
    loss = 0.0
    for game in range(BATCH):
        target = following[game]
        for t in reversed(range(steps)):
            target = pseudo[t, game] + config.pixel_control_gamma * (1.0 - float(dones[t, game])) * target
            loss = loss + 0.5 * ((target - q[t, game, int(actions[t, game])]) ** 2).sum()
    return config.pixel_control_coef * loss


def imitation_loss(network, batch, value_coef, clip=None):
    """Self-imitation's loss of Oh et al. (2018) on a drawn batch, for autograd: the policy
    term weighs log pi(a|s) by max(R - V, 0) (clipped at ``clip``) held constant, the value
    term (a Huber loss beyond ``clip``) is differentiated."""
    frames, state, actions, returns = batch
    logits, values, _ = network(frames, state)
    shortfall = (returns - values.squeeze(1)).clamp(min=0.0)
    weight = shortfall if clip is None else shortfall.clamp(max=clip)
    value = 0.5 * shortfall ** 2 if clip is None else \
        torch.where(shortfall <= clip, 0.5 * shortfall ** 2, clip * (shortfall - 0.5 * clip))
    taken = torch.log_softmax(logits, 1).gather(1, actions.unsqueeze(1)).squeeze(1)
    return -(taken * weight.detach()).sum() + value_coef * value.sum()


def test_the_worker_feeds_the_network_what_each_game_showed(played):
    seen = torch.tensor(np.stack([np.stack(game.seen) for game in played.games], 1))
    assert played.frames.shape == seen.shape == (STEPS * ROLLOUTS, BATCH, played.worker.config.frame_stack, 42, 42)
    assert torch.equal(played.frames, seen)  # reset frames included, final frames never


def test_every_update_equals_autograd_on_a_replay_of_the_games(played):
    check_every_update_against_autograd(played)


@pytest.mark.parametrize("played", list(PIXEL_CONTROL_VARIANTS.values()), ids=list(PIXEL_CONTROL_VARIANTS),
                         indirect=True)
def test_with_pixel_control_every_update_equals_autograd_and_its_loss_is_logged_with_the_rollouts_own(played):
    check_every_update_against_autograd(played)
    reported = [m.pixel_control_loss for m in played.messages if isinstance(m, UpdateDone)]
    per_rollout = updates_per_rollout(played.worker.config)
    assert len(reported) == ROLLOUTS * per_rollout
    assert all(loss > 0 for loss in reported[::per_rollout])  # random frames: every cell changes
    assert all(math.isnan(loss) for k, loss in enumerate(reported) if k % per_rollout)  # the replays have none


def check_every_update_against_autograd(played):
    worker, link = played.worker, played.link
    replays = updates_per_rollout(worker.config) - 1
    assert len(link.updates) == len(link.served) == ROLLOUTS * (1 + replays)
    clip_counts = []
    expected = reference_updates(link.served, played.games, played.actions, worker.config, clip_counts,
                                 link.imitation_batches, replayed=link.replayed)
    names = [name for name, _ in worker.model.named_parameters()]
    for k, (ours, reference) in enumerate(zip(link.updates, expected)):
        for name, grad in zip(names, ours):
            assert_close(grad, reference[name], what=f"update {k + 1}, {name}")
    if replays:  # the replays saw moved weights: the clip held some steps and not others
        clipped, total = map(sum, zip(*clip_counts))
        assert 0 < clipped < total
    if worker.config.replay_ratio:  # each V-trace replay reports the share of its weights cut; the others nan
        reported = [m.replay_cut for m in played.messages if isinstance(m, UpdateDone)]
        per_rollout = updates_per_rollout(worker.config)
        assert all(math.isnan(share) for share in reported[::per_rollout])
        replayed = [share for k, share in enumerate(reported) if k % per_rollout]
        assert replayed == pytest.approx([cut / steps for cut, steps in clip_counts], abs=1e-12)


def test_a_rollouts_agent_steps_are_counted_once_by_its_first_update(played):
    replays = updates_per_rollout(played.worker.config) - 1
    assert played.link.steps == ([STEPS * BATCH] + [0] * replays) * ROLLOUTS


def test_each_finished_episode_is_reported_with_its_game_score_and_length(played):
    games, messages = played.games, played.messages
    episodes = [m for m in messages if isinstance(m, EpisodeEnded)]
    ends = ends_by_step()
    expected = []
    for step in sorted(ends):
        for game in sorted(ends[step]):
            previous_end = max([s for s in ends if s < step and game in ends[s]], default=-1)
            score = sum(games[game].rewards[previous_end + 1:step + 1])
            expected.append((0, game, score, step - previous_end))
    assert [(m.worker, m.env_index, m.raw_return, m.length) for m in episodes] == expected
    assert sum(1 for m in messages if isinstance(m, UpdateDone)) == ROLLOUTS * updates_per_rollout(played.worker.config)


def test_a_non_finite_gradient_is_never_pushed_and_the_update_is_reported_skipped(played):
    worker, messages = played.worker, played.messages
    updates, per_rollout = played.link.updates, updates_per_rollout(worker.config)
    pushed = len(updates)
    bootstrap = torch.zeros(BATCH, dtype=F64)
    worker.rewards[0, 0] = float("nan")  # a NaN reward makes every gradient NaN
    state = worker.model.initial_state(BATCH)
    for t in range(STEPS):  # record a rollout's forward steps again, on its own frames
        _, _, state = worker.model.step(worker.frames[t], state, previous=worker.previous[t], record=True)
    worker.learn(bootstrap)
    assert len(updates) == pushed + per_rollout and updates[-per_rollout] is None
    reports = messages[-per_rollout:]
    assert all(isinstance(m, UpdateDone) for m in reports)
    assert [m.skipped for m in reports] == [update is None for update in updates[-per_rollout:]]
    # a PPO replay plays the same rollout again; a V-trace replay drawing it does too, and one
    # drawing an earlier rollout pushes that rollout's finite gradients
    drawn_it = [k for k, rollout in played.link.replayed.items() if torch.isnan(rollout.rewards).any()]
    assert sorted(k for k in range(len(updates) - per_rollout, len(updates)) if updates[k] is None) == \
        [len(updates) - per_rollout + k for k in range(worker.config.epochs)] + drawn_it
    assert all(torch.isfinite(grad).all() for update in updates if update is not None for grad in update)


IMITATING = [name for name, settings in VARIANTS.items() if settings.get("sil_batch")]


def expected_memory(played):
    """What the worker's memory should have stored, from the reference's ``played_steps``,
    in the order it stores them: after each rollout, game by game, each life that ended in
    it, in time order, each game's waiting steps cut to its share of ``sil_capacity`` (its
    last ones). Rows (stored in rollout, game, frame, h, c, action, return); and each game's
    waiting steps at the end."""
    worker = played.worker
    steps = []
    reference_updates(played.link.served, played.games, played.actions, worker.config, played_steps=steps,
                      replayed=played.link.replayed)
    gamma, share = SETTINGS["gamma"], max(1, worker.config.sil_capacity // BATCH)
    stored, waiting = [], []
    for game in range(BATCH):
        life = []
        for rollout, _, frame, h, c, action, reward, value, done in (step for step in steps if step[1] == game):
            life = (life + [(frame, h, c, action, reward, value)])[-share:]
            if done:
                ret, rows = 0.0, []
                for frame_, h_, c_, action_, reward_, value_ in reversed(life):
                    ret = reward_ + gamma * ret
                    if ret > value_:
                        rows.append((rollout, game, frame_, h_, c_, action_, ret))
                stored += reversed(rows)
                life = []
        waiting.append(len(life))
    stored.sort(key=lambda row: row[:2])  # stable: each game's lives stay in time order
    return stored, waiting


def same_step(ours, expected):
    """One memory row (frame, h, c, action, return) against an expected one."""
    frame, h, c, action, ret = ours
    return (torch.equal(frame.to(F64), expected[2].to(torch.float16).to(F64)) and int(action) == expected[5]
            and torch.allclose(h, expected[3], rtol=1e-10, atol=1e-12)
            and torch.allclose(c, expected[4], rtol=1e-10, atol=1e-12) and abs(float(ret) - expected[6]) < 1e-12)


@pytest.mark.parametrize("played", [VARIANTS[name] for name in IMITATING], ids=IMITATING, indirect=True)
def test_the_memory_holds_the_played_steps_whose_return_to_their_lifes_end_beat_their_value(played):
    worker = played.worker
    stored, waiting = expected_memory(played)
    memory = worker.memory
    assert memory.waiting == waiting
    capacity = worker.config.sil_capacity
    assert len(memory) == min(len(stored), capacity) > 0
    order = [(memory.next + k) % capacity for k in range(capacity)] if len(memory) == capacity \
        else list(range(len(memory)))
    for row, expected in zip(order, stored[-capacity:]):  # the ring keeps the newest
        ours = (memory.frames[row], memory.h[row], memory.c[row], memory.actions[row], memory.returns[row])
        assert same_step(ours, expected), f"memory row {row} is not the step expected there"


@pytest.mark.parametrize("played", [VARIANTS[name] for name in IMITATING], ids=IMITATING, indirect=True)
def test_each_update_draws_its_batch_from_steps_stored_by_then_and_logs_the_share_imitated(played):
    worker, link, messages = played.worker, played.link, played.messages
    stored, _ = expected_memory(played)
    assert link.imitation_batches, "no update drew a self-imitation batch"
    for rollout, (frames, (h, c), drawn_actions, drawn_returns) in link.imitation_batches.items():
        assert frames.shape[0] == worker.config.sil_batch
        for row in range(frames.shape[0]):
            drawn = (frames[row], h[row], c[row], drawn_actions[row], drawn_returns[row])
            assert any(same_step(drawn, expected) for expected in stored if expected[0] <= rollout), \
                f"update {rollout + 1} drew a step not stored by then"
    imitated = [m.imitated for m in messages if isinstance(m, UpdateDone) and m.imitated == m.imitated]
    assert len(imitated) == len(link.imitation_batches) and all(0.0 < share <= 1.0 for share in imitated)


def test_the_memory_outlives_the_early_updates_games(monkeypatch):
    def scripted_vector_env(env_id, num_envs, frame, frame_size, reward_scale, reward_clip, frame_stack):
        return gym.vector.SyncVectorEnv(
            [lambda k=k: ClipRewardKeepScore(RecordEpisodeStatistics(ScriptedGame(k)), reward_scale, reward_clip)
             for k in range(num_envs)], copy=False, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)

    monkeypatch.setattr(worker_module, "make_vector_env", scripted_vector_env)
    config = load_config(None, {"workers": 1, "envs_per_worker": BATCH, "num_steps": STEPS, "early_steps": 1000,
                                "early_envs_per_worker": 2, "early_num_steps": 4, "sil_batch": 1,
                                "life_loss_ends_returns": True, **SETTINGS})
    link = RecordingLink(ActorCritic(18, seed=5, dtype=F64))
    worker = Worker(0, config, link, dtype=F64)
    assert worker.num_envs == 2  # the early update's games
    obs, state, mask = worker.reset_games()
    link.pull(worker.model)
    obs, state, mask, bootstrap = worker.collect(obs, state, mask)
    worker.learn(bootstrap)
    memory, kept = worker.memory, len(worker.memory)
    assert kept > 0 and any(memory.waiting)
    worker.start_games(worker.run_config)  # the switch to the run's own games
    assert worker.memory is memory and len(memory) == kept and memory.waiting == [0] * BATCH
    assert worker.step_h.shape == worker.step_c.shape == (STEPS, BATCH, 256)


REPLAYING = [name for name, settings in VARIANTS.items() if settings.get("replay_ratio")]


@pytest.mark.parametrize("played", [VARIANTS[name] for name in REPLAYING], ids=REPLAYING, indirect=True)
def test_each_v_trace_replay_draws_a_rollout_the_games_played_stored_by_then(played):
    config, link = played.worker.config, played.link
    assert len(link.replayed) == ROLLOUTS * config.replay_ratio
    older = 0
    for index, drawn in link.replayed.items():
        rollout = index // updates_per_rollout(config)
        numbers = [k for k in range(ROLLOUTS) if torch.equal(
            drawn.frames[:STEPS], played.frames[k * STEPS:(k + 1) * STEPS].half().double())]
        assert len(numbers) == 1 and numbers[0] <= rollout, f"update {index + 1} drew a rollout not stored by then"
        number = numbers[0]
        assert torch.equal(drawn.actions, played.actions[number * STEPS:(number + 1) * STEPS])
        if config.replay_capacity == 1:  # only the latest is kept
            assert number == rollout
        older += number < rollout
    if config.replay_capacity > 1:  # some replays were off-policy by a whole rollout's updates
        assert older > 0
