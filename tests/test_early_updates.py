"""early_steps: a run starts with a smaller update (fewer games, shorter rollouts) and each
worker moves to the run's own number of games once the run passes that step."""
from __future__ import annotations

import dataclasses

import pytest

from a3c.config import ConfigError, load_config
from a3c.footprint import check_memory, estimate_bytes
from a3c.worker import Worker

# early: 2 games x 3 steps (6 agent steps per update) until step 12; then 3 games x 4 steps (12)
SETTINGS = {"workers": 1, "frame_size": 42, "early_steps": 12, "early_envs_per_worker": 2, "early_num_steps": 3,
            "envs_per_worker": 3, "num_steps": 4, "total_steps": 40}


class CountingLink:
    """A worker's link on its own: the run's step grows by each update's agent steps."""

    def __init__(self, global_step: int = 0) -> None:
        self.global_step, self.pushed = global_step, []

    def saved_obs_norm(self):
        return None

    def pull(self, model) -> None:
        pass

    def push(self, grads, steps, obs_norm, timings) -> None:
        assert grads is not None
        self.pushed.append(steps)
        self.global_step += steps

    def report(self, message) -> None:
        pass

    def stop_requested(self) -> bool:
        return False

    def should_stop(self) -> bool:
        return False


def test_the_settings_of_the_moment_are_the_early_update_before_early_steps_and_the_runs_after():
    config = load_config(None, SETTINGS)
    early = config.update_at(11)
    assert (early.envs_per_worker, early.num_steps) == (2, 3)
    assert config.update_at(12) is config and config.update_at(10**9) is config
    off = load_config(None, {**SETTINGS, "early_steps": 0})
    assert off.update_at(0) is off  # 0: the run's own update from the first step


def test_a_worker_plays_the_early_update_then_starts_the_runs_games():
    link = CountingLink()
    worker = Worker(0, load_config(None, SETTINGS), link)
    assert (worker.num_envs, worker.config.num_steps) == (2, 3)
    early_games, early_seeds = worker.envs, set(range(worker.seed, worker.seed + 2))
    worker.run()
    # two updates of 2 x 3 reach step 12; then 3 x 4 until the run passes total_steps (40)
    assert link.pushed == [6, 6, 12, 12, 12]
    assert worker.num_envs == 3 and worker.envs.num_envs == 3 and tuple(worker.frames.shape[:2]) == (4, 3)
    assert early_games.closed  # the early games are shut, not left running beside the new ones
    assert early_seeds.isdisjoint(range(worker.seed, worker.seed + 3))  # new games, not the early ones again


def test_a_worker_started_after_early_steps_plays_the_runs_own_update_at_once():
    # a restarted worker, or a run resumed past early_steps
    link = CountingLink(global_step=20)
    worker = Worker(0, load_config(None, SETTINGS), link, restart=1)
    assert worker.num_envs == 3
    worker.run()
    assert link.pushed == [12, 12]


def test_a_restarted_worker_never_replays_the_games_it_played_before():
    config = load_config(None, SETTINGS)

    def seeds(step, restart):
        worker = Worker(0, config, CountingLink(global_step=step), restart=restart)
        worker.envs.close()
        return set(range(worker.seed, worker.seed + worker.num_envs))

    before_restart = seeds(0, 0) | seeds(20, 0)  # its early games, then its own after the switch
    assert seeds(20, 1).isdisjoint(before_restart) and seeds(0, 1).isdisjoint(before_restart)


def test_an_early_update_the_size_of_the_runs_own_keeps_its_games():
    config = load_config(None, {**SETTINGS, "early_envs_per_worker": 3, "early_num_steps": 4})
    assert config.update_at(0) is config  # nothing to switch to: the games play on


@pytest.mark.parametrize(("override", "message"), [
    ({"early_steps": -1}, "early_steps must not be negative"),
    ({"early_envs_per_worker": 0}, "early_envs_per_worker must be at least 1"),
    ({"early_num_steps": 0}, "early_num_steps must be at least 1"),
    ({"early_envs_per_worker": 1000}, "early_envs_per_worker must be at most 256"),
])
def test_a_bad_early_update_is_one_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, {**SETTINGS, **override})


def test_the_memory_estimate_counts_the_larger_of_the_two_updates():
    own = load_config(None, {**SETTINGS, "early_steps": 0})
    smaller_first = load_config(None, SETTINGS)
    larger_first = load_config(None, {**SETTINGS, "early_envs_per_worker": 64, "early_num_steps": 40})
    assert estimate_bytes(smaller_first) == estimate_bytes(own)
    assert estimate_bytes(larger_first) > estimate_bytes(own)
    # refused where only the early update does not fit, the error names its settings
    own_fits = estimate_bytes(dataclasses.replace(own, workers=4))
    check_memory(dataclasses.replace(own, workers=4), available=own_fits)
    with pytest.raises(ConfigError, match="4 workers x 64 games x 40 steps .* lower workers, early_envs_per_worker"):
        check_memory(dataclasses.replace(larger_first, workers=4), available=own_fits)
