"""Agent steps per second: the env-only ceiling, our trainer, and an autograd A3C.

Each measurement starts P worker processes (spawned, one torch thread each), waits until
all of them step and then ``--warmup`` seconds more, then counts the agent steps they
make in ``--duration`` seconds:
  env       P processes stepping the same vectorised, preprocessed games with random
            actions (``--env-batch`` games each): the most any trainer could reach;
  ours-B    a3c.worker.Worker, our hand-differentiated trainer, with envs_per_worker=B
            (ours-B-T with num_steps=T, when ``--num-steps`` gives more than one T;
            ours-B-S with the settings S, when ``--settings`` gives more than one S);
  autograd  scripts/autograd_a3c.AutogradWorker: the same rollout code, network, loss
            and shared optimizer, differentiated by torch autograd (B = 1; the default
            config's settings, whatever ``--settings`` gives ours).
Rounds alternate env / ours-B... / autograd so that machine drift hits all alike; the
ratios are computed per round and their median printed, with each run's time split
per update (env, forward, backward, optimizer; ms, averaged over workers). Each rollout
length and each set of settings is also compared with the first one given.

    python -m scripts.benchmark [--duration 20] [--rounds 2] [--workers 2] [--envs-per-worker 1 4] [--num-steps 10 20]
    python -m scripts.benchmark --envs-per-worker 8 --settings frame_stack=1 frame_stack=2
"""
from __future__ import annotations

import json
import platform
import queue as queue_errors
import statistics
import threading
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from a3c.cli import ArgumentParser
from a3c.config import ConfigError, load_config, parse_overrides
from a3c.envs import ObsNormalizer, make_vector_env
from a3c.memory import keep_freed_memory
from a3c.model import ActorCritic, network_settings
from a3c.optim import make_optimizer
from a3c.backends.local import LocalLink
from a3c.shared import PHASES, SharedState, StopFlag, time_split
from a3c.worker import Worker
from scripts.autograd_a3c import AutogradWorker, shared_network


def run_process(kind: str, rank: int, config, shared: SharedState, queue) -> None:
    torch.set_num_threads(1)
    keep_freed_memory()  # as a3c.backends.local.run_worker does, for every kind alike
    if kind == "env":
        envs = make_vector_env(config.env_id, config.envs_per_worker, config.frame, config.frame_size)
        normalizer = ObsNormalizer()
        envs.reset(seed=[config.seed + rank * config.envs_per_worker + k for k in range(config.envs_per_worker)])
        envs.action_space.seed(config.seed + rank)
        while not shared.should_stop():  # also ends if the benchmark itself is killed
            started = time.perf_counter()
            for _ in range(config.num_steps):  # the shared counters once per "update", as a worker
                obs, _, terminated, truncated, info = envs.step(envs.action_space.sample())
                normalizer.normalize_batch(obs, terminated | truncated, info.get("final_obs"))  # as a worker does
            shared.timings[rank, 0] += time.perf_counter() - started
            shared.steps[rank] += config.num_steps * config.envs_per_worker
        return
    worker_class = AutogradWorker if kind == "autograd" else Worker
    worker_class(rank, config, LocalLink(shared, queue, rank)).run()


def run_config(envs_per_worker: int, num_steps: int | None, settings: str, workers: int):
    """The default config with these games, rollout length (None: the config's own) and
    settings ("key=value,key=value", "" for none), the evaluator off."""
    rollout = {} if num_steps is None else {"num_steps": num_steps}
    chosen = parse_overrides(settings.split(",")) if settings else {}
    return load_config(None, {**chosen, "workers": workers, "envs_per_worker": envs_per_worker,
                              "total_steps": 10 ** 12, "eval_interval": 0, **rollout})


def measure(kind: str, envs_per_worker: int, num_steps: int | None, args, ctx, settings: str = "") -> dict:
    """Start the processes, wait out the warm-up, count steps for args.duration seconds."""
    config = run_config(envs_per_worker, num_steps, settings, args.workers)
    n_actions = int(make_vector_env(config.env_id, 1).single_action_space.n)
    if kind == "autograd":
        model, optimizer = shared_network(n_actions, config.optimizer, config.lr, args.workers,
                                          **network_settings(config))
    else:
        model = ActorCritic(n_actions, **network_settings(config), seed=config.seed).share_memory()
        optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr, slots=args.workers)
    shared = SharedState(model, optimizer, torch.zeros(args.workers + 1, dtype=torch.int64).share_memory_(),
                         torch.zeros(args.workers, 3, dtype=torch.float64).share_memory_(), StopFlag(),
                         SharedState.timing_table(args.workers))
    queue = ctx.Queue()
    draining = threading.Event()

    def drain() -> None:  # workers report every update; an unread pipe would block them
        while not draining.is_set():
            try:
                queue.get(timeout=0.1)
            except queue_errors.Empty:
                pass

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    procs = [ctx.Process(target=run_process, args=(kind, rank, config, shared, queue), daemon=True)
             for rank in range(args.workers)]
    for proc in procs:
        proc.start()
    try:
        # count from warmup seconds after every process has made its first steps (imports,
        # env start-up and first allocations are not what we measure)
        while not all(shared.steps[:args.workers] > 0):
            if not all(proc.is_alive() for proc in procs):
                raise SystemExit(f"benchmark: a {kind} process died at start-up "
                                 f"(exit codes {[p.exitcode for p in procs]})")
            time.sleep(0.05)
        time.sleep(args.warmup)
        steps0, timings0, t0 = shared.steps.clone(), shared.timings.clone(), time.monotonic()
        time.sleep(args.duration)
        steps1, timings1, t1 = shared.steps.clone(), shared.timings.clone(), time.monotonic()
        if not all(proc.is_alive() for proc in procs):
            raise SystemExit(f"benchmark: a {kind} process died (exit codes {[p.exitcode for p in procs]})")
    finally:
        shared.stop.set()
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        draining.set()
        drainer.join()
    delta, steps = timings1 - timings0, (steps1 - steps0)[:args.workers]
    if kind == "env":  # one "update" = num_steps steps of every game, as in the trainers
        delta[:, -1] = steps / (config.num_steps * envs_per_worker)
    return {"steps_per_s": int(steps.sum()) / (t1 - t0), "split_ms": time_split(delta)}


def main() -> None:
    parser = ArgumentParser(prog="python -m scripts.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds counted per measurement")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds between every process's first steps and the start of counting")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--envs-per-worker", type=int, nargs="+", default=[1, 4], metavar="B",
                        help="envs_per_worker values of our trainer to measure")
    parser.add_argument("--num-steps", type=int, nargs="+", metavar="T",
                        help="num_steps values of our trainer to measure (default: the config's)")
    parser.add_argument("--settings", nargs="+", default=[""], metavar="KEY=VALUE[,KEY=VALUE]",
                        help="settings of our trainer to measure, one set per value (default: the config's); "
                             "workers, envs_per_worker and num_steps have their own options")
    parser.add_argument("--env-batch", type=int, default=None,
                        help="games per process in the env-only run (default: the largest B)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    # The benchmark sets these itself (each has its own option, or must hold for every
    # measurement); a --settings value for one would be silently overridden.
    own = {"workers", "envs_per_worker", "total_steps", "eval_interval"} | ({"num_steps"} if args.num_steps else set())
    for settings in args.settings:  # a bad setting fails here, before any measurement
        try:
            run_config(1, None, settings, args.workers)
        except ConfigError as error:
            parser.error(f"--settings {settings}: {error}")
        taken = sorted(own & set(parse_overrides(settings.split(",")) if settings else {}))
        if taken:
            options = {"workers": "--workers", "envs_per_worker": "--envs-per-worker", "num_steps": "--num-steps"}
            instead = [options[key] for key in taken if key in options]
            parser.error(f"--settings {settings}: the benchmark sets {', '.join(taken)} itself"
                         + (f"; use {', '.join(instead)} instead" if instead else ""))
    env_batch = args.env_batch or max(args.envs_per_worker)
    ctx = mp.get_context("spawn")
    lengths, choices = args.num_steps or [None], args.settings

    def ours_name(batch: int, length: int | None, settings: str) -> str:
        return (f"ours-B{batch}" + (f"-T{length}" if len(lengths) > 1 else "")
                + (f"-{settings}" if len(choices) > 1 else ""))

    ours = [(ours_name(b, t, s), "ours", b, t, s) for b in args.envs_per_worker for t in lengths for s in choices]
    runs = [(f"env-B{env_batch}", "env", env_batch, None, ""), *ours, ("autograd-B1", "autograd", 1, None, "")]
    results: dict[str, list[dict]] = {}
    print(f"# benchmark: {args.workers} workers, {args.duration:g} s per run after {args.warmup:g} s "
          f"warm-up, {args.rounds} rounds; torch {torch.__version__}, python {platform.python_version()}, "
          f"{platform.machine()}", flush=True)
    for round_index in range(args.rounds):
        for name, kind, batch, num_steps, settings in runs:
            result = measure(kind, batch, num_steps, args, ctx, settings)
            results.setdefault(name, []).append(result)
            split = "  ".join(f"{phase} {result['split_ms'][phase]:6.1f}" for phase in PHASES)
            print(f"round {round_index + 1}  {name:<12} {result['steps_per_s']:7.0f} steps/s   "
                  f"ms/update: {split}", flush=True)

    def rate(name: str, k: int) -> float:
        return results[name][k]["steps_per_s"]

    print("\n# medians over rounds of per-round ratios")
    env_name, autograd_name = f"env-B{env_batch}", "autograd-B1"
    for name in results:
        print(f"{name:<12} {statistics.median(r['steps_per_s'] for r in results[name]):7.0f} steps/s")
    ratios = {}
    for name, *_ in ours:
        ratios[f"{name}/autograd"] = statistics.median(rate(name, k) / rate(autograd_name, k) for k in range(args.rounds))
        ratios[f"{name}/env"] = statistics.median(rate(name, k) / rate(env_name, k) for k in range(args.rounds))

    def against(name: str, first: str) -> None:
        ratios[f"{name}/{first}"] = statistics.median(rate(name, k) / rate(first, k) for k in range(args.rounds))

    for batch in args.envs_per_worker:
        for settings in choices:  # each rollout length against the first one given
            for length in lengths[1:]:
                against(ours_name(batch, length, settings), ours_name(batch, lengths[0], settings))
        for length in lengths:  # each set of settings against the first one given
            for settings in choices[1:]:
                against(ours_name(batch, length, settings), ours_name(batch, length, choices[0]))
    for key, value in ratios.items():
        print(f"{key:<26} {value:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": results, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
