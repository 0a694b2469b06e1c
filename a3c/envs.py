"""Atari environments and the network's view of the game.

Two views (``frame`` in the config), both resized to ``frame_size`` squared (area
interpolation) and scaled to [0, 1]:
  original         the original design's: rows 34..194 of the RGB screen, resized to
                   80x80 first (so a frame_size above 80 adds no detail), the mean of
                   the colour channels;
  river_and_gauge  ALE's luminance greyscale screen, rows 2..190 and columns 8..160: the
                   whole river up to the top of the screen and the fuel gauge, without
                   the black left border and the lives count.
  jet_centred      river_and_gauge with the river shifted sideways so that the player's
                   jet is always in the middle column (an egocentric view: "a bank just left
                   of me" is then the same input wherever the jet is); the gauge rows stay
                   put. The jet is found by its colour in the rows it always flies in.
  jet_centred_fuel_bar
                   jet_centred with the gauge rows replaced by a bar as long as the tank is
                   full (white from the left edge, black after it), read from the needle's
                   column on the screen: at 42x42 the needle itself is under one pixel
                   wide, the bar spans up to 42 columns of 6 rows.
With ``frame_stack`` K > 1 the last K views, oldest first, are the K channels of each
observation (gymnasium's FrameStackObservation). The env stops there, so the same seed
and actions give the same observations.
The agent then normalises them with a running mean/std (:class:`ObsNormalizer`, bias
corrected, alpha 0.9999) whose state is saved in checkpoints. The reward to learn from
is scaled and clipped (by default to [-1, 1]); the raw game score is in
``info["raw_reward"]``.
"""
from __future__ import annotations

import functools
import warnings

import cv2
import gymnasium as gym
import numpy as np

FRAME_SIZE = 42
# the default run's view (Config.frame, which imports this module: a test keeps the two
# equal), what a caller that names no view (a benchmark, a probe) gets
DEFAULT_FRAME = "jet_centred"
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


# the channel mean and the 1/255 scale as one weighted sum: one cv2.transform pass, where
# numpy's mean over the channel axis walks the frame several times
_GREY_WEIGHTS = np.full((1, 3), 1.0 / (3 * 255), dtype=np.float32)


def preprocess_frame(frame: np.ndarray, size: int = FRAME_SIZE) -> np.ndarray:
    """The original view: (210, 160, 3) uint8 RGB -> (1, size, size) float32 in [0, 1]."""
    cropped = frame[34:34 + 160, :160]
    small = cv2.resize(cropped, (80, 80), interpolation=cv2.INTER_AREA)
    small = cv2.resize(small, (size, size), interpolation=cv2.INTER_AREA)
    grey = cv2.transform(small.astype(np.float32), _GREY_WEIGHTS)
    return grey[None]


# the river_and_gauge view's rows and columns; rows 2..162 are the river, 163..189 the gauge
VIEW_ROWS, VIEW_COLUMNS, RIVER_ROWS = slice(2, 190), slice(8, 160), 161


def preprocess_grey_frame(frame: np.ndarray, size: int = FRAME_SIZE) -> np.ndarray:
    """The river_and_gauge view: (210, 160) uint8 luminance -> (1, size, size) float32 in [0, 1]."""
    small = cv2.resize(frame[VIEW_ROWS, VIEW_COLUMNS], (size, size), interpolation=cv2.INTER_AREA)
    return (small.astype(np.float32) * (1.0 / 255.0))[None]


# the player's jet: always in these screen rows, drawn in this colour (RGB), 5 to 7 columns
# wide; wider spreads of the colour there are a passing road or debris, not the jet
JET_ROWS = slice(145, 158)
JET_RGB = (232, 232, 74)
JET_MAX_SPREAD = 12
SCREEN_CENTRE = 84  # the middle of columns 8..160, where a new life's jet appears


def _columns_in_colour(band: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """The columns of an RGB band where any pixel has exactly this colour."""
    match = (band[..., 0] == rgb[0]) & (band[..., 1] == rgb[1]) & (band[..., 2] == rgb[2])
    return np.flatnonzero(match.any(axis=0))


def jet_column(frame: np.ndarray) -> int | None:
    """The screen column of the jet's centre in an RGB frame, or None where it is not
    visible (explosion, respawn) or cannot be told apart."""
    columns = _columns_in_colour(frame[JET_ROWS, VIEW_COLUMNS], JET_RGB)
    if len(columns) == 0 or columns[-1] - columns[0] > JET_MAX_SPREAD:
        return None
    return VIEW_COLUMNS.start + (int(columns[0]) + int(columns[-1])) // 2


def _jet_centred_screen(frame: np.ndarray, jet_x: int) -> np.ndarray:
    """The jet_centred view at the screen's resolution: (188, 152) uint8 greyscale."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[VIEW_ROWS, VIEW_COLUMNS]
    width = grey.shape[1]
    half = width // 2
    river = cv2.copyMakeBorder(grey[:RIVER_ROWS], 0, 0, half, width - half, cv2.BORDER_REPLICATE)
    left = jet_x - VIEW_COLUMNS.start  # window [left, left + width) of the padded river is centred on the jet
    return np.concatenate([river[:, left:left + width], grey[RIVER_ROWS:]])


def _to_input(view: np.ndarray, size: int) -> np.ndarray:
    small = cv2.resize(view, (size, size), interpolation=cv2.INTER_AREA)
    return (small.astype(np.float32) * (1.0 / 255.0))[None]


def preprocess_jet_centred(frame: np.ndarray, jet_x: int, size: int = FRAME_SIZE) -> np.ndarray:
    """The jet_centred view: (210, 160, 3) uint8 RGB and the jet's column ->
    (1, size, size) float32 in [0, 1]. The river rows are shifted so that column
    ``jet_x`` lands in the middle, the banks beyond the screen's edges extended
    (replicated edge columns); the gauge rows are not shifted."""
    return _to_input(_jet_centred_screen(frame, jet_x), size)


# the fuel gauge's needle: drawn in this colour (RGB), 1-2 columns wide, in these rows and
# inside the gauge's box (these columns); its left column is 68 on an empty tank and 99 on
# a full one, in proportion to the fuel in the tank (FUEL_RAM: a test checks it)
NEEDLE_ROWS, NEEDLE_COLUMNS = slice(179, 189), slice(65, 104)
NEEDLE_RGB = (252, 252, 84)
NEEDLE_EMPTY, NEEDLE_FULL = 68, 99
# the game's own fuel byte in the console's RAM, 0 (empty) to 255 (full): the agent reads
# the needle on the screen; the diagnostics (scripts.lost_lives) and the tests read this
FUEL_RAM = 55


def fuel_level(frame: np.ndarray) -> float | None:
    """The fuel in the tank, 0 (empty) to 1 (full), read from the gauge's needle in an RGB
    frame, or None where no needle is drawn."""
    columns = _columns_in_colour(frame[NEEDLE_ROWS, NEEDLE_COLUMNS], NEEDLE_RGB)
    if len(columns) == 0:
        return None
    left = NEEDLE_COLUMNS.start + int(columns[0])
    return min(max((left - NEEDLE_EMPTY) / (NEEDLE_FULL - NEEDLE_EMPTY), 0.0), 1.0)


def preprocess_jet_centred_fuel_bar(frame: np.ndarray, jet_x: int, fuel: float,
                                    size: int = FRAME_SIZE) -> np.ndarray:
    """The jet_centred_fuel_bar view: the jet_centred view with its gauge rows replaced by
    a bar, white over the first ``fuel`` (0 to 1) of the width and black after it."""
    view = _jet_centred_screen(frame, jet_x)
    gauge = view[RIVER_ROWS:]
    gauge[:] = 0
    gauge[:, :round(fuel * gauge.shape[1])] = 255
    return _to_input(view, size)


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
            # the newest view (the last channel: each view is counted once, as it arrives);
            # one pass, as numpy's mean() and std() (ddof 0)
            mean, std = cv2.meanStdDev(obs[-1])
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

    def normalize_batch(self, frames: np.ndarray, ended=None, final_frames=None) -> np.ndarray:
        """Normalise a vector env's frames (B, K, S, S) in place, one game after another.

        Where a game ended (``ended[b]``), its final frame (``final_frames[b]``, in place
        too) comes before the frame that starts its next episode, as the game showed them.
        """
        for b in range(frames.shape[0]):
            if ended is not None and ended[b]:
                final_frames[b][...] = self(final_frames[b])
            frames[b] = self(frames[b])
        return frames

    def state(self) -> list[float]:
        return [self.mean, self.std, float(self.count)]

    def scale(self) -> float:
        """What a frame is divided by now (after the mean is taken off): a difference of
        normalised frames times this is the difference of the frames themselves."""
        if self.count == 0:
            return 1.0
        return self.std / (1 - self.alpha ** self.count) + 1e-8

    def load_state(self, state) -> None:
        self.mean, self.std, self.count = float(state[0]), float(state[1]), int(state[2])


class NetworkInputFrames(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Crop, resize, grey and scale observations to [0, 1] (see module docstring).

    Records its constructor arguments, as gymnasium's wrappers do, so the env can be
    re-made from ``env.spec``.
    """

    def __init__(self, env: gym.Env, frame: str = DEFAULT_FRAME, frame_size: int = FRAME_SIZE):
        gym.utils.RecordConstructorArgs.__init__(self, frame=frame, frame_size=frame_size)
        gym.ObservationWrapper.__init__(self, env)
        self.preprocess = {"original": preprocess_frame, "river_and_gauge": preprocess_grey_frame,
                           "jet_centred": self._jet_centred, "jet_centred_fuel_bar": self._jet_centred_fuel_bar}[frame]
        self.frame, self.frame_size = frame, frame_size
        self.jet_x, self.fuel = SCREEN_CENTRE, 1.0
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1, frame_size, frame_size), np.float32)

    def reset(self, **kwargs):
        self.jet_x, self.fuel = SCREEN_CENTRE, 1.0  # a new game: the jet in the middle, a full tank
        return super().reset(**kwargs)

    def _follow_jet(self, frame: np.ndarray) -> None:
        # where the jet is not visible (exploding, respawning) the view keeps its last place
        found = jet_column(frame)
        if found is not None:
            self.jet_x = found

    def _jet_centred(self, frame: np.ndarray, size: int) -> np.ndarray:
        self._follow_jet(frame)
        return preprocess_jet_centred(frame, self.jet_x, size)

    def _jet_centred_fuel_bar(self, frame: np.ndarray, size: int) -> np.ndarray:
        self._follow_jet(frame)
        fuel = fuel_level(frame)
        if fuel is not None:  # where no needle is drawn the bar keeps its last length
            self.fuel = fuel
        return preprocess_jet_centred_fuel_bar(frame, self.jet_x, self.fuel, size)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return self.preprocess(observation, self.frame_size)


class ClipRewardKeepScore(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """The reward to learn from: ``clip(scale * reward, -bound, bound)`` (by default the
    sign, for River Raid's positive scores); the raw score stays in info['raw_reward']."""

    def __init__(self, env: gym.Env, scale: float = 1.0, bound: float = 1.0):
        gym.utils.RecordConstructorArgs.__init__(self, scale=scale, bound=bound)
        gym.Wrapper.__init__(self, env)
        self.scale, self.bound = scale, bound

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["raw_reward"] = reward
        return obs, float(np.clip(self.scale * reward, -self.bound, self.bound)), terminated, truncated, info


def make_env(env_id: str, seed: int | None = None, render_mode: str | None = None, wrap_game=None,
             frame: str = DEFAULT_FRAME, frame_size: int = FRAME_SIZE, reward_scale: float = 1.0,
             reward_clip: float = 1.0, frame_stack: int = 1) -> gym.Env:
    """The training env: ALE game + preprocessing + reward clipping.

    ``wrap_game`` wraps the raw game before preprocessing (e.g. gymnasium's
    RecordVideo, which must see the real frames). The caller's first
    ``reset(seed=...)`` seeds the game (sticky actions included).
    """
    _register()
    with warnings.catch_warnings():  # v0 ids are the original design's; gymnasium calls them old
        warnings.filterwarnings("ignore", message=r".*is out of date.*")
        # obs_type changes what the env returns, never the game (render() stays RGB)
        obs_type = "grayscale" if frame == "river_and_gauge" else "rgb"
        env = gym.make(env_id, render_mode=render_mode, obs_type=obs_type)
    if wrap_game is not None:
        env = wrap_game(env)
    env = NetworkInputFrames(env, frame, frame_size)
    if frame_stack > 1:  # (K, 1, S, S), the oldest view first -> K channels
        env = gym.wrappers.ReshapeObservation(gym.wrappers.FrameStackObservation(env, frame_stack),
                                              (frame_stack, frame_size, frame_size))
    env = ClipRewardKeepScore(env, reward_scale, reward_clip)
    env.action_space.seed(seed)
    return env


def make_vector_env(env_id: str, num_envs: int, frame: str = DEFAULT_FRAME, frame_size: int = FRAME_SIZE,
                    reward_scale: float = 1.0, reward_clip: float = 1.0,
                    frame_stack: int = 1) -> gym.vector.SyncVectorEnv:
    """``num_envs`` training envs stepped in this process (one worker's batch).

    Each game is reset in the step that ends it (gymnasium's SAME_STEP autoreset): the
    observation returned starts the next episode and the last one of the old episode is
    in ``info["final_obs"]``. ``RecordEpisodeStatistics`` on the raw game puts each ended
    episode's score and length in ``info["final_info"]["episode"]`` ("r", "l"), masked by
    ``"_episode"``.
    """
    from gymnasium.wrappers import RecordEpisodeStatistics

    make_one = functools.partial(make_env, env_id, wrap_game=RecordEpisodeStatistics, frame=frame,
                                 frame_size=frame_size, reward_scale=reward_scale, reward_clip=reward_clip,
                                 frame_stack=frame_stack)
    # copy=False: the worker copies each batch of frames into its own rollout buffer
    return gym.vector.SyncVectorEnv([make_one] * num_envs, copy=False,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
