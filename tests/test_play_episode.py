"""Playing an episode as the network was trained: with life_loss_resets_state, the LSTM
starts again from zero after each lost life, in evaluation as in the workers."""
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
        return np.zeros((1, 4, 4), np.float32), 0.0, self.t == len(LIVES_AFTER), False, \
            {"lives": lives, "raw_reward": 0.0}


class CountingModel:
    """A stand-in network whose state counts the steps since it was last zero; it records
    the count each step starts from."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def initial_state(self, batch: int):
        return torch.zeros(batch, 1), torch.zeros(batch, 1)

    def step(self, frames, state):
        self.counts.append(int(state[0].item()))
        return torch.zeros(1, 18), torch.zeros(1, 1), (state[0] + 1, state[1] + 1)


@pytest.mark.parametrize("resets, counts", [
    (False, list(range(10))),  # one memory through the whole game
    (True, [0, 1, 2, 0, 1, 2, 0, 1, 2, 3]),  # zero again on the step after each lost life
])
def test_the_state_starts_again_after_a_lost_life_only_when_the_run_was_trained_so(resets, counts):
    model = CountingModel()
    score, length, _ = play_episode(LosingLives(), model, ObsNormalizer(), "greedy", torch.Generator(),
                                    life_loss_resets_state=resets)
    assert (score, length) == (0.0, 10)
    assert model.counts == counts


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
