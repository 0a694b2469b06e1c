"""Atari environments with the original design's preprocessing.

Frame: crop rows 34..194 (the play field), resize to 80x80 then 42x42 (area
interpolation), mean over colour channels, scale to [0, 1]; then a running
mean/std normalisation with bias correction (alpha 0.9999) whose state
(:class:`ObsNormalizer`) is saved in checkpoints. Rewards are clipped to [-1, 1]
for learning; the raw game score is in ``info["raw_reward"]``.
"""
from __future__ import annotations

import functools
import warnings

import cv2
import gymnasium as gym
import numpy as np

FRAME_SIZE = 42
_registered = False


def _register() -> None:
    global _registered
    if not _registered:
        import ale_py

        gym.register_envs(ale_py)
        _registered = True


def registered_env_ids() -> list[str]:
    _register()
    return sorted(gym.registry.keys())


# the channel mean and the 1/255 scale as one weighted sum: cv2.transform does it 9x
# faster than numpy's mean over the channel axis (single-op timings, 2026-11-26, 2-core VM)
_GREY_WEIGHTS = np.full((1, 3), 1.0 / (3 * 255), dtype=np.float32)


def preprocess_frame(frame: np.ndarray) -> np.ndarray:
    """(210, 160, 3) uint8 RGB -> (1, 42, 42) float32 in [0, 1]."""
    cropped = frame[34:34 + 160, :160]
    small = cv2.resize(cropped, (80, 80), interpolation=cv2.INTER_AREA)
    small = cv2.resize(small, (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_AREA)
    grey = cv2.transform(small.astype(np.float32), _GREY_WEIGHTS)
    return grey[None]


class ObsNormalizer:
    """Running mean and std of frame statistics, with bias correction.

    mean <- alpha mean + (1 - alpha) frame.mean(), likewise std; the corrected values
    divide by 1 - alpha^count, as Adam does, so early frames are not pulled to 0.
    """

    def __init__(self, alpha: float = 0.9999) -> None:
        self.alpha = alpha
        self.mean, self.std, self.count = 0.0, 0.0, 0
        self.frozen = False

    def __call__(self, obs: np.ndarray, update: bool = True) -> np.ndarray:
        if update and not self.frozen:
            self.count += 1
            mean, std = cv2.meanStdDev(obs[0])  # one pass, as numpy's mean() and std() (ddof 0)
            self.mean = self.alpha * self.mean + (1 - self.alpha) * float(mean[0, 0])
            self.std = self.alpha * self.std + (1 - self.alpha) * float(std[0, 0])
        if self.count == 0:
            return obs
        correction = 1 - self.alpha ** self.count
        return (obs - self.mean / correction) / (self.std / correction + 1e-8)

    @classmethod
    def frozen_from_workers(cls, rows) -> "ObsNormalizer":
        """One normaliser for evaluation, from the workers' saved states (rows of
        [mean, std, count]): their bias-corrected statistics averaged, never updated
        again, so evaluation sees inputs scaled as the workers saw them."""
        normalizer = cls()
        used = [(float(m), float(s), int(c)) for m, s, c in rows if c > 0]
        if used:
            corrected = [(m / (1 - normalizer.alpha ** c), s / (1 - normalizer.alpha ** c)) for m, s, c in used]
            normalizer.mean = sum(m for m, _ in corrected) / len(corrected)
            normalizer.std = sum(s for _, s in corrected) / len(corrected)
            normalizer.count = 10 ** 9  # alpha^count = 0: the stored values are already corrected
        normalizer.frozen = True
        return normalizer

    def state(self) -> list[float]:
        return [self.mean, self.std, float(self.count)]

    def load_state(self, state) -> None:
        self.mean, self.std, self.count = float(state[0]), float(state[1]), int(state[2])


class AtariPreprocessing(gym.ObservationWrapper):
    """Crop, resize, grey, scale and normalise observations (see module docstring)."""

    def __init__(self, env: gym.Env, normalizer: ObsNormalizer | None = None, update_stats: bool = True):
        super().__init__(env)
        self.normalizer = normalizer or ObsNormalizer()
        self.update_stats = update_stats
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1, FRAME_SIZE, FRAME_SIZE), np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return self.normalizer(preprocess_frame(observation), self.update_stats).astype(np.float32, copy=False)


class ClipReward(gym.Wrapper):
    """Clip rewards to [-1, 1] for learning; keep the raw score in info['raw_reward']."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["raw_reward"] = reward
        return obs, float(np.clip(reward, -1.0, 1.0)), terminated, truncated, info


def make_env(env_id: str, seed: int | None = None, normalizer: ObsNormalizer | None = None,
             update_stats: bool = True, render_mode: str | None = None, wrap_game=None) -> gym.Env:
    """The training env: ALE game + preprocessing + reward clipping.

    ``wrap_game`` wraps the raw game before preprocessing (e.g. gymnasium's
    RecordVideo, which must see the real frames). The caller's first
    ``reset(seed=...)`` seeds the game (sticky actions included).
    """
    _register()
    with warnings.catch_warnings():  # v0 ids are the original design's; gymnasium calls them old
        warnings.filterwarnings("ignore", message=r".*is out of date.*")
        env = gym.make(env_id, render_mode=render_mode)
    if wrap_game is not None:
        env = wrap_game(env)
    env = ClipReward(AtariPreprocessing(env, normalizer, update_stats))
    env.action_space.seed(seed)
    return env


def make_vector_env(env_id: str, num_envs: int, normalizer: ObsNormalizer | None = None) -> gym.vector.SyncVectorEnv:
    """``num_envs`` training envs stepped in this process (one worker's batch).

    Each game is reset in the step that ends it (gymnasium's SAME_STEP autoreset): the
    observation returned starts the next episode and the last one of the old episode is
    in ``info["final_obs"]``. ``RecordEpisodeStatistics`` on the raw game puts each ended
    episode's score and length in ``info["final_info"]["episode"]`` ("r", "l"), masked by
    ``"_episode"``. The envs share one normaliser, so the worker's statistics see all of them.
    """
    from gymnasium.wrappers import RecordEpisodeStatistics

    normalizer = normalizer or ObsNormalizer()
    make_one = functools.partial(make_env, env_id, normalizer=normalizer, wrap_game=RecordEpisodeStatistics)
    # copy=False: the worker copies each batch of frames into its own rollout buffer
    return gym.vector.SyncVectorEnv([make_one] * num_envs, copy=False,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
