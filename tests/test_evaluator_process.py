"""The evaluator beside training: both policies on request, at a low priority."""
from __future__ import annotations

import os
import queue as queue_errors
import signal
import threading
import time

import torch.multiprocessing as mp

from a3c.config import load_config
from a3c.evaluator_process import run_evaluator
from a3c.messages import Evaluated
from a3c.model import ActorCritic, network_settings
from a3c.optim import optimizer_for
from a3c.shared import SharedState, StopFlag


def test_it_plays_each_policy_of_both_and_runs_at_a_low_priority(tmp_path):
    config = load_config("configs/smoke.yaml", {"run_dir": str(tmp_path), "eval_policy": "both",
                                                "eval_max_steps": 50, "eval_clip_every": 0, "workers": 1,
                                                "eval_nice": 15})
    ctx = mp.get_context("spawn")
    model = ActorCritic(18, **network_settings(config), seed=0)
    shared = SharedState.create(model, optimizer_for(config, model.parameters(), 1), 1)
    shared.obs_norm[0] = shared.obs_norm.new_tensor([0.4, 0.2, 100.0])  # a worker's normaliser state
    queue = ctx.Queue()
    proc = ctx.Process(target=run_evaluator, args=(config, shared, queue, 18), daemon=True)
    proc.start()
    try:
        messages, deadline = [], time.monotonic() + 120
        while len(messages) < 2 and time.monotonic() < deadline:
            try:
                message = queue.get(timeout=1)
            except queue_errors.Empty:
                continue
            messages.append(message)
            if len(messages) == 1:
                # niceness adds to the parent's, up to 19
                assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 15)
        assert [type(m) for m in messages] == [Evaluated, Evaluated], messages
        assert [m.policy for m in messages] == ["sample", "greedy"]
        assert all(m.mean_length <= 50 for m in messages)  # eval_max_steps cuts each episode
        best = tmp_path / "checkpoints" / "best.pt"  # written after the first policy's message
        while not best.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert best.exists()
    finally:
        shared.stop.set()
        proc.join(10)
        if proc.is_alive():
            proc.kill()


def _poll_the_stop_flag(stop, looping) -> None:  # a child that reads the flag without pause, until killed
    looping.set()
    while True:
        stop.is_set()


def test_a_child_killed_while_reading_the_stop_flag_cannot_block_the_run_from_stopping():
    """A multiprocessing.Event guards its flag with a lock: a child SIGKILLed while holding
    it (a worker or the evaluator of a CI run) kept it, and the main process hung at
    stop.set() before its final checkpoint."""
    ctx = mp.get_context("spawn")
    stop = StopFlag()
    for _ in range(3):
        looping = StopFlag()
        child = ctx.Process(target=_poll_the_stop_flag, args=(stop, looping), daemon=True)
        child.start()
        assert looping.wait(120.0)  # (a spawned child imports torch first)
        time.sleep(0.2)  # with an Event, 7 kills in 10 land while the child holds its lock
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    setter = threading.Thread(target=stop.set, daemon=True)
    setter.start()
    setter.join(5.0)
    assert not setter.is_alive() and stop.is_set() and stop.wait(0.0)


def test_the_stop_flag_waits_until_set_or_the_timeout():
    stop = StopFlag()
    started = time.monotonic()
    assert stop.wait(0.1) is False and 0.1 <= time.monotonic() - started < 1.0
    threading.Timer(0.1, stop.set).start()
    assert stop.wait(5.0) is True and stop.is_set()
