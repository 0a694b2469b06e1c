"""Export a trained checkpoint as the agent that ships with the package.

    python -m scripts.export_pretrained --checkpoint runs/NAME/checkpoints/latest.pt \
        --source "runs/NAME: python -m scripts.learning_curve ..." [--out a3c/pretrained/riverraid.pt]

Keeps what playing needs (the weights, the workers' input normalisation, the settings
without the training machine's folders, the step count) and drops the optimizer's
state, so the file stays a few MB; ``source`` records which run and command produced
it. ``python -m a3c.evaluate --checkpoint pretrained`` then plays it.
"""
from __future__ import annotations

import sys
from pathlib import Path

from a3c.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from a3c.cli import ArgumentParser
from a3c.policy import PRETRAINED


def main() -> int:
    parser = ArgumentParser(prog="python -m scripts.export_pretrained", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="the trained run's checkpoint")
    parser.add_argument("--source", required=True, help="the run and command that produced it")
    parser.add_argument("--out", type=Path, default=PRETRAINED)
    args = parser.parse_args()
    try:
        payload = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    kept = {key: payload[key] for key in ("model", "global_step", "obs_norm", "n_actions")}
    # the folders of the machine that trained it mean nothing where the agent ships: playing
    # reads the view and the network's sizes; `source` says where it came from
    kept["config"] = {**payload["config"], "run_dir": None, "resume": None}
    save_checkpoint(args.out, {**kept, "optimizer": {}, "source": args.source})
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes) from {args.checkpoint} "
          f"at step {int(payload['global_step']):,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
