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
