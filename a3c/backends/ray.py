"""Workers as actors on a Ray cluster, around a parameter server.

``python -m a3c.train backend=ray [ray_address=auto|HOST:PORT] workers=N``

  ParameterServer (one actor, num_cpus=0: it mostly waits)  holds the global network
      and the same shared optimizer code as the local backend; applies each pushed
      gradient as it arrives (A3C's asynchronous updates) and answers with the current
      weights; keeps the step counts, normalisation rows, timings and worker messages.
  RayWorker (N actors, one CPU each)  runs the same ``a3c.worker.Worker`` loop through a
      :class:`RayLink`: the worker clips its gradients, the push carries them with the
      steps made and the messages since the last push, and its reply brings the fresh
      weights for the next rollout (or replay, with epochs > 1).
  RayBackend (in the driver)  starts and watches the actors for the training loop and
      mirrors the server's counters and (every few seconds) its weights into the local
      ``SharedState``, which the evaluator process reads as it does with the local backend.
      Checkpoints have the same format, so either backend resumes the other's.

Ray hands out read-only numpy arrays; they are copied before anything writes to them.
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from a3c.backends.base import Backend, BackendError
from a3c.config import Config, ConfigError
from a3c.mailbox import Mailbox
from a3c.memory import keep_freed_memory
from a3c.messages import Failed, Notice
from a3c.model import ActorCritic, network_settings
from a3c.optim import optimizer_for
from a3c.processes import STOP_GRACE_SECONDS
from a3c.shared import SharedState, network_snapshot
from a3c.worker import Worker

INSTALL_HINT = 'backend=ray needs Ray: pip install -e ".[ray]"'
CALL_TIMEOUT = 60.0  # seconds the driver waits for the parameter server before calling it lost
# seconds a worker actor has to start (import torch, build its games): over 60 on two cores
# busy with other training runs; a worker that gets no CPU at all still fails, later
START_TIMEOUT = 180.0
WEIGHTS_REFRESH = 5.0  # seconds between refreshes of the driver's copy of the weights (evaluator)


def import_ray():
    """The ray module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def _copy_into(tensors: list[torch.Tensor], arrays) -> None:
    for tensor, array in zip(tensors, arrays):
        np.copyto(tensor.numpy(), array)  # Ray's arrays are read-only: copy, never alias


class ParameterServer:
    """The global network and optimizer; see the module docstring. Runs in one actor."""

    def __init__(self, n_actions: int, config: Config, state: dict) -> None:
        torch.set_num_threads(1)
        self.model = ActorCritic(n_actions, **network_settings(config), forget_bias=config.forget_bias)
        self.model.load_state_dict(state["model"])
        self.optimizer = optimizer_for(config, self.model.parameters(), config.workers)
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = state["steps"].clone()
        self.obs_norm = state["obs_norm"].clone()
        self.timings = SharedState.timing_table(config.workers)
        self.messages: list = []
        self.received = 0  # pushes, skipped updates included; applied ones show in the optimizer's count
        self.start_updates = self.optimizer.update_count
        self.stopping = False

    def weights(self) -> list[np.ndarray]:
        return [p.numpy() for p in self.model.parameters()]

    def pull(self, rank: int):
        """(weights, this worker's normalisation row, global step) for a starting worker."""
        return self.weights(), self.obs_norm[rank].numpy(), int(self.steps.sum())

    def push(self, rank: int, grads, steps: int, obs_norm_row, timings, messages):
        """Apply one worker's (already clipped) gradients, None for a skipped update, and
        record what it reports. Returns (global step, whether to stop, the current weights)."""
        self.steps[rank] += steps
        self.received += 1  # a skipped update (grads None) is a push that applies nothing
        if grads is not None:
            self.optimizer.step([torch.tensor(g) for g in grads], rank, int(self.steps.sum()))
        self.obs_norm[rank] = torch.from_numpy(np.array(obs_norm_row))
        self.timings[rank] += torch.from_numpy(np.array(timings))
        self.messages.extend(messages)
        return int(self.steps.sum()), self.stopping, self.weights()

    def report(self, messages) -> None:
        self.messages.extend(messages)

    def drain(self):
        """Messages since the last call, and the counters the driver mirrors."""
        messages, self.messages = self.messages, []
        applied = self.optimizer.update_count - self.start_updates
        return messages, self.steps.numpy(), self.obs_norm.numpy(), self.timings.numpy(), self.received, applied

    def checkpoint_state(self) -> dict:
        return network_snapshot(self.model, self.optimizer, int(self.steps.sum()), self.obs_norm)

    def stop(self) -> None:
        self.stopping = True

    def get_pid(self) -> int:
        return os.getpid()


class RayLink:
    """A worker actor's link (a3c.worker.Link) to the parameter server.

    Messages wait in ``outbox`` and travel with the next push, one call per update.
    """

    def __init__(self, ray, server, rank: int) -> None:
        self.ray, self.server, self.rank = ray, server, rank
        self.weights, self.obs_row, self._global_step = ray.get(server.pull.remote(rank))
        self.outbox: list = []
        self.stopping = False

    @property
    def global_step(self) -> int:
        return self._global_step

    def saved_obs_norm(self) -> list[float] | None:
        return self.obs_row.tolist() if self.obs_row[2] > 0 else None

    def pull(self, model: ActorCritic) -> None:
        _copy_into(model.parameters(), self.weights)

    def push(self, grads, steps: int, obs_norm: list[float], timings: torch.Tensor) -> None:
        messages, self.outbox = self.outbox, []
        reply = self.server.push.remote(self.rank, None if grads is None else [g.numpy() for g in grads],
                                        steps, obs_norm, timings.numpy(), messages)
        self._global_step, self.stopping, self.weights = self.ray.get(reply)

    def report(self, message) -> None:
        self.outbox.append(message)

    def flush(self) -> None:
        """Send what the last push did not carry."""
        messages, self.outbox = self.outbox, []
        if messages:
            self.ray.get(self.server.report.remote(messages))

    def stop_requested(self) -> bool:
        return self.stopping

    def should_stop(self) -> bool:
        return self.stopping


class RayWorker:
    """One worker actor: the Worker loop through a RayLink."""

    def __init__(self, rank: int, config: Config, server, restart: int) -> None:
        import ray

        torch.set_num_threads(1)
        keep_freed_memory()
        self.rank = rank
        self.link = RayLink(ray, server, rank)
        self.worker = Worker(rank, config, self.link, restart)

    def get_pid(self) -> int:
        return os.getpid()

    def run(self) -> int:
        try:
            self.worker.run()
        except Exception:  # report it as a local worker does, then let the driver restart us
            self.link.report(Failed.now(f"worker {self.rank}"))
            self.link.flush()
            raise
        self.link.flush()
        return 0


class RayBackend(Backend):
    def __init__(self, config: Config, shared: SharedState, mailbox: Mailbox, ctx, n_actions: int) -> None:
        super().__init__(config, shared, mailbox, ctx, n_actions)
        ray = self.ray = import_ray()
        try:
            # no address: a Ray of our own, one CPU per worker ("local": not the cluster that
            # RAY_ADDRESS or the last `ray start` on this machine names, as None would join)
            local = {"num_cpus": config.workers} if config.ray_address is None else {}
            ray.init(address=config.ray_address or "local", include_dashboard=False, log_to_driver=False, **local)
        except Exception as error:  # noqa: BLE001 - Ray raises several kinds here
            raise ConfigError(f"cannot start or reach Ray at {config.ray_address or 'a new local instance'}: "
                              f"{str(error).splitlines()[0]}") from None
        state = {"model": shared.model.state_dict(), "optimizer": shared.optimizer.state_dict(),
                 "steps": shared.steps.clone(), "obs_norm": shared.obs_norm.clone()}
        # the server lives on the driver's node: a lost worker node must not take the global network with it
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        self.server = ray.remote(num_cpus=0, max_restarts=0)(ParameterServer).options(
            scheduling_strategy=here).remote(n_actions, config, state)
        self.worker_class = ray.remote(num_cpus=1, max_restarts=0)(RayWorker)
        self.actors: dict[int, tuple] = {}  # rank -> (actor, its run() reference, pid)
        self.notices: list = []
        self.pushed = self.applied = 0
        self._weights_refreshed = 0.0

    def _server_call(self, method, *args):
        """Call the parameter server; on failure mark the backend failed (the loop stops)."""
        if self.failure is not None:
            return None
        try:
            return self.ray.get(getattr(self.server, method).remote(*args), timeout=CALL_TIMEOUT)
        except Exception as error:  # noqa: BLE001 - actor died, node lost, timeout
            self.failure = "parameter server lost"
            self.notices.append(Notice(f"parameter server lost ({type(error).__name__}); stopping: the last "
                                       f"checkpoint is kept as it was"))
            return None

    def start_workers(self, ranks, restart: int = 0) -> None:
        # all at once: an actor takes ~2 s to start (a process, torch, its games), so one
        # after another a cluster's 30 workers would take a minute
        actors = {rank: self.worker_class.remote(rank, self.config, self.server, restart) for rank in ranks}
        pids = {rank: actor.get_pid.remote() for rank, actor in actors.items()}
        deadline = time.monotonic() + START_TIMEOUT
        failed = []
        for rank, actor in actors.items():
            try:
                pid = self.ray.get(pids[rank], timeout=max(0.0, deadline - time.monotonic()))
            except Exception as error:  # noqa: BLE001 - no CPU free, a failing node, a crash in __init__
                self.ray.kill(actor, no_restart=True)
                failed.append((rank, type(error).__name__))
                continue
            self.actors[rank] = (actor, actor.run.remote(), pid)
        if failed:
            names = ", ".join(str(rank) for rank, _ in failed)
            causes = ", ".join(sorted({cause for _, cause in failed}))
            raise BackendError(f"worker{'s' if len(failed) > 1 else ''} {names} could not start on Ray ({causes})")

    def running_workers(self) -> int:
        return len(self.actors)

    def ended_workers(self) -> list[tuple[int, int]]:
        if not self.actors:
            return []
        refs = {run_ref: rank for rank, (_, run_ref, _) in self.actors.items()}
        ready, _ = self.ray.wait(list(refs), num_returns=len(refs), timeout=0)
        ended = []
        for run_ref in ready:
            rank = refs[run_ref]
            try:
                self.ray.get(run_ref)
                code = 0
            except Exception:  # noqa: BLE001 - a crashed or killed actor: the loop reports it
                code = 1
            self.ray.kill(self.actors.pop(rank)[0], no_restart=True)  # free its CPU for a replacement
            ended.append((rank, code))
        return ended

    def poll(self) -> list:
        reply = self._server_call("drain")
        messages = []
        if reply is not None:
            messages, steps, obs_norm, timings, self.pushed, self.applied = reply
            shared = self.shared
            _copy_into([shared.steps, shared.obs_norm, shared.timings], [steps, obs_norm, timings])
            if time.monotonic() - self._weights_refreshed >= WEIGHTS_REFRESH:  # for the evaluator
                weights = self._server_call("weights")
                if weights is not None:
                    _copy_into(shared.model.parameters(), weights)
                self._weights_refreshed = time.monotonic()
        notices, self.notices = self.notices, []
        return [*messages, *notices]

    def checkpoint_state(self) -> dict | None:
        return self._server_call("checkpoint_state")  # None once the server is gone: keep the last checkpoint

    def stop_workers(self) -> None:
        self.shared.stop.set()
        if self.failure is None:
            try:
                self.server.stop.remote()
            except Exception:  # noqa: BLE001 - nothing left to tell
                pass
        if self.actors:
            refs = [run_ref for _, run_ref, _ in self.actors.values()]
            self.ray.wait(refs, num_returns=len(refs), timeout=STOP_GRACE_SECONDS)
        for actor, _, _ in self.actors.values():
            self.ray.kill(actor, no_restart=True)
        self.actors.clear()

    def process_ids(self) -> dict[str, int]:
        ids = {f"worker {rank}": pid for rank, (_, _, pid) in self.actors.items()}
        server_pid = self._server_call("get_pid")
        return {**ids, **({"parameter server": server_pid} if server_pid else {})}

    def close(self) -> str:
        if self.failure is None:
            self.ray.kill(self.server)
        self.ray.shutdown()
        return f"gradients pushed {self.pushed}, applied {self.applied}"
