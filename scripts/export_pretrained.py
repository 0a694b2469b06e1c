"""Export a trained checkpoint as the agent that ships with the package.

    python -m scripts.export_pretrained --checkpoint runs/NAME/checkpoints/latest.pt \
        --source "runs/NAME: python -m scripts.learning_curve ..." [--out a3c/pretrained/riverraid.pt] \
        [--dtype float16]

Keeps what playing needs (the acting network's weights, the workers' input
normalisation, the settings without the training machine's folders, the step count)
and drops the rest, so the file stays a few MB: the optimizer's state, and the
pixel-control head, which serves an auxiliary task and which no action reads (the
settings then say ``pixel_control: false``, the network the file holds).
``--dtype float16`` halves the weights' bytes; playing loads them back into float32.
``source`` records which run and command produced it.
``python -m a3c.evaluate --checkpoint pretrained`` then plays it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from a3c.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from a3c.cli import ArgumentParser
from a3c.model import network_settings, parameter_shapes
from a3c.policy import PRETRAINED

DTYPES = {"float32": torch.float32, "float16": torch.float16}


def main() -> int:
    parser = ArgumentParser(prog="python -m scripts.export_pretrained", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="the trained run's checkpoint")
    parser.add_argument("--source", required=True, help="the run and command that produced it")
    parser.add_argument("--out", type=Path, default=PRETRAINED)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                        help="the weights' storage type (float16: half the bytes)")
    args = parser.parse_args()
    try:
        payload = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    kept = {key: payload[key] for key in ("global_step", "obs_norm", "n_actions")}
    # the folders of the machine that trained it mean nothing where the agent ships: playing
    # reads the view and the network's sizes; `source` says where it came from
    kept["config"] = {**payload["config"], "run_dir": None, "resume": None, "pixel_control": False}
    acting = parameter_shapes(payload["n_actions"], **network_settings(kept["config"]))
    kept["model"] = {name: weight.to(DTYPES[args.dtype]) for name, weight in payload["model"].items()
                     if name in acting}
    if not all(bool(torch.isfinite(weight).all()) for weight in kept["model"].values()):
        print(f"error: {args.checkpoint} has weights beyond {args.dtype}'s range: export it as float32",
              file=sys.stderr)
        return 2
    save_checkpoint(args.out, {**kept, "optimizer": {}, "source": args.source})
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes) from {args.checkpoint} "
          f"at step {int(payload['global_step']):,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
