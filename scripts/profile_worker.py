"""Where a worker's time goes: one worker in this process under the torch profiler.

Prints the time split per update (env, forward, backward, optimizer), the torch
operators that take the most time, and how much slower the same games step inside the
worker than alone (the network and the emulator evict each other from the CPU caches).

    python -m scripts.profile_worker [--envs-per-worker 4] [--updates 30] [--top 15]
"""
from __future__ import annotations

import dataclasses
import threading
import time

import torch
from torch.profiler import ProfilerActivity, profile

from a3c.cli import ArgumentParser
from a3c.config import Config, load_config
from a3c.envs import ObsNormalizer, make_vector_env
from a3c.memory import keep_freed_memory
from a3c.model import ActorCritic, network_settings
from a3c.optim import make_optimizer
from a3c.backends.local import LocalLink
from a3c.shared import PHASES, SharedState, time_split
from a3c.worker import Worker


class Discard:
    def put(self, message) -> None:
        pass


def env_alone_ms(config, batch: int, steps: int) -> float:
    """ms per agent step of the same games and view, random actions, nothing else running."""
    envs, normalizer = make_vector_env(config.env_id, batch, config.frame, config.frame_size), ObsNormalizer()
    envs.reset(seed=list(range(batch)))
    started = time.perf_counter()
    for _ in range(steps // batch):  # the input normalised too, as a worker's "env" phase does
        obs, _, terminated, truncated, info = envs.step(envs.action_space.sample())
        normalizer.normalize_batch(obs, terminated | truncated, info.get("final_obs"))
    return 1e3 * (time.perf_counter() - started) / (steps // batch * batch)


def main() -> None:
    parser = ArgumentParser(prog="python -m scripts.profile_worker", description=__doc__.splitlines()[0])
    parser.add_argument("--envs-per-worker", type=int, default=Config.envs_per_worker,
                        help="games per worker (default: the default config's)")
    parser.add_argument("--updates", type=int, default=30, help="updates profiled (after 5 warm-up ones)")
    parser.add_argument("--top", type=int, default=15, help="operators listed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    batch = args.envs_per_worker
    config = load_config(None, {"workers": 1, "envs_per_worker": batch})
    steps_per_update = config.num_steps * batch

    def worker_for(updates: int) -> tuple[Worker, SharedState]:
        model = ActorCritic(18, **network_settings(config), seed=config.seed).share_memory()
        shared = SharedState(model, make_optimizer(config.optimizer, model.parameters(), config.lr),
                             torch.zeros(2, dtype=torch.int64), torch.zeros(1, 3, dtype=torch.float64),
                             threading.Event(), SharedState.timing_table(1))
        budget = dataclasses.replace(config, total_steps=updates * steps_per_update)
        return Worker(0, budget, LocalLink(shared, Discard(), 0)), shared

    warm, _ = worker_for(5)
    warm.run()
    worker, shared = worker_for(args.updates)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        worker.run()
        wall = time.perf_counter() - started
    split = time_split(shared.timings)
    alone = env_alone_ms(config, batch, 2000)
    print(f"# one worker, envs_per_worker={batch}, {args.updates} updates of {steps_per_update} steps "
          f"under the torch profiler (which slows torch ops down)")
    print(f"agent steps/s: {shared.global_step / wall:.0f}")
    print("ms per update: " + "  ".join(f"{phase} {split[phase]:.1f}" for phase in PHASES))
    print("ms per agent step: " + "  ".join(f"{phase} {split[phase] / steps_per_update:.3f}" for phase in PHASES))
    print(f"env step alone: {alone:.3f} ms per agent step; inside the worker: "
          f"{split['env'] / steps_per_update:.3f} ({split['env'] / steps_per_update / alone:.2f}x)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
