"""Worker processes on this machine, sharing the global network's memory (Hogwild).

Each worker is a spawned process with one torch thread; it reads and updates the
shared parameters and optimizer statistics in place, without locks, as in the A3C
paper, and sends its messages on a multiprocessing queue of its own (a3c.mailbox).
"""
from __future__ import annotations

import signal

import torch

from a3c.backends.base import Backend
from a3c.config import Config
from a3c.mailbox import Mailbox
from a3c.memory import keep_freed_memory
from a3c.messages import Failed
from a3c.model import ActorCritic
from a3c.processes import stop_processes
from a3c.shared import SharedState, network_snapshot
from a3c.worker import Worker


class LocalLink:
    """A worker's link (a3c.worker.Link) to the shared memory of this machine."""

    def __init__(self, shared: SharedState, queue, rank: int) -> None:
        self.shared, self.queue, self.rank = shared, queue, rank

    @property
    def global_step(self) -> int:
        return self.shared.global_step

    def saved_obs_norm(self) -> list[float] | None:
        row = self.shared.obs_norm[self.rank]
        return row.tolist() if row[2] > 0 else None

    def pull(self, model: ActorCritic) -> None:
        model.copy_from(self.shared.model)

    def push(self, grads, steps: int, obs_norm: list[float], timings: torch.Tensor) -> None:
        shared = self.shared
        shared.steps[self.rank] += steps
        if grads is not None:
            shared.optimizer.step(grads, self.rank, shared.global_step)
        shared.obs_norm[self.rank] = torch.tensor(obs_norm, dtype=torch.float64)
        shared.timings[self.rank] += timings  # one shared write per update

    def report(self, message) -> None:
        self.queue.put(message)

    def stop_requested(self) -> bool:
        return self.shared.stop.is_set()

    def should_stop(self) -> bool:
        return self.shared.should_stop()


def run_worker(rank: int, config: Config, shared: SharedState, queue, restart: int = 0) -> None:
    """Process entry point: never raises; reports errors on the queue and exits 1."""
    torch.set_num_threads(1)  # one core per worker; also avoids OpenMP trouble in children
    keep_freed_memory()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    try:
        Worker(rank, config, LocalLink(shared, queue, rank), restart).run()
    except Exception:  # noqa: BLE001 - anything a worker hits is reported, then the process ends
        queue.put(Failed.now(f"worker {rank}"))
        raise SystemExit(1)


class LocalBackend(Backend):
    def __init__(self, config: Config, shared: SharedState, mailbox: Mailbox, ctx, n_actions: int) -> None:
        super().__init__(config, shared, mailbox, ctx, n_actions)
        self.procs = {}

    def start_workers(self, ranks, restart: int = 0) -> None:
        for rank in ranks:
            queue = self.mailbox.queue_for(f"worker {rank}")
            proc = self.ctx.Process(target=run_worker, args=(rank, self.config, self.shared, queue, restart),
                                    name=f"a3c-worker-{rank}", daemon=True)
            proc.start()
            self.procs[rank] = proc

    def running_workers(self) -> int:
        return len(self.procs)

    def ended_workers(self) -> list[tuple[int, int]]:
        ended = []
        for rank, proc in list(self.procs.items()):
            if not proc.is_alive():
                proc.join()
                ended.append((rank, proc.exitcode))
                del self.procs[rank]
        return ended

    def poll(self) -> list:
        return []  # the workers write to their queues in the loop's mailbox

    def checkpoint_state(self) -> dict:
        shared = self.shared
        return network_snapshot(shared.model, shared.optimizer, shared.global_step, shared.obs_norm)

    def stop_workers(self) -> None:
        self.shared.stop.set()
        stop_processes(list(self.procs.values()))
        self.procs.clear()

    def process_ids(self) -> dict[str, int]:
        return {f"worker {rank}": proc.pid for rank, proc in self.procs.items()}
