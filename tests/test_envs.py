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


@pytest.mark.parametrize("frame", ["original", "river_and_gauge", "jet_centred", "jet_centred_fuel_bar"])
def test_the_training_env_passes_gymnasiums_env_checker_in_full(frame):
    import warnings

    from gymnasium.utils.env_checker import check_env

    from a3c.envs import make_env

    env = make_env("Riverraid-v0", frame=frame, frame_size=42)
    with warnings.catch_warnings():  # the checker warns that the env is wrapped: it is, on purpose
        warnings.simplefilter("ignore")
        # the close check included: the env is re-made from env.spec. The checker's render
        # check would also make the game in "human" mode, a window (SDL) that a machine
        # without a display crashes on when it is garbage-collected later: the video's
        # mode, rgb_array, is checked below instead
        check_env(env, skip_render_check=True)
    assert [w.name for w in env.spec.additional_wrappers] == ["NetworkInputFrames", "ClipRewardKeepScore"]
    env.close()
    recorded = env.spec.make(render_mode="rgb_array")
    recorded.reset(seed=0)
    assert recorded.render().shape == (210, 160, 3) and recorded.observation_space.shape == (1, 42, 42)
    recorded.close()


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


def river_screen(jet_x: int | None, bank_offset: int = 30) -> np.ndarray:
    """An RGB screen: a blue river between green banks, an island ``bank_offset`` columns
    left of the jet's column, the yellow jet (7 columns wide) at ``jet_x`` in its rows,
    a grey gauge below the river."""
    from a3c.envs import JET_RGB, JET_ROWS

    x = 84 if jet_x is None else jet_x
    screen = np.zeros((210, 160, 3), dtype=np.uint8)
    screen[2:163, 8:160] = (110, 156, 66)
    screen[2:163, 20:150] = (45, 50, 184)
    screen[60:120, x - bank_offset - 4:x - bank_offset + 4] = (110, 156, 66)
    screen[163:190, 8:160] = (142, 142, 142)
    if jet_x is not None:
        screen[JET_ROWS, jet_x - 3:jet_x + 4] = JET_RGB
    return screen


def screens_game(first: np.ndarray, then: list[np.ndarray]):
    """A stand-in for the game: RGB screen ``first`` at each reset, then those of ``then``,
    one a step."""
    import gymnasium as gym

    class Screens(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (210, 160, 3), np.uint8)
        action_space = gym.spaces.Discrete(1)

        def reset(self, seed=None, options=None):
            self.shown = iter(then)
            return first, {}

        def step(self, action):
            return next(self.shown), 0.0, False, False, {}

    return Screens()


@pytest.mark.parametrize("jet_x", [30, 60, 84, 110, 140])
def test_the_jet_centred_view_puts_the_jet_in_the_middle_column(jet_x):
    from a3c.envs import jet_column, preprocess_jet_centred

    screen = river_screen(jet_x)
    assert jet_column(screen) == jet_x
    view = preprocess_jet_centred(screen, jet_x, 76)[0]  # 152 columns -> 76: two per input column
    jet_rows = view[(145 - 2) * 76 // 188 + 1:(158 - 2) * 76 // 188]
    yellow = cv2.cvtColor(np.uint8([[[232, 232, 74]]]), cv2.COLOR_RGB2GRAY)[0, 0] / 255
    brightest = np.flatnonzero(np.isclose(jet_rows.max(axis=0), yellow, atol=0.01))
    assert brightest.min() >= 36 and brightest.max() <= 39  # columns 74..79 of 152, centred on 76


def test_the_same_scene_around_the_jet_is_the_same_input_wherever_the_jet_flies():
    from a3c.envs import preprocess_jet_centred

    # an island 30 columns left of the jet: with the jet at 70 or at 110, the river rows
    # of the two inputs agree (the banks differ only where they enter the window)
    left, right = (preprocess_jet_centred(river_screen(x), x, 152)[0] for x in (70, 110))
    island = slice(58 * 152 // 188, 118 * 152 // 188)
    np.testing.assert_array_equal(left[island, 40:100], right[island, 40:100])
    # in the unshifted view they differ: the island moved with the jet
    from a3c.envs import preprocess_grey_frame

    grey = lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)  # noqa: E731
    assert not np.array_equal(preprocess_grey_frame(grey(river_screen(70)), 152)[0][island],
                              preprocess_grey_frame(grey(river_screen(110)), 152)[0][island])


def test_the_jet_centred_view_keeps_the_gauge_in_place_and_shows_the_needle():
    from a3c.envs import preprocess_jet_centred

    base = river_screen(60)
    needle = base.copy()
    needle[178:186, 90:92] = (232, 232, 74)
    plain = preprocess_jet_centred(base, 60, 42)
    assert np.abs(preprocess_jet_centred(needle, 60, 42) - plain).max() > 0.02
    # the gauge rows do not move with the jet
    gauge = slice((163 - 2) * 42 // 188 + 1, 42)
    np.testing.assert_array_equal(preprocess_jet_centred(base, 60, 42)[0][gauge],
                                  preprocess_jet_centred(base, 120, 42)[0][gauge])


def test_where_the_jet_is_not_visible_the_view_keeps_its_last_place_until_a_new_game():
    from a3c.envs import NetworkInputFrames, jet_column, preprocess_jet_centred

    screens = [river_screen(50), river_screen(None), river_screen(None)]
    road = river_screen(50)
    road[150:153, 8:160] = (232, 232, 74)  # the colour across the whole band: not the jet
    assert jet_column(river_screen(None)) is None and jet_column(road) is None

    env = NetworkInputFrames(screens_game(river_screen(None), screens + [road]), "jet_centred", 42)
    first, _ = env.reset()
    np.testing.assert_array_equal(first, preprocess_jet_centred(river_screen(None), 84, 42))
    for screen in screens + [road]:
        np.testing.assert_array_equal(env.step(0)[0], preprocess_jet_centred(screen, 50, 42))
    env.reset()  # a new game starts with the view on the screen's centre, where a new jet appears
    assert env.jet_x == 84


def needle_screen(needle_x: int | None, jet_x: int = 60) -> np.ndarray:
    """river_screen with the gauge's box and, unless None, its needle at column needle_x."""
    from a3c.envs import NEEDLE_RGB

    screen = river_screen(jet_x)
    screen[175:190, 65:104] = 0
    screen[176:189, 66:103] = (142, 142, 142)
    if needle_x is not None:
        screen[179:189, needle_x:needle_x + 2] = NEEDLE_RGB
    return screen


@pytest.mark.parametrize("frame_size", [42, 84])
def test_the_default_view_shows_a_moved_fuel_needle_and_the_top_of_the_river(frame_size):
    # through the wrapper training steps (it finds the jet and shifts the river): a frame in
    # which only the needle moved, or only something at the river's top rows, changes the input
    from a3c.config import Config
    from a3c.envs import NetworkInputFrames

    assert frame_size in (42, Config().frame_size)
    plain = needle_screen(83)
    moved = needle_screen(86)  # a tenth of the tank
    top = needle_screen(83)
    top[2:8, 70:78] = (110, 156, 66)  # a bank's tip in rows 2-7, the first the river draws
    screens = [plain, moved, top]

    env = NetworkInputFrames(screens_game(plain, screens), Config().frame, frame_size)
    env.reset()
    inputs = [env.step(0)[0] for _ in screens]
    assert inputs[0].shape == (1, frame_size, frame_size)
    needle, river_top = (np.abs(changed - inputs[0])[0] for changed in inputs[1:])
    assert needle[frame_size * 3 // 4:].max() > 0.05 and needle[:frame_size * 3 // 4].max() == 0  # below the river
    assert river_top[:frame_size // 8].max() > 0.05 and river_top[frame_size // 8:].max() == 0  # in its first rows


@pytest.mark.parametrize("fuel", [0, 10, 64, 128, 192, 255])
def test_the_fuel_read_from_the_needle_is_the_fuel_in_the_tank(fuel):
    import ale_py
    import gymnasium as gym

    from a3c.envs import FUEL_RAM, fuel_level

    gym.register_envs(ale_py)
    env = gym.make("Riverraid-v0", repeat_action_probability=0.0)
    env.reset(seed=0)
    for _ in range(5):
        env.step(1)
    env.unwrapped.ale.setRAM(FUEL_RAM, fuel)  # the game draws the needle for this tank
    screen = env.step(0)[0]
    env.close()
    # one needle column is 1/31 of the tank
    assert fuel_level(screen) == pytest.approx(fuel / 255, abs=1 / 31)


def test_the_fuel_bar_view_draws_the_tank_as_a_bar_and_keeps_the_river_of_the_jet_centred_view():
    from a3c.envs import RIVER_ROWS, fuel_level, preprocess_jet_centred, preprocess_jet_centred_fuel_bar

    assert fuel_level(needle_screen(None)) is None
    assert [fuel_level(needle_screen(x)) for x in (68, 99, 83)] == [0.0, 1.0, 15 / 31]
    for fuel in (0.0, 0.25, 0.5, 1.0):
        view = preprocess_jet_centred_fuel_bar(needle_screen(83), 60, fuel, 152)[0]
        gauge = view[RIVER_ROWS * 152 // 188 + 1:]
        assert gauge.mean() == pytest.approx(fuel, abs=0.02)  # white over that share of the width
        assert np.all(gauge[:, :max(int(fuel * 152) - 1, 0)] == 1.0) and np.all(gauge[:, round(fuel * 152) + 1:] == 0.0)
        river = slice(0, RIVER_ROWS * 152 // 188)
        np.testing.assert_array_equal(view[river], preprocess_jet_centred(needle_screen(83), 60, 152)[0][river])
    # at the network's 42x42 a twentieth of the tank moves an input pixel by over half its range
    half, less = (preprocess_jet_centred_fuel_bar(needle_screen(83), 60, f, 42) for f in (0.5, 0.45))
    assert np.abs(half - less).max() > 0.5


def test_the_fuel_bar_keeps_its_length_where_no_needle_is_drawn_and_fills_for_a_new_game():
    from a3c.envs import NetworkInputFrames, preprocess_jet_centred_fuel_bar

    screens = [needle_screen(83, 50), needle_screen(None, 50)]

    env = NetworkInputFrames(screens_game(needle_screen(None, None), screens), "jet_centred_fuel_bar", 42)
    first, _ = env.reset()
    np.testing.assert_array_equal(first, preprocess_jet_centred_fuel_bar(needle_screen(None, None), 84, 1.0, 42))
    for screen in screens:
        np.testing.assert_array_equal(env.step(0)[0], preprocess_jet_centred_fuel_bar(screen, 50, 15 / 31, 42))
    env.reset()
    assert env.fuel == 1.0


def test_an_env_made_without_a_view_shows_the_default_runs_view():
    # benchmarks and profiles make their games without naming a view: they must measure
    # the view the default run trains on
    from a3c.config import Config
    from a3c.envs import DEFAULT_FRAME, make_env, make_vector_env

    assert DEFAULT_FRAME == Config().frame == "jet_centred"
    env, envs = make_env("Riverraid-v0"), make_vector_env("Riverraid-v0", 1)
    views = [env.get_wrapper_attr("frame"), envs.envs[0].get_wrapper_attr("frame")]
    assert views == [Config().frame] * 2
    env.close()
    envs.close()


def test_stacked_views_are_the_last_k_views_oldest_first_and_a_new_game_repeats_its_first():
    from a3c.envs import make_env

    stacked = make_env("Riverraid-v0", frame_stack=3)
    single = make_env("Riverraid-v0")
    assert stacked.observation_space.shape == (3, 42, 42)
    views = [single.reset(seed=7)[0]]
    obs, _ = stacked.reset(seed=7)
    np.testing.assert_array_equal(obs, np.concatenate(views * 3))  # padded with the first view
    for action in [1, 3, 4, 11, 12]:  # the same game (seed, actions) played twice
        views.append(single.step(action)[0])
        obs = stacked.step(action)[0]
        expected = [views[max(0, len(views) - 3 + k)] for k in range(3)]
        np.testing.assert_array_equal(obs, np.concatenate(expected))
    stacked.close()
    single.close()


def test_a_stacked_env_passes_gymnasiums_env_checker():
    import warnings

    from gymnasium.utils.env_checker import check_env

    from a3c.envs import make_env

    env = make_env("Riverraid-v0", frame_stack=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env)
    env.close()


def test_the_normaliser_counts_the_newest_view_of_a_stack():
    newest = np.full((1, 42, 42), 0.8, dtype=np.float32)
    stack = np.concatenate([np.zeros((2, 42, 42), dtype=np.float32), newest])
    alone, stacked = ObsNormalizer(), ObsNormalizer()
    alone(newest)
    out = stacked(stack)
    assert (stacked.mean, stacked.std) == (alone.mean, alone.std)
    assert out.shape == (3, 42, 42)
