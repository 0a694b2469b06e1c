"""A run whose estimated memory does not fit the machine is refused before it starts, and
the estimate stays near what a worker really takes."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from a3c.config import ConfigError, load_config
from a3c.footprint import (MIB, available_bytes, check_memory, estimate_bytes, recorded_per_step, replay_memory_bytes,
                           worker_bytes)
from a3c.replay import RolloutReplay

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "configs" / "riverraid.yaml"

# a worker in a process of its own, a few updates, then its resident memory in MiB
PROBE = textwrap.dedent("""
    import sys
    from a3c.config import load_config, parse_overrides
    from a3c.memory import keep_freed_memory
    from a3c.worker import Worker

    class Link:
        global_step = 0
        def saved_obs_norm(self): return None
        def pull(self, model): pass
        def push(self, *args): pass
        def report(self, message): pass
        def stop_requested(self): return False
        def should_stop(self): return False

    keep_freed_memory()  # as a worker process does
    worker = Worker(0, load_config(None, {"workers": 1, **parse_overrides(sys.argv[1:])}), Link())  # key=value
    obs, _ = worker.envs.reset(seed=0)
    state, mask = worker.model.initial_state(worker.num_envs), None
    for _ in range(3):
        obs, state, mask, bootstrap = worker.collect(obs, state, mask)
        worker.learn(bootstrap)
    print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")) // 1024)
""")


@pytest.mark.parametrize("shape", [(8, 20, 42, 32), (16, 40, 42, 32), (4, 20, 84, 48), (8, 20, 84, 32, "nature")])
def test_the_estimate_of_a_worker_is_within_a_third_of_its_measured_memory(shape):
    settings = dict(zip(["envs_per_worker", "num_steps", "frame_size", "conv_channels", "conv_stack"], shape))
    measured = int(subprocess.run([sys.executable, "-c", PROBE, *(f"{k}={v}" for k, v in settings.items())],
                                  cwd=ROOT, capture_output=True, text=True, timeout=120, check=True).stdout.split()[-1])
    config = load_config(None, {**settings, "workers": 1})
    assert 0.75 * measured <= worker_bytes(config) / MIB <= 1.33 * measured


def test_the_default_run_fits_in_a_few_gib_and_grows_with_every_size():
    default = load_config(str(DEFAULT), {})
    assert 0.5 * (1 << 30) < estimate_bytes(default) < 4 * (1 << 30)
    for key, value in [("workers", 4), ("envs_per_worker", 16), ("num_steps", 40), ("frame_size", 120),
                       ("conv_channels", 64), ("hidden_size", 1024)]:
        assert estimate_bytes(load_config(str(DEFAULT), {key: value})) > estimate_bytes(default), key
    assert estimate_bytes(load_config(str(DEFAULT), {"eval_interval": 0})) < estimate_bytes(default)


def test_a_self_imitation_memory_adds_its_size_to_each_worker():
    default = load_config(str(DEFAULT), {"workers": 2})
    remembering = load_config(str(DEFAULT), {"workers": 2, "sil_batch": 160, "sil_capacity": 25_000})
    # per step: the 84x84 view in half precision (14,112 bytes), h and c (2 x 512 floats), action, return;
    # the ring's and as many waiting, in each of the two workers
    assert estimate_bytes(remembering) - estimate_bytes(default) == 2 * 2 * 25_000 * (14_112 + 4_096 + 16)
    # a batch larger than the rollout's 8 x 20 steps records more for its backward
    assert estimate_bytes(load_config(str(DEFAULT), {"workers": 2, "sil_batch": 640, "sil_capacity": 25_000})) \
        > estimate_bytes(remembering)
    with pytest.raises(ConfigError, match=r"lower workers, envs_per_worker, num_steps, frame_size, sil_capacity, "
                                          r"sil_batch or conv_channels"):
        check_memory(load_config(str(DEFAULT), {"sil_batch": 160, "sil_capacity": 1_000_000}), available=8 << 30)


def test_a_rollout_memory_adds_what_its_full_ring_holds_to_each_worker():
    settings = {"workers": 2, "envs_per_worker": 3, "num_steps": 4, "frame_size": 42, "hidden_size": 16}
    default = load_config(str(DEFAULT), settings)
    replaying = load_config(str(DEFAULT), {**settings, "replay_ratio": 1, "replay_capacity": 5})
    memory = RolloutReplay(5)
    for _ in range(7):  # past its capacity: the ring holds 5
        memory.add(torch.rand(4, 3, 1, 42, 42), torch.rand(3, 1, 42, 42), [None] * 5,
                   (torch.zeros(3, 16), torch.zeros(3, 16)), torch.zeros(4, 3, dtype=torch.int64),
                   torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(5, 3, 18 + 1))
    held = sum(tensor.nbytes for rollout in memory.rollouts for tensor in vars(rollout).values())
    assert estimate_bytes(replaying) - estimate_bytes(default) == 2 * replay_memory_bytes(replaying) == 2 * held
    with pytest.raises(ConfigError, match=r"frame_size, replay_capacity or conv_channels"):
        check_memory(load_config(str(DEFAULT), {"replay_ratio": 1, "replay_capacity": 100_000}), available=8 << 30)


def test_a_run_larger_than_the_memory_available_is_refused_with_the_estimate():
    config = load_config(str(DEFAULT), {"workers": 64, "envs_per_worker": 256})
    with pytest.raises(ConfigError, match=r"needs about [\d.]+ GiB of memory \(64 workers x 256 games.*"
                                          r"1\.0 GiB is available: lower workers"):
        check_memory(config, available=1 << 30)
    check_memory(load_config(str(DEFAULT), {}), available=64 << 30)  # fits: no error


def test_a_remote_ray_cluster_is_not_measured_against_this_machine():
    config = load_config(str(DEFAULT), {"workers": 64, "envs_per_worker": 256, "backend": "ray",
                                        "ray_address": "10.0.0.1:6379"})
    check_memory(config, available=1 << 30)


def test_the_command_line_refuses_it_with_one_line_and_no_run_folder(tmp_path):
    assert available_bytes() is not None
    run_dir = tmp_path / "never"
    result = subprocess.run([sys.executable, "-m", "a3c.train", "workers=1024", "envs_per_worker=256",
                             "num_steps=10000", f"run_dir={run_dir}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: this run needs about") and result.stderr.count("\n") == 1
    assert not run_dir.exists()


def test_a_step_records_what_each_convolution_of_its_stack_outputs():
    """Per game and step: the frame, each convolution's and ELU's output, the LSTM's 8 x
    hidden; with pixel control (the default) its head's ReLU output twice (32 maps of 9 x 9)
    and its Q maps three times (19 of 20 x 20: the maps, their gradient, the dueling split)."""
    a3c = 84 * 84 + 2 * 32 * (42 ** 2 + 21 ** 2 + 11 ** 2 + 6 ** 2) + 8 * 512
    nature = 84 * 84 + 2 * (32 * 20 ** 2 + 64 * 9 ** 2 + 64 * 7 ** 2) + 8 * 512
    no_head = {"pixel_control": False}
    assert recorded_per_step(load_config(None, no_head)) == a3c == 162_320
    assert recorded_per_step(load_config(None, {**no_head, "conv_stack": "nature"})) == nature == 53_392
    head = 2 * 32 * 9 ** 2 + 3 * 19 * 20 ** 2
    assert recorded_per_step(load_config(None, {})) == a3c + head == 190_304
