"""Frame preprocessing and input normalisation: the original design's, computed fast."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from a3c.envs import ObsNormalizer, preprocess_frame


def reference_frame(frame: np.ndarray) -> np.ndarray:
    """The textbook steps: crop the play field, area-resize to 80x80 then 42x42, mean of
    the colour channels, scale to [0, 1]."""
    small = cv2.resize(frame[34:194, :160], (80, 80), interpolation=cv2.INTER_AREA)
    small = cv2.resize(small, (42, 42), interpolation=cv2.INTER_AREA)
    return (small.astype(np.float64).mean(axis=2) / 255.0)[None]


@pytest.mark.parametrize("seed", range(5))
def test_a_frame_becomes_a_42x42_grey_image_in_0_1(seed):
    frame = np.random.default_rng(seed).integers(0, 256, (210, 160, 3), dtype=np.uint8)
    out = preprocess_frame(frame)
    assert out.shape == (1, 42, 42) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference_frame(frame), rtol=0, atol=1e-6)


def test_grey_is_the_plain_mean_of_the_channels():
    frame = np.empty((210, 160, 3), dtype=np.uint8)
    frame[:] = (30, 60, 150)
    frame[:34] = 255  # the score bar above the play field is cropped away
    np.testing.assert_allclose(preprocess_frame(frame), 80 / 255, rtol=1e-6)


def test_the_first_frame_is_normalised_by_its_own_statistics():
    frame = np.random.default_rng(0).random((1, 42, 42), dtype=np.float32)
    out = ObsNormalizer()(frame)
    # bias correction: after one frame, mean and std are that frame's (within float32)
    assert abs(float(out.mean())) < 1e-5 and abs(float(out.std()) - 1.0) < 1e-5


def test_statistics_follow_the_frames_and_freeze_on_request():
    rng = np.random.default_rng(1)
    normalizer = ObsNormalizer(alpha=0.9)
    for _ in range(200):
        normalizer(3.0 + 2.0 * rng.standard_normal((1, 42, 42)).astype(np.float32))
    out = normalizer(np.full((1, 42, 42), 3.0, dtype=np.float32))
    assert np.allclose(out, 0.0, atol=0.05)  # (3 - mean 3) / std
    frozen = ObsNormalizer.frozen_from_workers([normalizer.state()])
    before = frozen.state()
    frozen(np.zeros((1, 42, 42), dtype=np.float32))
    assert frozen.state() == before


@pytest.mark.parametrize("frame", ["original", "river_and_gauge"])
def test_the_training_env_passes_gymnasiums_env_checker_in_full(frame):
    import warnings

    from gymnasium.utils.env_checker import check_env

    from a3c.envs import make_env

    env = make_env("Riverraid-v0", frame=frame, frame_size=42)
    with warnings.catch_warnings():  # the checker warns that the env is wrapped: it is, on purpose
        warnings.simplefilter("ignore")
        check_env(env)  # the close check included: the env is re-made from env.spec
    assert [w.name for w in env.spec.additional_wrappers] == ["NetworkInputFrames", "ClipRewardKeepScore"]
    env.close()


def test_the_river_and_gauge_view_keeps_the_top_of_the_river_and_the_fuel_needle():
    from a3c.envs import preprocess_grey_frame

    base = np.full((210, 160), 100, dtype=np.uint8)
    base[175:189, 60:100] = 140  # the gauge's background
    needle = base.copy()
    needle[178:186, 90:92] = 200  # only the fuel needle, moved
    top = base.copy()
    top[4:12, 70:80] = 30  # something at the very top of the river
    plain = preprocess_grey_frame(base, 42)
    assert np.abs(preprocess_grey_frame(needle, 42) - plain).max() > 0.02
    assert np.abs(preprocess_grey_frame(top, 42) - plain).max() > 0.02
    # the original view crops the top of the river away
    rgb = lambda grey: np.repeat(grey[..., None], 3, axis=2)  # noqa: E731
    assert np.array_equal(preprocess_frame(rgb(top)), preprocess_frame(rgb(base)))


def test_a_batch_is_normalised_game_by_game_with_a_final_frame_before_the_next_episodes_first():
    rng = np.random.default_rng(1)
    frames = rng.random((3, 1, 4, 4)).astype(np.float32)
    finals = np.empty(3, dtype=object)
    finals[1] = rng.random((1, 4, 4)).astype(np.float32)
    expected, reference = frames.copy(), ObsNormalizer(alpha=0.5)
    expected_final = None
    for b in range(3):
        if b == 1:
            expected_final = reference(finals[1].copy())
        expected[b] = reference(expected[b])
    ours = ObsNormalizer(alpha=0.5)
    ours.normalize_batch(frames, np.array([False, True, False]), finals)
    np.testing.assert_allclose(frames, expected, rtol=1e-6)
    np.testing.assert_allclose(finals[1], expected_final, rtol=1e-6)
    assert ours.count == reference.count == 4


@pytest.mark.parametrize("scale, bound, expected", [(1.0, 1.0, [1.0, 1.0, 0.0, -1.0]),
                                                    (0.01, 10.0, [5.0, 0.3, 0.0, -0.5]),
                                                    (0.01, 1.0, [1.0, 0.3, 0.0, -0.5])])
def test_the_learning_reward_is_scaled_then_clipped_and_the_raw_score_kept(scale, bound, expected):
    import gymnasium as gym

    from a3c.envs import ClipRewardKeepScore

    class Scores(gym.Env):
        observation_space, action_space = gym.spaces.Discrete(1), gym.spaces.Discrete(1)
        rewards = [500.0, 30.0, 0.0, -50.0]  # a bridge, a tanker, nothing, a made-up loss

        def reset(self, *, seed=None, options=None):
            self.k = 0
            return 0, {}

        def step(self, action):
            self.k += 1
            return 0, self.rewards[self.k - 1], False, False, {}

    env = ClipRewardKeepScore(Scores(), scale, bound)
    env.reset()
    learned, raw = [], []
    for _ in range(4):
        _, reward, _, _, info = env.step(0)
        learned.append(reward)
        raw.append(info["raw_reward"])
    assert learned == pytest.approx(expected) and raw == Scores.rewards
