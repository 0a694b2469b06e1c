"""Playing an episode as the network was trained: with life_loss_resets_state, the LSTM
starts again from zero after each lost life, in evaluation as in the workers; the core's
action-and-reward input is the step before's action and learnt reward, zeros where the
state starts again."""
from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

import a3c.evaluate as evaluate_module
from a3c.checkpoint import load_checkpoint, save_checkpoint
from a3c.envs import ObsNormalizer
from a3c.evaluate import evaluate
from a3c.model import ActorCritic
from a3c.policy import play_episode

LIVES_AFTER = [4, 4, 3, 3, 3, 2, 2, 2, 2, 1]  # the lives the game reports after each of its ten steps
REWARDS = [0.0, 1.0, 0.5, 0.0, -1.0, 1.0, 0.0, 0.25, 1.0, 0.0]  # the reward learnt from at each step


class LosingLives(gym.Env):
    """Ten steps of blank frames; a life lost at the third and the sixth, ALE's info["lives"]."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1, 4, 4), np.float32)
    action_space = gym.spaces.Discrete(18)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros((1, 4, 4), np.float32), {"lives": 4}

    def step(self, action):
        lives = LIVES_AFTER[self.t]
        self.t += 1
        return np.zeros((1, 4, 4), np.float32), REWARDS[self.t - 1], self.t == len(LIVES_AFTER), False, \
            {"lives": lives, "raw_reward": 100 * REWARDS[self.t - 1]}


class CountingModel:
    """A stand-in network whose state counts the steps since it was last zero; it records
    the count each step starts from and the action-and-reward input it is handed, and its
    greedy action is 5 + that count."""

    n_actions = 18

    def __init__(self) -> None:
        self.counts: list[int] = []
        self.previous: list[torch.Tensor] = []

    def initial_state(self, batch: int):
        return torch.zeros(batch, 1), torch.zeros(batch, 1)

    def step(self, frames, state, previous):
        count = int(state[0].item())
        self.counts.append(count)
        self.previous.append(previous)
        return torch.eye(18)[5 + count].unsqueeze(0), torch.zeros(1, 1), (state[0] + 1, state[1] + 1)


@pytest.mark.parametrize("resets, counts", [
    (False, list(range(10))),  # one memory through the whole game
    (True, [0, 1, 2, 0, 1, 2, 0, 1, 2, 3]),  # zero again on the step after each lost life
])
def test_the_state_starts_again_after_a_lost_life_only_when_the_run_was_trained_so(resets, counts):
    model = CountingModel()
    score, length, _ = play_episode(LosingLives(), model, ObsNormalizer(), "greedy", torch.Generator(),
                                    life_loss_resets_state=resets)
    assert (score, length) == (100 * sum(REWARDS), 10)
    assert model.counts == counts
    # the step before's action one-hot and its learnt reward; zeros where the state is zero
    assert not model.previous[0].any()
    for t in range(1, 10):
        expected = torch.zeros(1, 19)
        if counts[t] > 0:
            expected[0, 5 + counts[t - 1]] = 1.0
            expected[0, 18] = REWARDS[t - 1]
        assert torch.equal(model.previous[t], expected), t


@pytest.mark.parametrize("resets", [True, False])
def test_evaluate_plays_a_checkpoint_with_its_runs_life_loss_setting(tmp_path, monkeypatch, resets):
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["life_loss_resets_state"])
        return play_episode(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "play_episode", spy)
    model = ActorCritic(18, seed=0, conv_channels=8, hidden_size=16)
    path = tmp_path / "agent.pt"
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": {}, "global_step": 10,
                           "obs_norm": torch.tensor([[0.5, 0.2, 100.0]], dtype=torch.float64), "n_actions": 18,
                           "config": {"env_id": "Riverraid-v0", "conv_channels": 8, "hidden_size": 16,
                                      "life_loss_resets_state": resets}})
    assert load_checkpoint(path)["config"]["life_loss_resets_state"] is resets
    evaluate(path, episodes=2, seed=0, max_steps=5, stream=io.StringIO())
    assert seen == [resets, resets]


def test_a_checkpoint_older_than_the_setting_plays_without_resets(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(evaluate_module, "play_episode",
                        lambda *args, **kwargs: seen.append(kwargs["life_loss_resets_state"]) or (0.0, 1, 0.0))
    model = ActorCritic(18, seed=0, conv_channels=8, hidden_size=16)
    path = tmp_path / "older.pt"
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": {}, "global_step": 10,
                           "obs_norm": torch.tensor([[0.5, 0.2, 100.0]], dtype=torch.float64), "n_actions": 18,
                           "config": {"env_id": "Riverraid-v0", "conv_channels": 8, "hidden_size": 16}})
    evaluate(path, episodes=1, seed=0, max_steps=5, stream=io.StringIO())
    assert seen == [False]


@pytest.mark.parametrize("config, rewards", [
    ({"reward_scale": 0.01, "reward_clip": 10.0}, {"reward_scale": 0.01, "reward_clip": 10.0}),
    ({}, {"reward_scale": 1.0, "reward_clip": 1.0}),  # older than the settings: clipped to the sign
])
def test_evaluate_hands_the_network_its_runs_rewards(tmp_path, monkeypatch, config, rewards):
    """The action-and-reward input reads the reward as the run learnt it: the evaluation
    game scales and clips as the run's did."""
    made = []
    real = evaluate_module.make_env
    monkeypatch.setattr(evaluate_module, "make_env", lambda *args, **kwargs: made.append(kwargs) or real(*args, **kwargs))
    model = ActorCritic(18, seed=0, conv_channels=8, hidden_size=16, action_reward_input=True)
    path = tmp_path / "agent.pt"
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": {}, "global_step": 10,
                           "obs_norm": torch.tensor([[0.5, 0.2, 100.0]], dtype=torch.float64), "n_actions": 18,
                           "config": {"env_id": "Riverraid-v0", "conv_channels": 8, "hidden_size": 16,
                                      "action_reward_input": True, **config}})
    assert evaluate(path, episodes=1, seed=0, max_steps=5, stream=io.StringIO())["episodes"][0]["length"] == 5
    assert [{key: kwargs[key] for key in rewards} for kwargs in made] == [rewards]
