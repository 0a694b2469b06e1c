"""Time one learning update of the A3C network: torch.nn + autograd vs our layers.

One update = 20 forward steps on single frames (LSTM state carried), then the
backward pass from random gradients on values and logits. Single-threaded; medians
over many repetitions after a warm-up; A and B alternate so machine drift cancels.
The network has the default run's sizes (a3c.config.Config: 84x84 frames).

    python -m scripts.bench_layers [--repeats 200] [--steps 20]
"""
from __future__ import annotations

import platform
import statistics
import time

import torch

from a3c.cli import ArgumentParser
from a3c.memory import keep_freed_memory
from a3c.config import load_config
from a3c.model import ActorCritic, network_settings
from tests.autograd_reference import TorchActorCritic

N_ACTIONS = 18


def time_autograd(model, frames, grad_logits, grad_values):
    start = time.perf_counter()
    state = (torch.zeros(1, 256), torch.zeros(1, 256))
    logits, values = [], []
    for frame in frames:
        lg, v, state = model(frame, state)
        logits.append(lg)
        values.append(v)
    mid = time.perf_counter()
    loss = (torch.stack(logits) * grad_logits).sum() + (torch.stack(values) * grad_values).sum()
    model.zero_grad()
    loss.backward()
    end = time.perf_counter()
    return mid - start, end - mid


def time_ours(model, frames, grad_logits, grad_values):
    start = time.perf_counter()
    model.zero_grad()
    state = model.initial_state(1)
    for frame in frames:
        _, _, state = model.step(frame, state, record=True)
    mid = time.perf_counter()
    model.backward(grad_logits, grad_values)
    end = time.perf_counter()
    return mid - start, end - mid


def main() -> None:
    parser = ArgumentParser(prog="python -m scripts.bench_layers", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()  # as the workers do; applies to both sides alike
    torch.manual_seed(0)

    sizes = network_settings(load_config(None))
    ours = ActorCritic(N_ACTIONS, **sizes, seed=0)
    reference = TorchActorCritic(N_ACTIONS, **sizes)
    side, channels = sizes["frame_size"], sizes["frame_stack"]
    frames = [torch.rand(1, channels, side, side) for _ in range(args.steps)]
    grad_logits = torch.randn(args.steps, 1, N_ACTIONS)
    grad_values = torch.randn(args.steps, 1, 1)

    timings = {"autograd": [], "ours": []}
    for rep in range(args.warmup + args.repeats):
        for name, fn, model in (("autograd", time_autograd, reference), ("ours", time_ours, ours)):
            fwd, bwd = fn(model, frames, grad_logits, grad_values)
            if rep >= args.warmup:
                timings[name].append((fwd, bwd))

    print(f"# bench_layers: {args.steps}-step update, medians of {args.repeats} repetitions, 1 thread")
    print(f"# torch {torch.__version__}, python {platform.python_version()}, {platform.processor() or platform.machine()}")
    totals = {}
    for name, rows in timings.items():
        fwd = statistics.median(r[0] for r in rows) * 1e3
        bwd = statistics.median(r[1] for r in rows) * 1e3
        totals[name] = statistics.median(r[0] + r[1] for r in rows) * 1e3
        print(f"{name:>9}: forward {fwd:6.2f} ms  backward {bwd:6.2f} ms  total {totals[name]:6.2f} ms/update")
    print(f"ratio ours/autograd: {totals['ours'] / totals['autograd']:.3f}")


if __name__ == "__main__":
    main()
