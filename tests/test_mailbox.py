"""The training loop's mailbox: a process killed at the worst moment silences only itself."""
from __future__ import annotations

import os
import signal
import time

import pytest
import torch.multiprocessing as mp

from a3c.mailbox import Mailbox
from a3c.messages import Notice

CTX = mp.get_context("spawn")


def hold_the_write_lock(queue, holding) -> None:
    """Take the queue's write lock the way its feeder thread does around each send, then
    stay there: the moment at which a SIGKILL leaves the lock taken for good."""
    queue._wlock.acquire()
    holding.set()
    time.sleep(60)


def send(queue, texts) -> None:
    for text in texts:
        queue.put(Notice(text))


def kill_while_holding_the_write_lock(queue) -> None:
    if getattr(queue, "_wlock", None) is None:  # a platform whose queues have no write lock
        pytest.skip("this platform's multiprocessing.Queue has no write lock")
    holding = CTX.Event()
    proc = CTX.Process(target=hold_the_write_lock, args=(queue, holding), daemon=True)
    proc.start()
    assert holding.wait(60), "the child never took the lock"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()


def run(target, *args) -> None:
    proc = CTX.Process(target=target, args=args, daemon=True)
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0


def texts_collected(mailbox: Mailbox, expected: int, seconds: float = 10.0) -> list[str]:
    texts, deadline = [], time.monotonic() + seconds
    while len(texts) < expected and time.monotonic() < deadline:
        texts += [message.text for message in mailbox.collect(timeout=0.5)]
    return texts


def test_a_shared_queue_goes_silent_when_one_writer_dies_holding_its_lock():
    """Why the mailbox exists: with one queue for every process, a writer SIGKILLed inside
    a send leaves the lock taken, and the next writer's messages never arrive."""
    queue = CTX.Queue()
    kill_while_holding_the_write_lock(queue)
    proc = CTX.Process(target=send, args=(queue, ["lost"]), daemon=True)
    proc.start()
    time.sleep(2.0)
    assert queue.empty()
    proc.kill()
    proc.join()


def test_a_sender_killed_holding_its_lock_silences_neither_the_others_nor_its_replacement():
    mailbox = Mailbox(CTX)
    kill_while_holding_the_write_lock(mailbox.queue_for("worker 0"))
    run(send, mailbox.queue_for("worker 1"), ["from worker 1"])
    run(send, mailbox.queue_for("worker 0"), ["from the restarted worker 0"])  # the restart: a new queue
    assert sorted(texts_collected(mailbox, 2)) == ["from the restarted worker 0", "from worker 1"]


def test_what_a_replaced_sender_sent_before_it_ended_is_still_delivered():
    mailbox = Mailbox(CTX)
    run(send, mailbox.queue_for("evaluator"), ["first", "second"])
    replacement = mailbox.queue_for("evaluator")  # the old queue is read out once more, then dropped
    run(send, replacement, ["third"])
    assert texts_collected(mailbox, 3) == ["first", "second", "third"]
    assert mailbox.retired == []


def test_collect_waits_up_to_its_timeout_and_no_longer():
    mailbox = Mailbox(CTX)
    mailbox.queue_for("worker 0")
    started = time.monotonic()
    assert mailbox.collect(timeout=0.3) == []
    assert 0.3 <= time.monotonic() - started < 2.0
    started = time.monotonic()
    assert mailbox.collect() == []  # no timeout: a look, no wait
    assert time.monotonic() - started < 0.3
