"""Where an agent loses its lives: the screens before each lost life, as one PNG.

    python -m scripts.lost_lives --checkpoint pretrained --episodes 2 --out scripts/figures/lost_lives.png

Plays a checkpoint's agent (sampled actions, as in training) and keeps the last rendered
screens; when ALE's life counter drops (it drops after the explosion and the respawn
scroll, so the crash itself is further back) it saves the screens ``--before`` agent
steps earlier. Each row of the image is one lost life, oldest screen on the left. It
also prints each life's raw score and the bridges it destroyed (River Raid scores 500
for a bridge, and a new life starts at the last bridge destroyed: a life that scores
little after a bridge has met the river section beyond it), how often each action was
taken and the policy's entropy per step (ln 18 = 2.89 nats is a uniform choice): how
decided the agent is. With each life it prints the fuel left when the life ended (ALE's
RAM byte 55, 0-255, read ``FUEL_BEFORE`` agent steps before the counter drops: the
gauge holds still through the explosion, then fills for the next life about 26 steps
before the counter drops), so a life that ran dry (fuel 0) is told apart from a crash.
"""
from __future__ import annotations

import sys
from collections import Counter, deque
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from a3c.checkpoint import CheckpointError
from a3c.cli import ArgumentParser
from a3c.config import ConfigError
from a3c.envs import FUEL_RAM, make_env
from a3c.policy import (frame_settings, load_agent, next_step_inputs, previous_input, resets_state, reward_settings,
                        select_action)

BRIDGE_SCORE = 500  # River Raid's points for a bridge (nothing else scores 500)
FUEL_BEFORE = 40  # agent steps before the counter drops: inside the ~30 steps the gauge is frozen


def lost_lives(checkpoint: str, episodes: int, before: list[int], seed: int):
    """([(episode, agent step, [screen ``b`` steps before the counter dropped for b in before],
    the life's raw score, the bridges it destroyed, the fuel left when it ended)], [each
    episode's raw score], Counter of the actions' names taken, [the policy's entropy at
    each step])."""
    model, normalizer, env_id, payload = load_agent(checkpoint)
    env = make_env(env_id, seed=seed, render_mode="rgb_array", **frame_settings(payload["config"]),
                   **reward_settings(payload["config"]))
    generator, resets = torch.Generator().manual_seed(seed), resets_state(payload["config"])
    names = env.unwrapped.get_action_meanings()
    found, scores, taken, entropies = [], [], Counter(), []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        state, lives, step, done = model.initial_state(1), info["lives"], 0, False
        previous = previous_input(model)
        life_score, life_bridges, score = 0.0, 0, 0.0
        screens = deque(maxlen=max(before) + 1)
        fuel = deque(maxlen=FUEL_BEFORE + 1)
        while not done:
            frame = torch.from_numpy(normalizer(obs, update=False).astype(np.float32)).unsqueeze(0)
            logits, _, state = model.step(frame, state, previous=previous)
            actions, probs = select_action(logits, "sample", generator)
            taken[names[int(actions[0])]] += 1
            entropies.append(float(-(probs * probs.clamp_min(1e-12).log()).sum()))
            obs, reward, terminated, truncated, info = env.step(int(actions[0]))
            done, step = terminated or truncated, step + 1
            life_score += info["raw_reward"]
            score += info["raw_reward"]
            life_bridges += info["raw_reward"] == BRIDGE_SCORE
            screens.append(env.render())
            fuel.append(int(env.unwrapped.ale.getRAM()[FUEL_RAM]))
            state, _, previous = next_step_inputs(model, state, lives, info["lives"], resets, int(actions[0]), reward)
            if info["lives"] < lives or terminated:
                found.append((episode, step, [screens[max(0, len(screens) - 1 - b)] for b in before],
                              life_score, life_bridges, fuel[0]))
                lives, life_score, life_bridges = info["lives"], 0.0, 0
        scores.append(score)
    env.close()
    return found, scores, taken, entropies


def main() -> int:
    parser = ArgumentParser(prog="python -m scripts.lost_lives", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="pretrained", help="a checkpoint, or 'pretrained'")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--before", default="90,75,60,45",
                        help="agent steps before the life counter drops, one screen each (comma-separated)")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("lost_lives.png"))
    args = parser.parse_args()
    try:
        before = sorted({int(b) for b in args.before.split(",")}, reverse=True)
        if args.episodes < 1 or min(before) < 0:
            raise ValueError
    except ValueError:
        print("error: --episodes must be at least 1 and --before non-negative integers, e.g. 90,60,30",
              file=sys.stderr)
        return 2
    try:
        found, scores, taken, entropies = lost_lives(args.checkpoint, args.episodes, before, args.seed)
    except (CheckpointError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = [np.concatenate(screens, 1) for _, _, screens, _, _, _ in found]
    Image.fromarray(np.concatenate(rows, 0)).save(args.out)
    for episode, step, _, score, bridges, fuel in found:
        print(f"episode {episode}: a life lost at agent step {step} (this life: score {score:.0f}, "
              f"{bridges} bridge{'' if bridges == 1 else 's'}, fuel {fuel} of 255)")
    for episode, score in enumerate(scores):
        print(f"episode {episode}: score {score:.0f}")
    total = sum(taken.values())
    print("actions taken: " + ", ".join(f"{name} {count / total:.0%}" for name, count in taken.most_common()))
    dry = sum(fuel == 0 for *_, fuel in found)
    print(f"lives that ran out of fuel: {dry} of {len(found)}")
    print(f"policy entropy per step: mean {np.mean(entropies):.2f}, min {min(entropies):.2f} nats")
    print(f"wrote {args.out}: {len(found)} rows, screens {', '.join(map(str, before))} steps before each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
