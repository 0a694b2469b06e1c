"""Acting with a trained network: choose actions, play episodes, load an agent.

Used by the workers (sampling), the evaluator beside training and the evaluation
command line.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from a3c.checkpoint import load_checkpoint, restore_model
from a3c.config import UNRECORDED_MEANT, check_env_id
from a3c.envs import ObsNormalizer, make_env
from a3c.model import FRAME_STACK, ActorCritic, action_reward_inputs, network_settings

PRETRAINED = Path(__file__).resolve().parent / "pretrained" / "riverraid.pt"
"""The trained agent that ships with the package: ``--checkpoint pretrained``."""


def resolve_checkpoint(path: str | Path) -> Path:
    """``pretrained`` names the shipped agent; anything else is a path."""
    return PRETRAINED if str(path) == "pretrained" else Path(path)


def select_action(logits: torch.Tensor, policy: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Actions (N,) int64 for logits (N, A) (greedy: most probable; sample: drawn from pi)
    and the probabilities (N, A)."""
    probs = torch.softmax(logits, 1)
    if policy == "greedy":
        return probs.argmax(1), probs
    # inverse-CDF sampling: the first action whose cumulative probability exceeds u ~ U[0, 1).
    # A handful of small ops, where torch.multinomial adds checks and copies on the hot path.
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=probs.dtype)
    actions = torch.searchsorted(probs.cumsum(1), u, right=True).squeeze_(1)
    return actions.clamp_(max=probs.shape[1] - 1), probs  # the cumsum may end a rounding short of 1


def play_episode(env, model: ActorCritic, normalizer: ObsNormalizer, policy: str, generator: torch.Generator,
                 seed: int | None = None, on_step=None, max_steps: int | None = None,
                 stop=None, life_loss_resets_state: bool = False) -> tuple[float, int, float]:
    """One full episode (or ``max_steps``, or until ``stop.is_set()``); returns
    (raw score, length, seconds). ``normalizer`` is frozen: playing does not change it.

    ``on_step(obs, probs, action)`` is called before each action with the network's
    input (agent-view videos, clips). ``life_loss_resets_state``: the LSTM starts again
    from zero after each lost life, as the network was trained (the run's setting).
    """
    start = time.monotonic()
    obs, info = env.reset(seed=seed)
    state, lives = model.initial_state(1), info.get("lives")
    previous = previous_input(model)
    score, length, done = 0.0, 0, False
    while not done and (max_steps is None or length < max_steps) and not (stop is not None and stop.is_set()):
        obs = normalizer(obs, update=False).astype(np.float32, copy=False)
        logits, _, state = model.step(torch.from_numpy(obs).unsqueeze(0), state, previous=previous)
        actions, probs = select_action(logits, policy, generator)
        action = int(actions[0])
        if on_step is not None:
            on_step(obs, probs[0], action)
        obs, reward, terminated, truncated, info = env.step(action)
        score += info["raw_reward"]
        length += 1
        done = terminated or truncated
        state, lives, previous = next_step_inputs(model, state, lives, info.get("lives"), life_loss_resets_state,
                                                  action, reward)
    return score, length, time.monotonic() - start


def previous_input(model: ActorCritic, action: int | None = None, reward: float = 0.0) -> torch.Tensor:
    """The core's action-and-reward input (1, A + 1) for the step after ``action`` earned
    ``reward`` (the reward learnt from: the env's, clipped as in training); zeros for a
    first step (no action) or one after the state was reset. Built for every network: one
    without action_reward_input ignores it."""
    if action is None:
        return torch.zeros(1, model.n_actions + 1)
    return action_reward_inputs(torch.tensor([action]), torch.tensor([reward], dtype=torch.float32), model.n_actions)


def next_step_inputs(model: ActorCritic, state, lives, now, life_loss_resets_state: bool, action: int,
                     reward: float):
    """(the LSTM state the next step starts from, the lives now, its action-and-reward
    input): a zero state and zero input where a life was just lost and the run's setting
    ``life_loss_resets_state`` says so, else ``state`` and ``action`` with its ``reward``."""
    if life_loss_resets_state and lives is not None and now is not None and now < lives:
        return model.initial_state(1), now, previous_input(model)
    return state, now, previous_input(model, action, reward)


def resets_state(config: dict) -> bool:
    """Whether a checkpoint's network was trained with its LSTM reset at each lost life
    (its config, as a dict; one older than the setting was not)."""
    return bool(config.get("life_loss_resets_state", False))


def reward_settings(config: dict) -> dict:
    """How a run's rewards were scaled and clipped to learn from (a checkpoint's config, as
    a dict): an env made with these hands the network with action_reward_input the
    rewards it was trained to read."""
    return {"reward_scale": float(config.get("reward_scale", 1.0)),
            "reward_clip": float(config.get("reward_clip", 1.0))}


def frame_settings(config: dict) -> dict:
    """The view of the game a run's network sees (a checkpoint's config, as a dict; one
    older than a setting had its first value)."""
    return {"frame": config.get("frame", UNRECORDED_MEANT["frame"]),
            "frame_size": int(config.get("frame_size", UNRECORDED_MEANT["frame_size"])),
            "frame_stack": int(config.get("frame_stack", FRAME_STACK))}


def load_agent(path: str | Path, env_id: str | None = None):
    """(model, frozen normaliser, env_id, payload) from a checkpoint.

    Raises CheckpointError (an unusable file) or ConfigError (an unknown game), each
    with a one-line message.
    """
    path = resolve_checkpoint(path)
    payload = load_checkpoint(path)
    env_id = env_id or payload["config"].get("env_id", "Riverraid-v0")
    check_env_id(env_id)
    probe = make_env(env_id)
    n_actions = int(probe.action_space.n)
    probe.close()
    model = ActorCritic(n_actions, **network_settings(payload["config"]))
    restore_model(model, payload, path, env_id)
    return model, ObsNormalizer.frozen_from_workers(payload["obs_norm"].tolist()), env_id, payload
