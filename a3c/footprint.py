"""How much memory a run will take, estimated before anything starts.

A run is one main process, one evaluator (when evaluations are on) and one worker per
``workers``. The estimate adds, per process, what Python with torch, gymnasium and ale-py
takes once imported, and per worker its games, its self-imitation memory when it keeps
one (the ring, allocated whole at the start, and as many steps again waiting for their
lives to end) and its rollout memory when it replays (``replay_ratio``: the rollouts it
keeps, at their fullest), and its rollout or self-imitation batch, the larger: everything the forward
records for the backward (input frames, each convolution's and ELU's output, the LSTM's
gates), which the backward's temporaries (gradients, gathered input patches) multiply,
and which the tuned malloc keeps for the next update (a3c/memory.py). The constants were
measured here (RSS of a worker after a few updates, four shapes of run:
tests/test_footprint.py keeps the estimate near a measurement).
"""
from __future__ import annotations

import math
import os

from a3c.config import Config, ConfigError
from a3c.model import PIXEL_CHANNELS, conv_sides, conv_specs, network_settings, parameter_shapes
from a3c.pixel_control import grid_cells

MIB = 1 << 20
PROCESS_BASE = 250 * MIB  # python + torch + gymnasium + ale-py, imported (measured 243 MiB)
PER_GAME = 1 * MIB  # one ALE emulator with its screen buffers
ACTIVATION_FACTOR = 3  # peak rollout memory / the recorded activations (measured 2.2-2.8)
FLOAT = 4  # bytes: the workers run in float32
PARAMETER_COPIES_SHARED = 3  # weights, Adam's two moments (RMSProp keeps one: an upper bound)
PARAMETER_COPIES_PER_PROCESS = 3  # a process's own weights, their gradients, temporaries


def parameter_count(config: Config, n_actions: int = 18) -> int:
    return sum(math.prod(shape) for shape in parameter_shapes(n_actions, **network_settings(config)).values())


def recorded_per_step(config: Config, n_actions: int = 18) -> int:
    """Numbers one game's step records for the backward: its stacked frames, each
    convolution's and ELU's output and the LSTM's gates and states; with pixel control
    its head's records (the ReLU's output, twice) and its Q maps with their gradient."""
    frame = config.frame_stack * config.frame_size ** 2
    specs = conv_specs(config.conv_stack, config.frame_stack, config.conv_channels)
    sides = conv_sides(config.frame_size, config.conv_stack)
    convs = sum(2 * out_channels * side * side for (_, out_channels, *_), side in zip(specs, sides))
    pixel = 0
    if config.pixel_control:
        cells = grid_cells(config.frame_size)
        pixel = 2 * PIXEL_CHANNELS * (cells // 2 - 1) ** 2 + 3 * (n_actions + 1) * cells ** 2
    return frame + convs + 8 * config.hidden_size + pixel


def imitation_memory_bytes(config: Config) -> int:
    """A worker's self-imitation memory (a3c.self_imitation) at its fullest: per step its
    view in half precision, the LSTM state it started from, its action and its return, for
    the ring's steps and as many waiting for their life's end."""
    if not config.sil_batch:
        return 0
    per_step = 2 * config.frame_stack * config.frame_size ** 2 + 2 * config.hidden_size * FLOAT + 8 + 8
    return 2 * config.sil_capacity * per_step


def replay_memory_bytes(config: Config, n_actions: int = 18) -> int:
    """A worker's rollout memory (a3c.replay) at its fullest: per rollout of T steps in B
    games, T + 1 views in half precision, restart masks and action-and-reward inputs, the
    start state, and per step its action, reward, done flag and log probability, at
    ``config``'s update size."""
    if not config.replay_ratio:
        return 0
    steps, games = config.num_steps, config.envs_per_worker
    views = (steps + 1) * games * (2 * config.frame_stack * config.frame_size ** 2 + (n_actions + 2) * FLOAT)
    per_rollout = views + 2 * games * config.hidden_size * FLOAT + steps * games * (8 + 3 * FLOAT)
    return config.replay_capacity * per_rollout


def worker_bytes(config: Config) -> int:
    # a self-imitation batch is one recorded step of sil_batch rows, after the rollout's backward
    rows = max(config.num_steps * config.envs_per_worker, config.sil_batch)
    rollout = rows * recorded_per_step(config) * FLOAT
    return (PROCESS_BASE + config.envs_per_worker * PER_GAME + imitation_memory_bytes(config)
            + replay_memory_bytes(config)
            + ACTIVATION_FACTOR * rollout + PARAMETER_COPIES_PER_PROCESS * parameter_count(config) * FLOAT)


def estimate_bytes(config: Config) -> int:
    """The whole run on this machine: workers, main process, evaluator, shared network."""
    others = 1 + (config.eval_interval > 0)
    per_other = PROCESS_BASE + PER_GAME + PARAMETER_COPIES_PER_PROCESS * parameter_count(config) * FLOAT
    shared = PARAMETER_COPIES_SHARED * parameter_count(config) * FLOAT
    worker = max(worker_bytes(config), worker_bytes(config.update_at(0)))  # the early update's or the run's own
    return config.workers * worker + others * per_other + shared


def available_bytes() -> int | None:
    """Memory the kernel can give without swapping (MemAvailable), else the physical
    memory; None where neither is known."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(config: Config, available: int | None = None) -> None:
    """Refuse a run whose estimate does not fit the memory available here (a Ray cluster
    given by ``ray_address`` runs its workers elsewhere: not checked)."""
    if config.backend == "ray" and config.ray_address:
        return
    available = available_bytes() if available is None else available
    need = estimate_bytes(config)
    if available is not None and need > available:
        largest = max(config, config.update_at(0), key=worker_bytes)  # the early update's or the run's own
        early = "early_" if largest is not config else ""
        memory = (", sil_capacity, sil_batch" if config.sil_batch else "") + \
            (", replay_capacity" if config.replay_ratio else "")
        raise ConfigError(
            f"this run needs about {need / (1 << 30):.1f} GiB of memory ({config.workers} workers x "
            f"{largest.envs_per_worker} games x {largest.num_steps} steps at {config.frame_size}x{config.frame_size}, "
            f"{config.conv_channels} channels, conv_stack={config.conv_stack}), {available / (1 << 30):.1f} GiB "
            f"is available: lower workers, "
            f"{early}envs_per_worker, {early}num_steps, frame_size{memory} or conv_channels")
