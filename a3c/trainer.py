"""The training loop: one plan for every backend.

Build the global network and optimizer (or restore them from a checkpoint), start the
workers through a backend (a3c.backends) and the evaluator process, then watch them:
log what they report, restart one that dies, write checkpoints, and stop cleanly at
total_steps, on Ctrl-C or on SIGTERM with a final checkpoint.
"""
from __future__ import annotations

import signal
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
import yaml

from a3c.backends import BackendError, make_backend
from a3c.checkpoint import CheckpointError, load_checkpoint, restore_model, save_checkpoint
from a3c.config import Config, ConfigError
from a3c.envs import make_env
from a3c.evaluator_process import run_evaluator
from a3c.mailbox import Mailbox
from a3c.messages import EpisodeEnded, EvalClip, Evaluated, Failed, Notice, UpdateDone
from a3c.metrics import EPISODES_CSV, RunMetrics
from a3c.model import ActorCritic, network_settings
from a3c.optim import optimizer_for
from a3c.processes import exit_cause, stop_processes
from a3c.shared import SharedState, time_split


MAX_SKIPPED_IN_A_ROW = 100  # one worker's non-finite gradients this often in a row: it can no longer learn


def restore_training(config: Config, checkpoint: dict | None, n_actions: int):
    """The run's global network and optimizer: new, or restored from ``checkpoint`` (one
    that does not fit them is a ConfigError naming the file)."""
    model = ActorCritic(n_actions, **network_settings(config), seed=config.seed, forget_bias=config.forget_bias,
                         weight_init=config.weight_init)
    optimizer = optimizer_for(config, model.parameters(), config.workers)
    if checkpoint is not None:
        try:
            restore_model(model, checkpoint, config.resume)
            optimizer.load_state_dict(checkpoint["optimizer"])
        except ValueError as error:
            raise ConfigError(f"resume: {error}") from None
    return model, optimizer


class Trainer:
    def __init__(self, config: Config, checkpoint: dict | None) -> None:
        self.config = config
        self.run_dir = Path(config.run_dir)
        probe = make_env(config.env_id)
        self.n_actions = int(probe.action_space.n)
        probe.close()
        model, optimizer = restore_training(config, checkpoint, self.n_actions)
        self.ctx = mp.get_context("spawn")  # fresh interpreters: no forked OpenMP or emulator state
        start_step = int(checkpoint["global_step"]) if checkpoint is not None else 0
        self.shared = SharedState.create(model, optimizer, config.workers, start_step=start_step)
        if checkpoint is not None:
            saved_norm = checkpoint["obs_norm"]
            for rank in range(config.workers):  # more workers than before: reuse rows cyclically
                self.shared.obs_norm[rank] = saved_norm[rank % saved_norm.shape[0]]
        self.mailbox = Mailbox(self.ctx)
        self.backend = make_backend(config, self.shared, self.mailbox, self.ctx, self.n_actions)
        self.evaluator: mp.Process | None = None
        self.restarts = self.evaluator_restarts = 0
        self.stop_reason: str | None = None
        self.exit_code = 0
        self.skipped_in_a_row: dict[int, int] = {}  # per worker: another worker's good update proves nothing

    # --- processes ---------------------------------------------------------------------
    def start_workers(self, ranks, restart: int = 0) -> None:
        try:
            self.backend.start_workers(ranks, restart)
        except BackendError as error:
            self.metrics.event(f"{error}; stopping")
            self.request_stop("a worker could not start", exit_code=1)

    def start_evaluator(self) -> None:
        best = self.run_dir / "checkpoints" / "best.pt"
        best_score = None
        if best.exists():  # a resumed run keeps its best checkpoint unless it is beaten
            try:
                saved = load_checkpoint(best)
                if saved.get("eval_policy", "greedy") == self.evaluator_policy():  # scores of one policy only
                    best_score = float(saved.get("eval_mean_return", -float("inf")))
            except CheckpointError:
                best_score = None
        self.evaluator = self.ctx.Process(target=run_evaluator, name="a3c-evaluator", daemon=True,
                                          args=(self.config, self.shared, self.mailbox.queue_for("evaluator"),
                                                self.n_actions, best_score))
        self.evaluator.start()

    def evaluator_policy(self) -> str:
        """The policy whose mean score decides checkpoints/best.pt."""
        return "sample" if self.config.eval_policy == "both" else self.config.eval_policy

    def finished(self) -> bool:
        return self.shared.global_step >= self.config.total_steps or self.shared.stop.is_set()

    def check_workers(self) -> None:
        """Notice ended workers; restart failed ones until max_restarts is used up."""
        for rank, code in self.backend.ended_workers():
            # exit code 0: a worker that saw the run end (with Ray its view of the step
            # count may be ahead of ours)
            if code == 0 or self.finished():
                continue
            cause = exit_cause(code)
            if self.restarts >= self.config.max_restarts:
                self.metrics.event(f"worker {rank} died ({cause}); {self.restarts} restarts used, stopping the run")
                self.request_stop("too many worker failures", exit_code=1)
                continue
            self.restarts += 1
            self.metrics.event(f"worker {rank} died ({cause}); restarting it "
                               f"({self.restarts}/{self.config.max_restarts})")
            self.metrics.writer.add_scalar("train/worker_restarts", self.restarts, self.shared.global_step)
            self.start_workers([rank], restart=self.restarts)

    def check_evaluator(self) -> None:
        """Restart a dead evaluator (up to max_restarts); its failures never stop training."""
        if self.evaluator is None or self.evaluator.is_alive():
            return
        self.evaluator.join()
        code, self.evaluator = self.evaluator.exitcode, None
        if not self.finished() and self.evaluator_restarts < self.config.max_restarts:
            self.evaluator_restarts += 1
            self.metrics.event(f"evaluator died ({exit_cause(code)}); restarting it")
            self.start_evaluator()

    def process_ids(self) -> dict[str, int]:
        ids = self.backend.process_ids()
        if self.evaluator is not None:
            ids["evaluator"] = self.evaluator.pid
        return ids

    def request_stop(self, reason: str, exit_code: int = 0) -> None:
        if self.stop_reason is None:
            self.stop_reason, self.exit_code = reason, exit_code
        self.shared.stop.set()

    def stop_all(self) -> None:
        """Workers and evaluator, asked first, then ended: no child is left behind."""
        self.shared.stop.set()
        self.backend.stop_workers()
        if self.evaluator is not None:
            stop_processes([self.evaluator])
            self.evaluator = None

    # --- checkpoints ---------------------------------------------------------------------
    def save(self) -> Path:
        path = self.run_dir / "checkpoints" / "latest.pt"
        state = self.backend.checkpoint_state()
        if state is None:  # the global network cannot be read: the last checkpoint stays
            return path
        if not all(torch.isfinite(tensor).all() for tensor in [*state["model"].values(), state["obs_norm"]]):
            self.metrics.event(f"the weights or input statistics hold NaN or inf: {path} keeps the last good "
                               f"checkpoint")
            self.request_stop("non-finite weights", exit_code=1)
            return path
        try:
            save_checkpoint(path, {**state, "n_actions": self.n_actions, "config": self.config.to_dict()})
        except OSError as error:  # a full disk, a read-only folder: stop cleanly, the last checkpoint stays
            reason = error.strerror or str(error)
            self.metrics.event(f"error: cannot write checkpoint {path}: {reason}; the previous one is kept")
            self.request_stop(f"checkpoint not written: {reason}", exit_code=1)
        return path

    # --- messages --------------------------------------------------------------------------
    def drain(self, timeout: float) -> None:
        """Handle the backend's messages, then wait up to ``timeout`` s for the processes'."""
        for message in self.backend.poll():
            self.handle(message)
        for message in self.mailbox.collect(timeout):
            self.handle(message)

    def handle(self, message) -> None:
        metrics = self.metrics
        match message:
            case EpisodeEnded():
                metrics.episode(message.global_step, message.raw_return, message.length, message.worker,
                                message.env_index)
            case UpdateDone():
                in_a_row = self.skipped_in_a_row.get(message.worker, 0) + 1 if message.skipped else 0
                self.skipped_in_a_row[message.worker] = in_a_row
                if in_a_row >= MAX_SKIPPED_IN_A_ROW:
                    self.request_stop(f"{in_a_row} updates in a row were skipped (non-finite gradients in worker "
                                      f"{message.worker}): the run can no longer learn", exit_code=1)
                metrics.update(message.global_step, message.policy_loss, message.value_loss, message.entropy,
                               message.grad_norm, self.shared.optimizer.lr_at(message.global_step), message.skipped,
                               message.imitation_loss, message.imitated, message.replay_cut,
                               message.pixel_control_loss)
            case Evaluated():
                metrics.evaluation(message.global_step, message.mean_return, message.mean_length, message.policy)
            case EvalClip():
                metrics.clip(message.global_step, message.path)
            case Failed():
                metrics.event(f"{message.who} failed:\n{message.traceback.rstrip()}")
            case Notice():
                metrics.event(message.text)

    # --- the run ---------------------------------------------------------------------------
    def run(self) -> int:
        config = self.config
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        self.metrics = RunMetrics(self.run_dir / "tensorboard", config.total_steps, self.shared.global_step,
                                  config.log_interval, episodes_csv=self.run_dir / EPISODES_CSV)
        self.metrics.log_config(config.to_dict())
        early = (f" ({config.early_envs_per_worker} games x {config.early_num_steps}-step rollouts until step "
                 f"{config.early_steps:,})" if self.shared.global_step < config.early_steps else "")
        self.metrics.event(f"training {config.env_id} with {config.workers} workers x {config.envs_per_worker} "
                           f"envs{early} -> {self.run_dir}")
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        started = time.monotonic()
        closing = None
        try:
            self.start_workers(range(config.workers))
            if config.eval_interval > 0:
                self.start_evaluator()
            self.metrics.event("processes: " + ", ".join(
                f"{name} pid {pid}" for name, pid in self.process_ids().items()))
            last_checkpoint = time.monotonic()
            while self.backend.running_workers() and self.stop_reason is None:
                self.drain(timeout=0.2)
                self.check_workers()
                self.check_evaluator()
                if self.backend.failure is not None:
                    self.request_stop(self.backend.failure, exit_code=1)
                self.metrics.tick(min(self.shared.global_step, config.total_steps))
                if time.monotonic() - last_checkpoint >= config.checkpoint_interval:
                    self.save()
                    last_checkpoint = time.monotonic()
        finally:
            self.stop_all()
            self.drain(timeout=0.0)
            self.metrics.tick(min(self.shared.global_step, config.total_steps), force=True)  # the curves' last point
            path = self.save()
            summary = self.metrics.summary(self.shared.global_step, time.monotonic() - started)
            self.metrics.close()
            closing = self.backend.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        reason = self.stop_reason or "reached total_steps"
        split = ", ".join(f"{phase} {ms:.1f}" for phase, ms in time_split(self.shared.timings).items())
        print(f"stopped at step {self.shared.global_step} ({reason}): {summary}; checkpoint: {path}", flush=True)
        print(f"ms per update and worker: {split}", flush=True)
        if closing:
            print(closing, flush=True)
        return self.exit_code

    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        self.request_stop(f"{name} received", exit_code=128 + signum)
