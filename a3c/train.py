"""``python -m a3c.train [--config FILE] [key=value ...]``: train A3C on an Atari game.

Reads and checks the settings (a mistake is one ``error:`` line and exit code 2,
before any process starts), then runs the training loop of :mod:`a3c.trainer`.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from a3c.checkpoint import CheckpointError, load_checkpoint
from a3c.cli import ArgumentParser
from a3c.config import (
    FIELD_TYPES,
    Config,
    ConfigError,
    check_env_id,
    check_run_dir,
    check_saved_settings,
    field_docs,
    load_config,
    parse_overrides,
    read_settings_file,
    recorded_settings,
    resumed_settings,
    shown,
)
from a3c.footprint import check_memory
from a3c.model import network_settings
from a3c.policy import frame_settings


def parse_args(argv: list[str] | None) -> tuple[Config, dict | None, str | None]:
    """The run's settings, the checkpoint it resumes and a line saying which settings a
    resumed run changed; a ConfigError for any mistake."""
    settings = "\n".join(f"  {name:<20} {doc}" for name, doc in field_docs().items())
    parser = ArgumentParser(prog="python -m a3c.train",
                                     description="Train an A3C-LSTM agent on an Atari game, "
                                                 "gradients computed by hand.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=f"settings (key=value):\n{settings}")
    parser.add_argument("--config", help="YAML settings file (default: configs/riverraid.yaml); with resume=, "
                                         "the settings it names replace the checkpoint's")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override any setting")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.overrides)
    config = load_config(args.config, overrides)
    checkpoint, note = None, None
    if config.resume:
        try:
            checkpoint = load_checkpoint(config.resume)
        except CheckpointError as error:
            raise ConfigError(f"resume: {error}") from None
        if not checkpoint["optimizer"]:  # scripts.export_pretrained keeps what playing needs only
            raise ConfigError(f"resume: {config.resume} holds no optimizer state (an exported agent): it plays with "
                              f"python -m a3c.evaluate; resume a run's checkpoints/latest.pt")
        # the run goes on with the settings it was trained with, but for those given anew
        recorded = recorded_settings(checkpoint["config"])
        replaced = {*overrides, *(read_settings_file(args.config) if args.config else {})}
        try:
            saved = resumed_settings(recorded, replaced)
            # a checkpoint older than the initialisation settings drew its weights with their defaults
            drawn = {"weight_init": "a3c", "forget_bias": 0.0, **recorded}
            trained = {**frame_settings(recorded), **network_settings(recorded),
                       **check_saved_settings(recorded, ["optimizer"]),
                       **check_saved_settings(drawn, ["weight_init", "forget_bias"])}
        except ConfigError as error:
            raise ConfigError(f"resume: {config.resume} has a bad config: {error}") from None
        config = load_config(args.config, overrides, saved=saved)
        # another view, network or optimizer would lose the trained network (or the
        # optimizer's statistics); another initialisation would be recorded for weights it never drew
        for key, value in trained.items():
            if getattr(config, key) != value:
                raise ConfigError(f"resume: {config.resume} was trained with {key}={value}, this run asks for "
                                  f"{key}={getattr(config, key)} (give {key}={value})")
        if checkpoint["global_step"] >= config.total_steps:
            raise ConfigError(f"resume: {config.resume} is at step {checkpoint['global_step']:,} and total_steps is "
                              f"{config.total_steps:,}: give a larger total_steps to go on")
        note = resume_note(config, checkpoint["global_step"], recorded)
    check_env_id(config.env_id)
    check_memory(config)
    check_run_dir(Path(config.run_dir))
    return config, checkpoint, note


def resume_note(config: Config, step: int, recorded: dict) -> str:
    """What a resumed run continues with: its checkpoint's settings (``recorded``, as
    recorded_settings gives them), and those this start changed or that the checkpoint
    (older than them) did not record."""
    def shown_value(value) -> str:  # as on the command line
        if isinstance(value, bool) or value is None:
            return "null" if value is None else str(value).lower()
        return shown(value) if not isinstance(value, (int, float, str)) else shown(value).strip("'\"")

    changed, unrecorded = [], []
    for key in FIELD_TYPES:
        now = getattr(config, key)
        if key in ("run_dir", "resume"):  # always this start's
            continue
        if key not in recorded:
            unrecorded.append(f"{key}={shown_value(now)}")
        # the settings a resume does not take (workers, backend) are not checked on load, and
        # a tensor there (a crafted file) compares elementwise: it differs from any setting
        elif isinstance(recorded[key], torch.Tensor) or recorded[key] != now:
            changed.append(f"{key}={shown_value(now)} (was {shown_value(recorded[key])})")
    note = f"resuming {config.resume} at step {step:,} with the settings it was trained with"
    if changed:
        note += f"; changed: {', '.join(changed)}"
    if unrecorded:
        note += f"; not in the checkpoint, so as configured: {', '.join(unrecorded)}"
    return note


def main(argv: list[str] | None = None) -> int:
    torch.set_num_threads(1)  # the main process only coordinates; the cores belong to workers
    config = None
    try:
        config, checkpoint, note = parse_args(argv)
        cores = os.cpu_count() or 1
        if config.backend == "local" and config.workers > cores:
            print(f"warning: {config.workers} workers on {cores} cores share them: each runs slower",
                  file=sys.stderr)
        if config.backend == "ray":
            from a3c.backends.ray import import_ray

            import_ray()  # before anything starts: a missing install is a one-line error
        from a3c.trainer import Trainer

        trainer = Trainer(config, checkpoint)
    except ConfigError as error:
        if config is not None:
            remove_if_empty(Path(config.run_dir))
        print(f"error: {error}", file=sys.stderr)
        return 2
    if note:
        print(note, flush=True)
    return trainer.run()


def remove_if_empty(run_dir: Path) -> None:
    """A start rejected after the run folder was made leaves nothing behind."""
    try:
        run_dir.rmdir()  # only an empty folder: anything written before stays
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
