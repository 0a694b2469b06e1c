"""``python -m a3c.evaluate --checkpoint PATH``: play full episodes, report scores, record videos.

Plays with the checkpoint's network and its workers' input normalisation (frozen), prints
a row per episode (raw score, length, seconds) and the mean, std, min and max, writes a
JSON summary, records MP4 videos of the real game frames with gymnasium's RecordVideo,
and optionally an "agent view" video: the game, the input frame the network sees and its
action probabilities side by side. Any unusable input is one line on stderr and exit 2.
"""
from __future__ import annotations

import json
import statistics
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import a3c.policy as policy_module
from a3c.checkpoint import CheckpointError
from a3c.cli import ArgumentParser
from a3c.config import ConfigError, check_run_dir
from a3c.envs import make_env
from a3c.policy import frame_settings, play_episode, resets_state, reward_settings


class EvalError(ValueError):
    """Unusable evaluation input, with a one-line message."""


@dataclass
class EpisodeResult:
    episode: int
    score: float
    length: int
    seconds: float
    video: str | None = None
    agent_view: str | None = None


def load_agent(path: str | Path, env_id: str | None = None):
    """policy.load_agent with its errors as EvalError."""
    try:
        return policy_module.load_agent(path, env_id)
    except (CheckpointError, ConfigError) as error:
        raise EvalError(str(error)) from None


class AgentViewWriter:
    """Streams "agent view" frames to an MP4: game | network input | action probabilities."""

    HEIGHT, INPUT_SIDE, BARS_WIDTH = 224, 210, 240

    def __init__(self, path: Path, game_width: int, action_names: list[str], fps: int = 30) -> None:
        import imageio_ffmpeg

        self.path, self.action_names = path, action_names
        self.width = (game_width + self.INPUT_SIDE + self.BARS_WIDTH + 15) // 16 * 16
        self.writer = imageio_ffmpeg.write_frames(str(path), (self.width, self.HEIGHT), fps=fps, quality=7)
        self.writer.send(None)  # start the encoder
        self.frames = 0

    def add(self, game_frame: np.ndarray, obs: np.ndarray, probs: torch.Tensor, action: int) -> None:
        import cv2

        canvas = np.zeros((self.HEIGHT, self.width, 3), np.uint8)
        height, width = game_frame.shape[:2]
        canvas[:height, :width] = game_frame
        # the newest normalised view: about [-3, 3] standard deviations mapped to black..white
        grey = np.clip((obs[-1] + 3.0) * (255.0 / 6.0), 0, 255).astype(np.uint8)
        side = self.INPUT_SIDE
        canvas[:side, width:width + side] = cv2.resize(grey, (side, side), interpolation=cv2.INTER_NEAREST)[..., None]
        left, row = width + side + 4, (self.HEIGHT - 4) // len(self.action_names)
        for k, (name, p) in enumerate(zip(self.action_names, probs.tolist())):
            top = 2 + k * row
            colour = (255, 200, 0) if k == action else (90, 170, 255)
            cv2.rectangle(canvas, (left + 100, top + 1), (left + 100 + int(p * 130), top + row - 2), colour, -1)
            cv2.putText(canvas, name, (left, top + row - 3), cv2.FONT_HERSHEY_PLAIN, 0.7, (230, 230, 230), 1)
        self.writer.send(canvas)
        self.frames += 1

    def close(self) -> None:
        self.writer.close()


def check_writable_dir(path: Path, what: str) -> None:
    try:
        check_run_dir(path)
    except ConfigError as error:
        raise EvalError(str(error).replace("run_dir", what, 1)) from None


def evaluate(checkpoint: Path, episodes: int = 10, policy: str = "sample", seed: int = 0,
             video_dir: Path | None = None, video_episodes: list[int] | None = None, agent_view: bool = False,
             env_id: str | None = None, max_steps: int | None = None, stream=None) -> dict:
    """Play ``episodes`` full episodes; returns the JSON-ready summary."""
    from gymnasium.wrappers import RecordVideo

    stream = stream or sys.stdout
    if episodes < 1:
        raise EvalError(f"--episodes must be at least 1, got {episodes}")
    model, normalizer, env_id, payload = load_agent(checkpoint, env_id)
    recorded = set(range(episodes)) if video_episodes is None else set(video_episodes)
    wrap_game = None
    if video_dir is not None:
        check_writable_dir(video_dir, "video dir")
        wrap_game = lambda game: RecordVideo(game, str(video_dir), episode_trigger=lambda e: e in recorded,  # noqa: E731
                                             name_prefix="game", fps=30)
    with warnings.catch_warnings():  # RecordVideo warns that the folder exists: we just made it
        warnings.filterwarnings("ignore", message=".*Overwriting existing videos.*")
        env = make_env(env_id, seed=seed,
                       render_mode="rgb_array" if video_dir is not None else None, wrap_game=wrap_game,
                       **frame_settings(payload["config"]), **reward_settings(payload["config"]))
    action_names = env.unwrapped.get_action_meanings()
    generator = torch.Generator().manual_seed(seed)

    print(f"{'episode':>7}  {'score':>8}  {'length':>7}  {'seconds':>7}", file=stream)
    results = []
    for episode in range(episodes):
        viewer, on_step = None, None
        if agent_view and video_dir is not None and episode in recorded:
            path = video_dir / f"agent-view-episode-{episode}.mp4"
            viewer = AgentViewWriter(path, env.unwrapped.render().shape[1], action_names)
            on_step = lambda obs, probs, action: viewer.add(env.unwrapped.render(), obs, probs, action)  # noqa: E731
        score, length, seconds = play_episode(env, model, normalizer, policy, generator,
                                              seed=seed if episode == 0 else None, on_step=on_step,
                                              max_steps=max_steps,
                                              life_loss_resets_state=resets_state(payload["config"]))
        if viewer is not None:
            viewer.close()
        video = video_dir / f"game-episode-{episode}.mp4" if video_dir is not None and episode in recorded else None
        results.append(EpisodeResult(episode, score, length, round(seconds, 3),
                                     str(video) if video else None, str(viewer.path) if viewer else None))
        print(f"{episode:>7}  {score:>8.0f}  {length:>7}  {seconds:>7.1f}", file=stream, flush=True)
    env.close()  # flushes the last video

    scores = [r.score for r in results]
    summary = {
        "checkpoint": str(checkpoint), "env_id": env_id, "policy": policy, "seed": seed,
        "global_step": payload["global_step"], "episodes": [asdict(r) for r in results],
        "mean": statistics.fmean(scores), "std": statistics.pstdev(scores), "min": min(scores), "max": max(scores),
        "mean_length": statistics.fmean(r.length for r in results),
    }
    print(f"mean {summary['mean']:.1f}  std {summary['std']:.1f}  min {summary['min']:.0f}  "
          f"max {summary['max']:.0f}  over {episodes} episodes", file=stream)
    return summary


def parse_episode_list(text: str) -> list[int]:
    try:
        return sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise EvalError(f"--video-episodes takes comma-separated episode numbers, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    torch.set_num_threads(1)
    parser = ArgumentParser(prog="python -m a3c.evaluate", description=__doc__.split("\n\n")[1])
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="a checkpoint (latest.pt or best.pt), or 'pretrained': the agent shipped with the package")
    parser.add_argument("--episodes", type=int, default=10, help="full episodes to play (default 10)")
    parser.add_argument("--policy", choices=["sample", "greedy"], default="sample",
                        help="sample (default): draw actions from the policy, as in training; "
                             "greedy: the most probable action")
    parser.add_argument("--seed", type=int, default=0, help="seeds the game and the sampling")
    parser.add_argument("--video-dir", type=Path, help="write MP4 videos of the games here")
    parser.add_argument("--video-episodes", help="which episodes to record, e.g. 0,3 (default: all)")
    parser.add_argument("--agent-view", action="store_true",
                        help="also record game | network input | action probabilities videos")
    parser.add_argument("--json", type=Path, help="write the summary as JSON here")
    parser.add_argument("--env-id", help="play another game than the checkpoint's (same action count)")
    parser.add_argument("--max-steps", type=int, help="cut episodes after this many agent steps "
                        "(default: only the game's own limit of 108,000 frames)")
    args = parser.parse_args(argv)
    try:
        if args.agent_view and args.video_dir is None:
            raise EvalError("--agent-view needs --video-dir")
        if args.json is not None and args.json.is_dir():
            raise EvalError(f"--json {args.json} is a folder: give a file name")
        if args.json is not None:
            check_writable_dir(args.json.parent if str(args.json.parent) else Path("."), "--json folder")
        episodes = parse_episode_list(args.video_episodes) if args.video_episodes else None
        if args.max_steps is not None and args.max_steps < 1:
            raise EvalError(f"--max-steps must be at least 1, got {args.max_steps}")
        summary = evaluate(args.checkpoint, args.episodes, args.policy, args.seed, args.video_dir, episodes,
                           args.agent_view, args.env_id, args.max_steps)
    except EvalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
