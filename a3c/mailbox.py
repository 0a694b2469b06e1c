"""Messages from this machine's child processes to the training loop: one queue per sender.

A ``multiprocessing.Queue`` guards its pipe with a write lock that all its writers share.
A writer SIGKILLed while its queue's feeder thread holds that lock keeps it forever, and
from then on no other writer's message gets through: the episodes, and with them the
run's score, silently stop being recorded. (A child putting messages in a loop, SIGKILLed,
then a second child's 50 messages: none arrived, in 10 of 10 trials.) So each worker
and the evaluator write to a queue of their own, and a restarted process gets a new one:
a killed process can silence only itself, and its replacement speaks again.
"""
from __future__ import annotations

import queue as queue_errors
import time

from a3c.messages import Message

POLL_SECONDS = 0.02  # how often ``collect`` looks again while it waits: a small fraction of a core


class Mailbox:
    """The training loop's end of its children's queues, one per sender name."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.queues: dict[str, object] = {}
        self.retired: list = []  # queues of senders that were replaced: read out once more, then dropped

    def queue_for(self, sender: str):
        """A new queue for a process about to start as ``sender`` ("worker 0", "evaluator").

        The queue of the process it replaces (which has ended: its messages are all in the
        pipe by now) is read out on the next ``collect`` and then dropped."""
        previous = self.queues.get(sender)
        if previous is not None:
            self.retired.append(previous)
        self.queues[sender] = self.ctx.Queue()
        return self.queues[sender]

    def collect(self, timeout: float = 0.0) -> list[Message]:
        """Every message waiting now; if there is none, wait up to ``timeout`` seconds for
        one to arrive."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self._read_out(self.retired)
            self.retired = []
            messages += self._read_out(self.queues.values())
            if messages or time.monotonic() >= deadline:
                return messages
            time.sleep(POLL_SECONDS)

    @staticmethod
    def _read_out(queues) -> list[Message]:
        messages = []
        for queue in queues:
            while True:
                try:
                    messages.append(queue.get_nowait())
                except queue_errors.Empty:
                    break
        return messages
