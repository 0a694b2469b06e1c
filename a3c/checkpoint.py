"""Checkpoints: written atomically, loaded safely (``weights_only=True``).

A checkpoint is a dict of tensors and plain values:
  format      "riverraid-a3c/checkpoint" and version FORMAT_VERSION
  model       the actor-critic's state_dict
  optimizer   the shared optimizer's state (kind, update count, statistics)
  global_step agent steps so far;  obs_norm  each worker's [mean, std, count]
  n_actions, config (the run's settings as a dict)
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from a3c.config import ConfigError, check_saved_settings, shown
from a3c.model import network_settings, parameter_shapes

FORMAT = "riverraid-a3c/checkpoint"
# Goes up when a checkpoint's fields change meaning, so that an older file is refused in one
# line instead of being misread. A change of the network's input alone does not need it: each
# checkpoint records its view (frame, frame_size, frame_stack) and plays and resumes with it;
# a file older than one of those settings had its first value (config.UNRECORDED_MEANT).
FORMAT_VERSION = 1
PLAY_SETTINGS = ("env_id", "frame", "frame_size", "frame_stack", "conv_channels", "hidden_size", "core",
                 "conv_stack", "action_reward_input", "pixel_control", "life_loss_resets_state")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with a one-line reason."""


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``:
    a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": FORMAT_VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | Path) -> dict:
    """Load and check a checkpoint; any problem is a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load raises many kinds on a bad file
        text = str(error).strip()
        if "Weights only load failed" in text:
            reason = "it holds objects other than tensors and plain values, refused for safety"
        else:
            reason = text.splitlines()[0] if text else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {path} (truncated or not a checkpoint): {reason}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a riverraid-a3c checkpoint")
    if payload.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {shown(payload.get('version'))}, "
                              f"this riverraid-a3c reads version {FORMAT_VERSION} only: use the release that wrote it")
    missing = {"model", "optimizer", "global_step", "obs_norm", "n_actions", "config"} - payload.keys()
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(sorted(missing))}")
    check_fields(payload, path)
    model = payload["model"]
    if not all(bool(torch.isfinite(t).all()) for t in model.values()):
        raise CheckpointError(f"{path} holds weights that are NaN or inf: it cannot play or resume")
    return payload


def check_fields(payload: dict, path) -> None:
    """Every field's type and shape, so that a crafted or damaged file fails here, in one line."""
    def bad(field: str, why: str) -> CheckpointError:
        return CheckpointError(f"{path} has a bad {field}: {why}")

    model = payload["model"]
    if not isinstance(model, dict) or not model or not all(isinstance(t, torch.Tensor) for t in model.values()):
        raise bad("model", "not a mapping of weight tensors")
    step = payload["global_step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise bad("global_step", f"{shown(step)} is not a step count")
    actions = payload["n_actions"]
    if isinstance(actions, bool) or not isinstance(actions, int) or actions < 1:
        raise bad("n_actions", f"{shown(actions)} is not an action count")
    norm = payload["obs_norm"]
    if not isinstance(norm, torch.Tensor) or norm.dim() != 2 or norm.shape[0] < 1 or norm.shape[1] != 3 \
            or not norm.is_floating_point():
        raise bad("obs_norm", "not rows of [mean, std, count]")
    if not bool(torch.isfinite(norm).all()) or bool((norm[:, 1:] < 0).any()):
        raise bad("obs_norm", "its statistics are not finite or negative")
    config = payload["config"]
    if not isinstance(config, dict):
        raise bad("config", "not a mapping of settings")
    try:  # the settings that shape the network and the game it plays, typed in place for the loaders
        config.update(check_saved_settings(config, PLAY_SETTINGS))
    except ConfigError as error:
        raise bad("config", str(error)) from None
    expected = parameter_shapes(actions, **network_settings(config))
    settings = ", ".join(f"{k}={v}" for k, v in network_settings(config).items())
    if model.keys() != expected.keys():
        missing, unexpected = sorted(expected.keys() - model.keys()), sorted(model.keys() - expected.keys())
        raise bad("model", f"its weights are not those of the network its settings ({settings}) give "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, shape in expected.items():
        if tuple(model[name].shape) != shape or not model[name].is_floating_point():
            raise bad("model", f"{name} is {model[name].dtype} {tuple(model[name].shape)}, its settings "
                               f"({settings}, {actions} actions) give {shape}")
    if not isinstance(payload["optimizer"], dict):
        raise bad("optimizer", "not a mapping")


def restore_model(model, payload: dict, path: str | Path = "checkpoint", env_id: str | None = None) -> None:
    """Load the weights into ``model``, turning a mismatch into a CheckpointError
    (naming ``env_id`` when given)."""
    where = f" ({env_id})" if env_id else ""
    if payload["n_actions"] != model.n_actions:
        raise CheckpointError(f"{path} was trained with {payload['n_actions']} actions, "
                              f"this environment has {model.n_actions}{where}")
    try:
        model.load_state_dict(payload["model"])
    except ValueError as error:
        raise CheckpointError(f"{path} does not fit this network: {error}{where}") from None
