"""``python -m a3c.train [--config FILE] [key=value ...]``: train A3C on an Atari game.

The plan of a run: read and check the settings (mistakes exit 2 before any process
starts), build the shared network and optimizer (or restore them from a checkpoint),
start one worker process per core, then watch them: log what they report, restart
one that dies, write checkpoints, and stop cleanly at total_steps, on Ctrl-C or on
SIGTERM with a final checkpoint.
"""
from __future__ import annotations

import argparse
import queue as queue_errors
import signal
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
import yaml

from a3c.checkpoint import CheckpointError, load_checkpoint, restore_model, save_checkpoint
from a3c.config import (Config, ConfigError, check_env_id, check_run_dir, default_run_dir, field_docs,
                        load_config, parse_overrides, resolve_workers)
from a3c.envs import make_env
from a3c.metrics import RunMetrics
from a3c.model import ActorCritic
from a3c.optim import make_optimizer
from a3c.evaluator import run_evaluator
from a3c.worker import SharedState, run_worker, time_split

EVALUATOR = "evaluator"  # key of the evaluator in Trainer.procs, beside the worker ranks

STOP_GRACE_SECONDS = 5.0


def parse_args(argv: list[str] | None) -> tuple[Config, dict | None]:
    settings = "\n".join(f"  {name:<20} {doc}" for name, doc in field_docs().items())
    parser = argparse.ArgumentParser(prog="python -m a3c.train", description="Train an A3C-LSTM agent on an Atari game, gradients computed by hand.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=f"settings (key=value):\n{settings}")
    parser.add_argument("--config", help="YAML settings file (default: configs/riverraid.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override any setting")
    args = parser.parse_args(argv)
    config = load_config(args.config, parse_overrides(args.overrides))
    check_env_id(config.env_id)
    checkpoint = None
    if config.resume:
        try:
            checkpoint = load_checkpoint(config.resume)
        except CheckpointError as error:
            raise ConfigError(f"resume: {error}") from None
        if config.run_dir is None:  # continue in the same run folder, so TensorBoard curves join up
            config.run_dir = str(Path(config.resume).resolve().parent.parent)
    if config.run_dir is None:
        config.run_dir = str(default_run_dir())
    check_run_dir(Path(config.run_dir))
    return config, checkpoint


class Trainer:
    def __init__(self, config: Config, checkpoint: dict | None) -> None:
        self.config = config
        self.run_dir = Path(config.run_dir)
        self.workers = resolve_workers(config)
        probe = make_env(config.env_id)
        n_actions = int(probe.action_space.n)
        probe.close()
        model = ActorCritic(n_actions, frame_size=config.frame_size, seed=config.seed, forget_bias=config.forget_bias)
        optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr, slots=self.workers)
        steps = torch.zeros(self.workers + 1, dtype=torch.int64)  # last slot: steps before a resume
        obs_norm = torch.zeros(self.workers, 3, dtype=torch.float64)
        if checkpoint is not None:
            try:
                restore_model(model, checkpoint, config.resume)
                optimizer.load_state_dict(checkpoint["optimizer"])
            except ValueError as error:
                raise ConfigError(f"resume: {error}") from None
            steps[-1] = int(checkpoint["global_step"])
            saved_norm = checkpoint["obs_norm"]
            for rank in range(self.workers):  # more workers than before: reuse rows cyclically
                obs_norm[rank] = saved_norm[rank % saved_norm.shape[0]]
        self.ctx = mp.get_context("spawn")  # fresh interpreters: no forked OpenMP or emulator state
        self.shared = SharedState(model.share_memory(), optimizer, steps.share_memory_(),
                                  obs_norm.share_memory_(), self.ctx.Event(),
                                  SharedState.timing_table(self.workers))
        self.queue = self.ctx.Queue()
        self.n_actions = n_actions
        self.procs: dict[int | str, mp.Process] = {}
        self.restarts = self.evaluator_restarts = 0
        self.stop_reason: str | None = None
        self.exit_code = 0

    # --- processes ---------------------------------------------------------------------
    def start_worker(self, rank: int, restart: int = 0) -> None:
        proc = self.ctx.Process(target=run_worker, args=(rank, self.config, self.shared, self.queue, restart),
                                name=f"a3c-worker-{rank}", daemon=True)
        proc.start()
        self.procs[rank] = proc

    def start_evaluator(self) -> None:
        best = self.run_dir / "checkpoints" / "best.pt"
        best_score = None
        if best.exists():  # a resumed run keeps its best checkpoint unless it is beaten
            try:
                best_score = float(load_checkpoint(best).get("eval_mean_return", -float("inf")))
            except CheckpointError:
                best_score = None
        proc = self.ctx.Process(target=run_evaluator, args=(self.config, self.shared, self.queue, self.n_actions,
                                                            best_score), name="a3c-evaluator", daemon=True)
        proc.start()
        self.procs[EVALUATOR] = proc

    def check_workers(self) -> None:
        """Notice dead workers; restart them until max_restarts is used up."""
        for rank, proc in list(self.procs.items()):
            if proc.is_alive():
                continue
            proc.join()
            # exit code 0: a worker that saw the run end (its view of the step count may be
            # ahead of ours with the Ray backend)
            finished = (proc.exitcode == 0 or self.shared.global_step >= self.config.total_steps
                        or self.shared.stop.is_set())
            if rank == EVALUATOR:  # its failures never stop training
                del self.procs[rank]
                if not finished and self.evaluator_restarts < self.config.max_restarts:
                    self.evaluator_restarts += 1
                    self.metrics.event(f"evaluator died (exit code {proc.exitcode}); restarting it")
                    self.start_evaluator()
                continue
            if finished:  # a worker's normal end, or one dying while the run stops anyway
                del self.procs[rank]
                continue
            cause = f"exit code {proc.exitcode}" if proc.exitcode >= 0 else f"signal {-proc.exitcode}"
            if self.restarts >= self.config.max_restarts:
                self.metrics.event(f"worker {rank} died ({cause}); {self.restarts} restarts used, stopping the run")
                self.request_stop("too many worker failures", exit_code=1)
                del self.procs[rank]
                continue
            self.restarts += 1
            self.metrics.event(f"worker {rank} died ({cause}); restarting it "
                               f"({self.restarts}/{self.config.max_restarts})")
            self.metrics.writer.add_scalar("train/worker_restarts", self.restarts, self.shared.global_step)
            self.start_worker(rank, restart=self.restarts)

    def process_ids(self) -> dict[str, int]:
        return {("evaluator" if key == EVALUATOR else f"worker {key}"): proc.pid for key, proc in self.procs.items()}

    def request_stop(self, reason: str, exit_code: int = 0) -> None:
        if self.stop_reason is None:
            self.stop_reason, self.exit_code = reason, exit_code
        self.shared.stop.set()

    def stop_workers(self) -> None:
        """Ask, wait a little, then terminate and finally kill: no child is left behind."""
        self.shared.stop.set()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in self.procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self.procs.values():
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.procs.clear()

    # --- checkpoints ---------------------------------------------------------------------
    def save(self) -> Path:
        shared = self.shared
        return self.write_checkpoint(self.run_dir / "checkpoints" / "latest.pt",
                                     {k: v.clone() for k, v in shared.model.state_dict().items()},
                                     shared.optimizer.state_dict(), shared.global_step, shared.obs_norm.clone())

    def write_checkpoint(self, path: Path, model: dict, optimizer: dict, global_step: int, obs_norm) -> Path:
        save_checkpoint(path, {
            "model": model, "optimizer": optimizer, "global_step": global_step, "obs_norm": obs_norm,
            "n_actions": self.n_actions, "config": self.config.to_dict(),
        })
        return path

    # --- the run ---------------------------------------------------------------------------
    def drain_queue(self, timeout: float) -> None:
        try:
            message = self.queue.get(timeout=timeout)
        except queue_errors.Empty:
            return
        while True:
            self.handle(message)
            try:
                message = self.queue.get_nowait()
            except queue_errors.Empty:
                return

    def handle(self, message: tuple) -> None:
        """One message of a worker or the evaluator (see a3c/worker.py, a3c/evaluator.py)."""
        kind = message[0]
        if kind == "episode":
            _, rank, env_index, step, raw_return, length = message
            self.metrics.episode(step, raw_return, length, rank, env_index)
        elif kind == "update":
            self.metrics.update(*message[2:])
        elif kind == "eval":
            self.metrics.evaluation(*message[1:])
        elif kind == "eval_clip":
            self.metrics.clip(*message[1:])
        elif kind == "error":
            who = message[1] if message[1] == EVALUATOR else f"worker {message[1]}"
            self.metrics.event(f"{who} failed:\n{message[2].rstrip()}")

    def run(self) -> int:
        config = self.config
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        self.metrics = RunMetrics(self.run_dir / "tensorboard", config.total_steps, self.shared.global_step,
                                  config.log_interval, episodes_csv=self.run_dir / "episodes.csv")
        self.metrics.log_config(config.to_dict())
        self.metrics.event(f"training {config.env_id} with {self.workers} workers x {config.envs_per_worker} "
                           f"envs -> {self.run_dir}")
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        started = time.monotonic()
        try:
            for rank in range(self.workers):
                self.start_worker(rank)
            if config.eval_interval > 0:
                self.start_evaluator()
            self.metrics.event("processes: " + ", ".join(
                f"{name} pid {pid}" for name, pid in self.process_ids().items()))
            last_checkpoint = time.monotonic()
            while any(rank != EVALUATOR for rank in self.procs) and self.stop_reason is None:
                self.drain_queue(timeout=0.2)
                self.check_workers()
                self.metrics.tick(min(self.shared.global_step, config.total_steps))
                if time.monotonic() - last_checkpoint >= config.checkpoint_interval:
                    self.save()
                    last_checkpoint = time.monotonic()
        finally:
            self.stop_workers()
            self.drain_queue(timeout=0.0)
            path = self.save()
            summary = self.metrics.summary(self.shared.global_step, time.monotonic() - started)
            self.metrics.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        reason = self.stop_reason or "reached total_steps"
        split = ", ".join(f"{phase} {ms:.1f}" for phase, ms in time_split(self.shared.timings).items())
        print(f"stopped at step {self.shared.global_step} ({reason}): {summary}; checkpoint: {path}", flush=True)
        print(f"ms per update and worker: {split}", flush=True)
        return self.exit_code

    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        self.request_stop(f"{name} received", exit_code=128 + signum)


def main(argv: list[str] | None = None) -> int:
    torch.set_num_threads(1)  # the main process only coordinates; the cores belong to workers
    try:
        config, checkpoint = parse_args(argv)
        if config.backend == "ray":
            from a3c.ray_backend import RayTrainer, import_ray

            import_ray()  # before anything starts: a missing install is a one-line error
            trainer = RayTrainer(config, checkpoint)
        else:
            trainer = Trainer(config, checkpoint)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return trainer.run()


if __name__ == "__main__":
    sys.exit(main())
