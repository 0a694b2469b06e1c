"""How fast could any trainer of this network be here? A bound from arithmetic.

Counts the floating-point operations of one agent step of the network (the forward
while acting, then the step's share of the rollout's backward: weight gradients, and
input gradients except into the frames), measures this machine's fastest single-thread
float32 matmul (or takes it from ``--peak-gflops``), and prints the least network time
per agent step that the arithmetic allows. Elementwise work (activations, the
optimizer) is not counted, so the true bound is tighter still.

With one worker per core, a core spends the game's time plus the network's time per
agent step, so no trainer can beat env / (env + least network time) of the env-only
ceiling. With ``--benchmark`` (a JSON written by ``scripts/benchmark.py --json``) the env
time and the trainer's measured split come from that run; otherwise the games are
timed here for ``--env-seconds``.

    python -m scripts.roofline [--benchmark bench.json] [--target 0.7] [--peak-gflops G]
"""
from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import torch

from a3c.cli import ArgumentParser
from a3c.config import load_config
from a3c.envs import make_vector_env
from a3c.model import ActorCritic, conv_sides, conv_specs, network_settings

# m x k x n: two large shapes for the machine's peak (the network's own matmuls: largest_conv_gemm)
GEMM_SIZES = [(1024, 1024, 1024), (2048, 2048, 256)]


def largest_conv_gemm(config) -> tuple[int, int, int]:
    """The second convolution's weight gradient over a rollout of num_steps x envs_per_worker
    frames: the default network's largest matmul (with conv_stack=nature the LSTM's is larger)."""
    in_channels, out_channels, kernel, _, _ = conv_specs(config.conv_stack, config.frame_stack,
                                                          config.conv_channels)[1]
    side = conv_sides(config.frame_size, config.conv_stack)[1]
    batch = config.num_steps * config.envs_per_worker
    return (kernel * kernel * in_channels, side * side * batch, out_channels)


def network_flops(model: ActorCritic) -> dict[str, int]:
    """FLOPs (2 per multiply-add) of one agent step: forward, and its share of the backward."""
    forward = backward = 0
    side = model.frame_size
    for k, conv in enumerate(model.convs):
        out_h, out_w = conv.output_size(side, side)
        kh, kw = conv.kernel_size
        flops = 2 * out_h * out_w * conv.out_channels * (conv.in_channels // conv.groups) * kh * kw
        forward += flops
        backward += flops * (2 if k > 0 else 1)  # weight gradient; input gradient but into the frames
        side = out_h
    if model.lstm is not None:
        lstm = model.lstm
        flops = 2 * 4 * lstm.hidden_size * (lstm.input_size + lstm.hidden_size)
    else:  # the feed-forward core: one Linear
        flops = 2 * model.fc.in_features * model.fc.out_features
    forward += flops
    backward += 2 * flops  # weight gradients; gradients into the features (and the LSTM's previous h)
    for head in (model.critic, model.actor):
        flops = 2 * head.in_features * head.out_features
        forward += flops
        backward += 2 * flops
    return {"forward": forward, "backward": backward}


def matmul_gflops(sizes=GEMM_SIZES, seconds: float = 1.0) -> dict[tuple[int, int, int], float]:
    """The best single-thread float32 matmul speed for each (m, k, n) of ``sizes``."""
    rates = {}
    for m, k, n in sizes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b  # warm-up
        best, started = 0.0, time.perf_counter()
        while time.perf_counter() - started < seconds or best == 0.0:
            tick = time.perf_counter()
            a @ b
            best = max(best, 2 * m * k * n / (time.perf_counter() - tick) / 1e9)
        rates[(m, k, n)] = best
    return rates


def env_ms_per_step(config, batch: int, seconds: float) -> float:
    envs = make_vector_env(config.env_id, batch, config.frame, config.frame_size)
    envs.reset(seed=list(range(batch)))
    envs.action_space.seed(0)
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or steps == 0:
        envs.step(envs.action_space.sample())
        steps += batch
    envs.close()
    return 1e3 * (time.perf_counter() - started) / steps


def from_benchmark(path: Path) -> tuple[float, dict[str, dict[str, float]]]:
    """(env ms per agent step on one core, {ours-B: split ms per agent step}) of a benchmark run."""
    report = json.loads(path.read_text())
    workers, steps_per_update = report["args"]["workers"], load_config(None).num_steps  # as the benchmark
    env_name = next(name for name in report["runs"] if name.startswith("env-"))
    env_rate = statistics.median(run["steps_per_s"] for run in report["runs"][env_name])
    measured = {}
    for name, runs in report["runs"].items():
        if name.startswith("ours-B"):
            batch = int(name.split("-B")[1])
            measured[name] = {phase: statistics.median(run["split_ms"][phase] for run in runs)
                              / (steps_per_update * batch) for phase in runs[0]["split_ms"]}
    return 1e3 * workers / env_rate, measured


def main() -> None:
    parser = ArgumentParser(prog="python -m scripts.roofline", description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", type=Path, help="a scripts/benchmark.py --json report")
    parser.add_argument("--target", type=float, default=0.7, help="an ours/env ratio to test against the bound")
    parser.add_argument("--env-seconds", type=float, default=5.0, help="game timing without --benchmark")
    parser.add_argument("--envs", type=int, default=8, help="games per process without --benchmark")
    parser.add_argument("--gemm-seconds", type=float, default=1.0, help="timing per matmul size")
    parser.add_argument("--peak-gflops", type=float,
                        help="a known single-thread float32 matmul peak instead of timing one (e.g. measured on an "
                             "idle machine, or another machine's)")
    args = parser.parse_args()
    if args.benchmark is not None and not args.benchmark.is_file():
        parser.error(f"--benchmark: no such file {args.benchmark}")
    if not 0.0 < args.target < 1.0:
        parser.error(f"--target must lie in (0, 1), got {args.target}")
    if args.peak_gflops is not None and not 0.0 < args.peak_gflops < math.inf:
        parser.error(f"--peak-gflops must be a positive number, got {args.peak_gflops}")
    torch.set_num_threads(1)

    config = load_config(None)  # the default run's network and view
    flops = network_flops(ActorCritic(18, **network_settings(config)))
    total = flops["forward"] + flops["backward"]
    if args.peak_gflops is None:
        rates = matmul_gflops([*GEMM_SIZES, largest_conv_gemm(config)], seconds=args.gemm_seconds)
        gflops = max(rates.values())
        peak_line = ", ".join(f"{m}x{k}x{n} {rate:.1f}" for (m, k, n), rate in rates.items()) + f"; peak {gflops:.1f}"
    else:
        gflops = args.peak_gflops
        peak_line = f"peak {gflops:.1f} (given, not timed)"
    least_ms = total / gflops / 1e6
    if args.benchmark is not None:
        env_ms, measured = from_benchmark(args.benchmark)
    else:
        env_ms, measured = env_ms_per_step(config, args.envs, args.env_seconds), {}
    allowed_ms = env_ms * (1.0 / args.target - 1.0)  # network time per step that still meets the target

    print(f"# roofline: torch {torch.__version__}, 1 thread")
    print(f"network FLOPs per agent step: forward {flops['forward'] / 1e6:.2f} M, backward "
          f"{flops['backward'] / 1e6:.2f} M, total {total / 1e6:.2f} M (matmul and convolution arithmetic)")
    print(f"float32 matmul, GFLOPS: {peak_line}")
    print(f"least network time per agent step: {least_ms:.3f} ms")
    print(f"env time per agent step on one core: {env_ms:.3f} ms")
    print(f"best possible ours/env: {env_ms / (env_ms + least_ms):.2f}")
    print(f"ours/env {args.target} allows {allowed_ms:.3f} ms of network per agent step: "
          f"{least_ms / allowed_ms:.0%} of peak over all of the network's work")
    for name, split in measured.items():
        network = split["forward"] + split["backward"] + split["optimizer"]
        print(f"measured {name}: forward {split['forward']:.3f} + backward {split['backward']:.3f} + optimizer "
              f"{split['optimizer']:.3f} = {network:.3f} ms per agent step, {least_ms / network:.0%} of peak")


if __name__ == "__main__":
    main()
