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
    Config,
    ConfigError,
    check_env_id,
    check_run_dir,
    check_saved_settings,
    field_docs,
    load_config,
    parse_overrides,
)
from a3c.footprint import check_memory
from a3c.model import network_settings
from a3c.policy import frame_settings


def parse_args(argv: list[str] | None) -> tuple[Config, dict | None]:
    """The run's settings and the checkpoint it resumes; a ConfigError for any mistake."""
    settings = "\n".join(f"  {name:<20} {doc}" for name, doc in field_docs().items())
    parser = ArgumentParser(prog="python -m a3c.train",
                                     description="Train an A3C-LSTM agent on an Atari game, "
                                                 "gradients computed by hand.",
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
        # the same view and network sizes, or the trained network is lost; the same optimizer,
        # whose statistics the checkpoint holds (a run that did not record one used Adam,
        # the default until 2026-11-30)
        try:
            saved_optimizer = check_saved_settings(checkpoint["config"], ["optimizer"]).get("optimizer", "adam")
        except ConfigError as error:
            raise ConfigError(f"resume: {config.resume} has a bad config: {error}") from None
        saved_settings = {**frame_settings(checkpoint["config"]), **network_settings(checkpoint["config"]),
                          "optimizer": saved_optimizer}
        for key, saved in saved_settings.items():
            if getattr(config, key) != saved:
                raise ConfigError(f"resume: {config.resume} was trained with {key}={saved}, this run asks for "
                                  f"{key}={getattr(config, key)} (give {key}={saved})")
    check_memory(config)
    check_run_dir(Path(config.run_dir))
    return config, checkpoint


def main(argv: list[str] | None = None) -> int:
    torch.set_num_threads(1)  # the main process only coordinates; the cores belong to workers
    config = None
    try:
        config, checkpoint = parse_args(argv)
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
    return trainer.run()


def remove_if_empty(run_dir: Path) -> None:
    """A start rejected after the run folder was made leaves nothing behind."""
    try:
        run_dir.rmdir()  # only an empty folder: anything written before stays
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
