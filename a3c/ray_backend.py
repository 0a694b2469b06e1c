"""Training across a Ray cluster: a parameter server and worker actors.

``python -m a3c.train backend=ray [ray_address=auto|HOST:PORT] workers=N``

  ParameterServer (one actor, num_cpus=0: it mostly waits)  holds the global network
      and the same shared optimizer code as the local backend; applies each pushed
      gradient as it arrives (A3C's asynchronous updates) and answers with the current
      weights; keeps the step counts, normalisation rows, timings and worker messages.
  RayWorker (N actors, one CPU each)  runs the very same ``a3c.worker.Worker`` loop
      (games, rollout, hand-computed gradients) against ``RemoteShared``, a stand-in for
      the local backend's shared memory: clipping happens in the worker, the push
      carries the gradients and the steps made, its reply brings the fresh weights for
      the next rollout.
  RayTrainer (the driver)  is the local ``Trainer`` with Ray handles in place of
      processes: the same progress display, TensorBoard, evaluator process, restarts and
      checkpoints (same format, so either backend resumes the other's).

Ray hands out read-only numpy arrays; they are copied before anything writes to them.
"""
from __future__ import annotations

import threading
import time
import traceback

import numpy as np
import torch

from a3c.config import Config, ConfigError
from a3c.memory import keep_freed_memory
from a3c.model import ActorCritic
from a3c.optim import clip_grad_norm, make_optimizer
from a3c.train import Trainer
from a3c.worker import PHASES, SharedState, Worker

INSTALL_HINT = 'backend=ray needs Ray: pip install -e ".[ray]"'
CALL_TIMEOUT = 60.0  # seconds the driver waits for the parameter server before calling it lost
WEIGHTS_REFRESH = 5.0  # seconds between refreshes of the driver's copy of the weights (evaluator)


def import_ray():
    """The ray module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


class _Outbox(list):
    """The queue a Worker puts its messages in."""

    put = list.append


def _copy_into(tensors: list[torch.Tensor], arrays) -> None:
    for tensor, array in zip(tensors, arrays):
        np.copyto(tensor.numpy(), array)  # Ray's arrays are read-only: copy, never alias


class ParameterServer:
    """The global network and optimizer; see the module docstring. Runs in one actor."""

    def __init__(self, n_actions: int, config: Config, workers: int, state: dict) -> None:
        torch.set_num_threads(1)
        self.model = ActorCritic(n_actions, frame_size=config.frame_size, forget_bias=config.forget_bias)
        self.model.load_state_dict(state["model"])
        self.optimizer = make_optimizer(config.optimizer, self.model.parameters(), config.lr, slots=workers)
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = state["steps"].clone()
        self.obs_norm = state["obs_norm"].clone()
        self.timings = SharedState.timing_table(workers)
        self.messages: list[tuple] = []
        self.received = 0  # gradients pushed to us; applied ones show in the optimizer's count
        self.start_updates = self.optimizer.update_count
        self.stopping = False

    def weights(self) -> list[np.ndarray]:
        return [p.numpy() for p in self.model.parameters()]

    def pull(self, rank: int):
        """(weights, this worker's normalisation row, global step) for a starting worker."""
        return self.weights(), self.obs_norm[rank].numpy(), int(self.steps.sum())

    def push(self, rank: int, grads, lr: float, steps: int, obs_norm_row, timings_delta, messages):
        """Apply one worker's (already clipped) gradients; record what it reports.

        ``grads`` is None for an update the worker skipped (a non-finite gradient).
        Returns (global step, whether to stop, the current weights).
        """
        if grads is not None:
            self.received += 1
            self.optimizer.step([torch.tensor(g) for g in grads], lr, rank)
        self.steps[rank] += steps
        self.obs_norm[rank] = torch.from_numpy(np.array(obs_norm_row))
        self.timings[rank] += torch.from_numpy(np.array(timings_delta))
        self.messages.extend(messages)
        return int(self.steps.sum()), self.stopping, self.weights()

    def drain(self):
        """Messages since the last call, and the counters the driver mirrors."""
        messages, self.messages = self.messages, []
        applied = self.optimizer.update_count - self.start_updates
        return messages, self.steps.numpy(), self.obs_norm.numpy(), self.timings.numpy(), self.received, applied

    def checkpoint_state(self) -> dict:
        return {"model": {k: v.clone() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "global_step": int(self.steps.sum()),
                "obs_norm": self.obs_norm.clone()}

    def stop(self) -> None:
        self.stopping = True

    def get_pid(self) -> int:
        import os

        return os.getpid()


class RemoteShared:
    """What a Worker uses of SharedState, backed by the parameter server.

    ``optimizer.clip_and_step`` clips locally (same code as the local backend), pushes,
    and loads the weights that come back; ``model`` holds them for the next rollout.
    Step counts, normalisation rows, timings and messages travel with each push.
    """

    def __init__(self, ray, server, rank: int, workers: int, n_actions: int, config: Config) -> None:
        self.ray, self.server, self.rank = ray, server, rank
        self.model = ActorCritic(n_actions, frame_size=config.frame_size, forget_bias=config.forget_bias)
        weights, obs_row, self._global_step = ray.get(server.pull.remote(rank))
        _copy_into(self.model.parameters(), weights)
        self.optimizer = self
        self.steps = torch.zeros(workers + 1, dtype=torch.int64)
        self.obs_norm = torch.zeros(workers, 3, dtype=torch.float64)
        self.obs_norm[rank] = torch.from_numpy(np.array(obs_row))
        self.timings = SharedState.timing_table(workers)
        self.stop = threading.Event()
        self.outbox = _Outbox()  # the worker's messages, sent with the next push
        self._sent_steps = 0
        self._sent_timings = torch.zeros(len(PHASES) + 1, dtype=torch.float64)

    @property
    def global_step(self) -> int:
        return self._global_step + int(self.steps[self.rank]) - self._sent_steps

    def should_stop(self) -> bool:
        return self.stop.is_set()

    def clip_and_step(self, grads, max_norm: float, lr: float, slot: int = 0):
        norm = clip_grad_norm(grads, max_norm)
        applied = bool(np.isfinite(norm))  # a NaN or inf gradient is never sent
        self.push([g.numpy() for g in grads] if applied else None, lr)
        return norm, applied

    def push(self, grads, lr: float = 0.0) -> None:
        """Send gradients (or None) with everything reported since the last push; load the reply."""
        steps = int(self.steps[self.rank])
        timings = self.timings[self.rank].clone()
        messages, self.outbox[:] = list(self.outbox), []
        reply = self.server.push.remote(
            self.rank, grads, lr, steps - self._sent_steps, self.obs_norm[self.rank].numpy(),
            (timings - self._sent_timings).numpy(), messages)
        self._global_step, stopping, weights = self.ray.get(reply)
        self._sent_steps, self._sent_timings = steps, timings
        _copy_into(self.model.parameters(), weights)
        if stopping:
            self.stop.set()


class RayWorker:
    """One worker actor: the local backend's Worker against RemoteShared."""

    def __init__(self, rank: int, config: Config, server, n_actions: int, restart: int) -> None:
        import os

        import ray

        torch.set_num_threads(1)
        keep_freed_memory()
        self.pid = os.getpid()
        self.shared = RemoteShared(ray, server, rank, config.workers, n_actions, config)
        self.worker = Worker(rank, config, self.shared, self.shared.outbox, restart)

    def get_pid(self) -> int:
        return self.pid

    def run(self) -> int:
        try:
            self.worker.run()
        except Exception:  # report it as a local worker does, then let the driver restart us
            self.shared.outbox.put(("error", self.shared.rank, traceback.format_exc()[-3000:]))
            self.shared.push(None)
            raise
        self.shared.push(None)  # what the last update's report did not carry yet
        return 0


class ActorHandle:
    """A worker actor seen through the bits of multiprocessing.Process the Trainer uses."""

    def __init__(self, ray, actor, run_ref, pid: int) -> None:
        self.ray, self.actor, self.run_ref, self.pid = ray, actor, run_ref, pid
        self.exitcode: int | None = None

    def is_alive(self) -> bool:
        self.join(0)
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        if self.exitcode is not None:
            return
        ready, _ = self.ray.wait([self.run_ref], timeout=timeout)
        if ready:
            try:
                self.ray.get(self.run_ref)
                self.exitcode = 0
            except Exception:  # noqa: BLE001 - a crashed or killed actor: reported by the Trainer
                self.exitcode = 1
            self.ray.kill(self.actor, no_restart=True)  # free its CPU for a replacement

    def terminate(self) -> None:
        self.kill()

    def kill(self) -> None:
        self.ray.kill(self.actor, no_restart=True)
        self.exitcode = 1 if self.exitcode is None else self.exitcode


class RayTrainer(Trainer):
    """The local Trainer with worker actors and a parameter server instead of processes."""

    def __init__(self, config: Config, checkpoint: dict | None) -> None:
        ray = self.ray = import_ray()
        super().__init__(config, checkpoint)  # builds (or restores) the initial network and optimizer
        try:
            local = {"num_cpus": self.workers} if config.ray_address is None else {}  # one CPU per worker
            ray.init(address=config.ray_address, include_dashboard=False, log_to_driver=False, **local)
        except Exception as error:  # noqa: BLE001 - Ray raises several kinds here
            raise ConfigError(f"cannot start or reach Ray at {config.ray_address or 'a new local instance'}: "
                              f"{str(error).splitlines()[0]}") from None
        self.config.workers = self.workers
        state = {"model": self.shared.model.state_dict(), "optimizer": self.shared.optimizer.state_dict(),
                 "steps": self.shared.steps.clone(), "obs_norm": self.shared.obs_norm.clone()}
        self.server = ray.remote(num_cpus=0, max_restarts=0)(ParameterServer).remote(
            self.n_actions, config, self.workers, state)
        self.worker_class = ray.remote(num_cpus=1, max_restarts=0)(RayWorker)
        self.server_lost = False
        self.pushed = self.applied = 0
        self._weights_refreshed = 0.0

    def process_ids(self) -> dict[str, int]:
        server_pid = self._server_call("get_pid")
        return {**super().process_ids(), **({"parameter server": server_pid} if server_pid else {})}

    def start_worker(self, rank: int, restart: int = 0) -> None:
        actor = self.worker_class.remote(rank, self.config, self.server, self.n_actions, restart)
        try:
            pid = self.ray.get(actor.get_pid.remote(), timeout=CALL_TIMEOUT)
        except Exception as error:  # noqa: BLE001 - no CPU free, a failing node, a crash in __init__
            self.ray.kill(actor, no_restart=True)
            self.metrics.event(f"worker {rank} could not start on Ray ({type(error).__name__}); stopping")
            self.request_stop("a worker actor could not start", exit_code=1)
            return
        self.procs[rank] = ActorHandle(self.ray, actor, actor.run.remote(), pid)

    def _server_call(self, method, *args):
        """Call the parameter server; on failure mark it lost and stop the run."""
        if self.server_lost:
            return None
        try:
            return self.ray.get(getattr(self.server, method).remote(*args), timeout=CALL_TIMEOUT)
        except Exception as error:  # noqa: BLE001 - actor died, node lost, timeout
            self.server_lost = True
            self.metrics.event(f"parameter server lost ({type(error).__name__}); stopping: the last "
                               f"checkpoint is kept as it was")
            self.request_stop("parameter server lost", exit_code=1)
            return None

    def drain_queue(self, timeout: float) -> None:
        reply = self._server_call("drain")
        if reply is not None:
            messages, steps, obs_norm, timings, self.pushed, self.applied = reply
            for message in messages:
                self.handle(message)
            _copy_into([self.shared.steps, self.shared.obs_norm, self.shared.timings], [steps, obs_norm, timings])
            if time.monotonic() - self._weights_refreshed >= WEIGHTS_REFRESH:  # for the evaluator
                weights = self._server_call("weights")
                if weights is not None:
                    _copy_into(self.shared.model.parameters(), weights)
                self._weights_refreshed = time.monotonic()
        super().drain_queue(timeout)  # the evaluator's messages (a local process)

    def stop_workers(self) -> None:
        if not self.server_lost:
            try:
                self.server.stop.remote()
            except Exception:  # noqa: BLE001 - nothing left to tell
                pass
        super().stop_workers()

    def save(self):
        path = self.run_dir / "checkpoints" / "latest.pt"
        state = self._server_call("checkpoint_state")
        if state is None:  # the server is gone: keep the last checkpoint rather than write a stale one
            return path
        self.shared.steps.zero_()
        self.shared.steps[0] = state["global_step"]
        return self.write_checkpoint(path, state["model"], state["optimizer"], state["global_step"],
                                     state["obs_norm"])

    def run(self) -> int:
        try:
            code = super().run()
        finally:
            print(f"gradients pushed {self.pushed}, applied {self.applied}", flush=True)
            if not self.server_lost:
                self.ray.kill(self.server)
            self.ray.shutdown()
        return code
