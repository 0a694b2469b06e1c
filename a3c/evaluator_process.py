"""The evaluator that runs beside training: it plays the current shared network now and
then, logs how it scores and keeps the best checkpoint.

At the start and every ``eval_interval`` seconds it copies the shared weights, plays ``eval_episodes``
episodes on its own game with the policy (or both policies) of ``eval_policy`` (sampled
actions by default, as in training; greedy on request), sends an ``Evaluated`` message per
policy to the training loop, writes ``checkpoints/best.pt`` (atomically) when the mean of
the first policy improves, and every
``eval_clip_every`` evaluations writes a short clip of the game as an animated GIF under
``clips/`` and sends an ``EvalClip`` for TensorBoard. It is one single-threaded
process, so it takes at most its own share of the CPU (and none between evaluations);
it reads the shared weights without locking them and reports its own errors without
stopping; the main process restarts it if it dies, and its death never stops training.
"""
from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch

from a3c.checkpoint import save_checkpoint
from a3c.config import Config
from a3c.envs import ObsNormalizer, make_env
from a3c.memory import keep_freed_memory
from a3c.messages import EvalClip, Evaluated, Failed
from a3c.model import ActorCritic, network_settings
from a3c.policy import play_episode
from a3c.shared import SharedState

CLIP_STEPS = 300  # about 10 s of play at 30 frames per second
CLIP_SCALE = 2  # half-size frames keep a clip near 1 MB


def encode_gif(frames: list[np.ndarray], fps: int = 30) -> bytes:
    from PIL import Image

    images = [Image.fromarray(frame[::CLIP_SCALE, ::CLIP_SCALE]) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buffer.getvalue()


def run_evaluator(config: Config, shared: SharedState, queue, n_actions: int, best_score: float | None = None) -> None:
    """Process entry point: evaluates until the run stops; never raises."""
    torch.set_num_threads(1)
    keep_freed_memory()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a low priority: the workers own the cores, the evaluator takes what they leave, so a
    # long (or stalled greedy) episode slows the evaluations, never the training
    os.nice(config.eval_nice)
    policies = ["sample", "greedy"] if config.eval_policy == "both" else [config.eval_policy]
    model = ActorCritic(n_actions, **network_settings(config))
    best_path = Path(config.run_dir) / "checkpoints" / "best.pt"
    clips_dir = Path(config.run_dir) / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    best = -float("inf") if best_score is None else best_score
    evaluations, generator = 0, torch.Generator().manual_seed(config.seed)
    next_time = time.monotonic()  # a first evaluation right away: the curve starts at the initial network
    while not shared.stop.wait(max(0.0, min(1.0, next_time - time.monotonic()))) and not shared.should_stop():
        if time.monotonic() < next_time:
            continue
        next_time = time.monotonic() + config.eval_interval
        try:
            model.copy_from(shared.model)  # a snapshot: the workers keep updating the original
            step, obs_norm = shared.global_step, shared.obs_norm.clone()
            normalizer = ObsNormalizer.frozen_from_workers(obs_norm.tolist())
            env = make_env(config.env_id, render_mode="rgb_array",
                           frame=config.frame, frame_size=config.frame_size, frame_stack=config.frame_stack,
                           reward_scale=config.reward_scale, reward_clip=config.reward_clip)
            means = {}
            for policy in policies:
                scores, lengths = [], []
                for episode in range(config.eval_episodes):
                    if shared.stop.is_set():
                        break
                    score, length, _ = play_episode(
                        env, model, normalizer, policy, generator,
                        seed=config.seed + 10_000 + evaluations if episode == 0 else None,
                        max_steps=config.eval_max_steps, stop=shared.stop,
                        life_loss_resets_state=config.life_loss_resets_state)
                    scores.append(score)
                    lengths.append(length)
                if shared.stop.is_set():
                    break
                means[policy] = float(np.mean(scores))
                queue.put(Evaluated(step, means[policy], float(np.mean(lengths)), policy))
            if shared.stop.is_set():  # an evaluation cut short by the end of training is not reported
                env.close()
                break
            mean = means[policies[0]]
            if mean > best:
                best = mean
                save_checkpoint(best_path, {
                    "model": model.state_dict(), "optimizer": shared.optimizer.state_dict(),
                    "global_step": step, "obs_norm": obs_norm, "n_actions": n_actions,
                    "config": config.to_dict(), "eval_mean_return": mean, "eval_policy": policies[0],
                })
            if config.eval_clip_every and evaluations % config.eval_clip_every == 0:
                frames = []
                play_episode(env, model, normalizer, policies[0], generator, max_steps=CLIP_STEPS, stop=shared.stop,
                             on_step=lambda *_: frames.append(env.unwrapped.render()),
                             life_loss_resets_state=config.life_loss_resets_state)
                if shared.stop.is_set():
                    env.close()
                    break
                clip_path = clips_dir / f"eval-step{step:012d}.gif"
                tmp_path = clip_path.with_suffix(".tmp")
                tmp_path.write_bytes(encode_gif(frames))
                tmp_path.replace(clip_path)
                queue.put(EvalClip(step, str(clip_path)))
            env.close()
            evaluations += 1
        except Exception:  # noqa: BLE001 - an evaluation failure must not end training
            queue.put(Failed.now("evaluator"))
