"""Run settings: a typed dataclass, loaded from YAML, overridden by ``key=value``.

Every mistake is reported as one line before any process starts
(:class:`ConfigError`; ``python -m a3c.train`` prints it and exits with code 2). A
loaded config is frozen, with its derived values (``workers: auto``, the default
``run_dir``) resolved once, here.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "riverraid.yaml"


class ConfigError(ValueError):
    """A bad setting, with a one-line message meant for the user."""


@dataclass(frozen=True)
class Config:
    env_id: str = "Riverraid-v0"
    """Gymnasium id of an ALE game (any id registered by ale-py)."""
    workers: int = 0
    """Worker processes, each playing its own game; 0 or 'auto' = one per CPU core (resolved
    when the config is loaded)."""
    total_steps: int = 80_000_000
    """Agent steps (summed over workers) after which training stops."""
    envs_per_worker: int = 8
    """Games each worker plays at once (B): the network runs on B frames per step and an
    update covers num_steps x B agent steps. 8: 4 (twice the updates for the same
    experience, the default from 2026-12-01 to 2026-12-04) was ahead at 2M, level at 5M and
    ~1,100 behind at 10M over two seeds each, for ~1.1-1.2x the time per step
    (scripts/RESULTS.md); checkpoints that record no value had 1."""
    frame: str = "jet_centred"
    """The network's view of the screen: 'jet_centred' (the whole river and the fuel gauge,
    the river shifted sideways to put the jet in the middle column: the default since
    2026-11-28, scripts/RESULTS.md), 'jet_centred_fuel_bar' (the same with the gauge drawn
    as a bar as long as the tank is full), 'river_and_gauge' (the same unshifted, rows 2..190 and
    columns 8..160 of ALE's luminance greyscale) or 'original' (the original design's crop
    of rows 34..194, mean of the colour channels; checkpoints that record no view had it)."""
    frame_size: int = 84
    """Side of the square input frame in pixels (the convolutions' cost grows with its square):
    84 since 2026-11-30, where the jet, the helicopters and the narrow channels are a few
    pixels wider than at 42 (ahead from 2.5M agent steps, ~1,900 at 5M, for 1.8x the cost
    per step: scripts/RESULTS.md); checkpoints that record no size had 42."""
    frame_stack: int = 1
    """The last K views, oldest first, as the network's K input channels (gymnasium's
    FrameStackObservation; a new game starts with K copies of its first view): motion is
    then in one input, not only in the LSTM's memory. Only the first convolution grows.
    2 at 84x84: ahead at 2M agent steps on two seeds of three, level at 5M on two, at 0.97x
    the steps/s of 1 (scripts/RESULTS.md); at 42x42 behind at 2M."""
    conv_channels: int = 32
    """Channels of each of the four convolutions (the network's width: their cost grows
    with its square); with conv_stack=nature those of the first, the other two having twice
    as many. 64 at 84x84: behind at 2M agent steps on two seeds, at 0.52x the steps/s of 32
    (scripts/RESULTS.md)."""
    conv_stack: str = "a3c"
    """The convolutions, each followed by an ELU: 'a3c' (the A3C-LSTM code's four 3x3 of
    stride 2 and padding 1) or 'nature' (the DQN Nature paper's 8x8 stride 4, 4x4 stride 2 and
    3x3 stride 1, unpadded: the network of the DQN, Quantile and PPO agents; frame_size at
    least 36). 'nature': ahead to 0.75M agent steps, behind from 1.25M and on both seeds at
    2M (3,451 against 3,873), at ~1.06x the steps/s (scripts/RESULTS.md). Checkpoints that
    record none had 'a3c'."""
    hidden_size: int = 512
    """Size of the LSTM's state, or of the feed-forward core's layer (the heads read it).
    512 against 256 with pixel control: each of three seeds ahead of its own from 0.75M
    agent steps (+442 on their mean at 2M), at 0.84x the steps/s (scripts/RESULTS.md);
    behind at 2M at 42x42. Checkpoints that record none had 256."""
    core: str = "lstm"
    """What sits between the convolutions and the heads: 'lstm' (the A3C-LSTM agent's
    memory, trained through each rollout) or 'feedforward' (Linear + ELU of hidden_size, no
    memory: the A3C paper's feed-forward agent, which scored 10,001 on River Raid against
    the LSTM agent's 6,592; it sees motion only through frame_stack, 4 in the paper).
    'feedforward' with frame_stack=4: a win at 2M agent steps on one seed of two, 3,707 on
    their mean against the LSTM's 3,873, at 1.07x its steps/s (scripts/RESULTS.md).
    'layernorm_lstm': the LSTM with layer normalisation (Ba et al. 2016) of its two gate
    inputs and of the cell it reads out, so that their scale stays fixed as the weights
    grow: behind from 0.5M agent steps on two seeds, ~870 behind at 1.2M, its policy nearer
    uniform (scripts/RESULTS.md). Checkpoints that record no core had 'lstm'."""
    action_reward_input: bool = False
    """The core also reads the step before's action (one-hot) and reward (as learned from,
    clipped), as the IMPALA and UNREAL agents' LSTMs do: zeros at an episode's first step.
    Checkpoints that record none had no such input. Not with sil_batch (its memory keeps no
    step before). Level with the default at every mark to 2M agent steps on two seeds
    (3,808 against 3,873 at 2M on their means: scripts/RESULTS.md)."""
    pixel_control: bool = True
    """UNREAL's pixel-control auxiliary task (Jaderberg et al. 2017): the network gets a
    head that predicts, for each 4x4-pixel cell over the centre of the view (20 x 20 at
    84x84) and each action, how much the cell's pixels will change over the next steps,
    learnt by n-step Q-learning on each rollout (a3c.pixel_control); its gradient trains the
    shared convolutions and core, the policy never reads the head. Needs frame_size >= 20.
    Its loss joins each rollout's own update; replays (epochs, replay_ratio) push a zero
    gradient for the head, on which RMSProp's average for it decays. Checkpoints that
    record none had no such head. The default from 2026-12-07: against the same run
    without it, three seeds of three ahead at every mark to 2M agent steps (4,893 against
    3,814 at 2M on their means) and two of two beyond (7,810 against 7,062 at 5M on seed
    1); a run makes 0.91x the steps/s without it (scripts/RESULTS.md)."""
    pixel_control_coef: float = 0.05
    """Weight of the pixel-control loss 0.5 sum (R - Q)^2 over the rollout's steps and the
    grid's cells, the pseudo-rewards in the view's [0, 1] intensities (the paper's range
    0.01-0.1; 0.05 in common reimplementations). Read with pixel_control only."""
    pixel_control_gamma: float = 0.9
    """Discount of the pixel-control returns (the paper's 0.9: changes within ~10 steps)."""
    num_steps: int = 20
    """Rollout length: steps per worker between two updates (the BPTT window). Against 20:
    10 won on one seed of two at 2M agent steps, 40 was behind on both at 1M
    (scripts/RESULTS.md)."""
    early_steps: int = 0
    """Agent steps at the start of a run played with another update: each worker plays
    early_envs_per_worker games and early_num_steps-step rollouts until the run reaches this
    step, then drops those games (their unfinished episodes are not logged) and starts
    envs_per_worker new ones with num_steps-step rollouts. Meant for a smaller update first
    (more updates for the same experience), the larger one later (scripts/RESULTS.md);
    0 = the same update throughout."""
    early_envs_per_worker: int = 4
    """Games per worker while early_steps lasts."""
    early_num_steps: int = 10
    """Rollout length while early_steps lasts."""
    lr: float = 7e-4
    """Learning rate of the shared optimizer (7e-4 with RMSProp, as the A2C baselines; with
    Adam 3e-4 was the default until 2026-11-30). On the 84x84 default, 5e-4 was below every
    default run at 2M steps on two seeds; 1e-3 led on the mean to 1M, then won at 2M on one
    seed of two (scripts/RESULTS.md)."""
    life_loss_ends_returns: bool = True
    """A lost life ends the returns and advantages like an episode's end (no bootstrapping
    across it); the game goes on, and the LSTM state too unless life_loss_resets_state
    (ALE's info["lives"]). On since 2026-11-30: with the jet-centred view it adds ~400
    points at 2M steps (scripts/RESULTS.md)."""
    life_loss_resets_state: bool = False
    """A lost life also starts the LSTM from a zero state, as a new episode does (the game
    goes on from its last bridge; the gradient does not flow back across the loss). Off:
    the memory of the life that ended carries into the next. Evaluation plays a checkpoint
    as it was trained. On: behind at 2M agent steps on two seeds, 3,572 against 3,873
    (scripts/RESULTS.md)."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this before clipping (the logs keep the raw score)."""
    reward_clip: float = 1.0
    """Rewards are clipped to [-reward_clip, reward_clip] for learning: 1 with scale 1 keeps
    only their sign; 0.01 and 10 keep River Raid's scores apart (a bridge 5, a tanker 0.3)."""
    gamma: float = 0.99
    """Discount factor. 0.98: a win at 2M agent steps on one seed of three, 3,838 on their
    mean against 3,897 (scripts/RESULTS.md)."""
    gae_lambda: float = 1.0
    """GAE(lambda) parameter; 1.0 gives plain n-step advantages."""
    normalize_advantages: bool = False
    """Scale each update's advantages to mean 0 and standard deviation 1 over its T x B
    steps before the policy gradient (the value targets are unchanged)."""
    epochs: int = 1
    """Updates pushed per rollout: 1 is A3C (one update, from the rollout's own forward);
    K > 1 adds K - 1 replays of the rollout, each with the global weights of that moment and
    PPO's clipped ratio to the policy that played it (clip_range)."""
    clip_range: float = 0.1
    """PPO's epsilon for the replays (epochs > 1): a step's ratio pi / pi_old outside
    [1 - eps, 1 + eps] in the direction its advantage pushes stops contributing."""
    replay_ratio: int = 0
    """Off-policy replays per rollout: after each rollout's update the worker keeps the
    rollout in a memory of its last replay_capacity and pushes this many more updates, each
    on a rollout drawn uniformly from it, played again through the global weights of the
    moment and corrected for the policy that played it with V-trace (Espeholt et al. 2018:
    truncated importance weights vtrace_rho_clip and vtrace_c_clip). 0: off. Each replay
    costs about one update's forward and backward; not with epochs > 1. 1 led the default
    to 1M steps (+496 at 0.5M on two seeds' means) and was behind at 2M (3,674 against 3,873)
    at about half the steps/s; at half the learning rate ahead to 0.75M and behind at 1.25M
    (scripts/RESULTS.md)."""
    replay_capacity: int = 64
    """Rollouts each worker's replay memory keeps (the oldest go first); at 84x84 with 8
    games x 20 steps each costs ~2.4 MB (the views in half precision)."""
    vtrace_rho_clip: float = 1.0
    """V-trace's rho-bar: the importance weight pi / mu of a replayed step is cut at this in
    its temporal difference and its policy gradient."""
    vtrace_c_clip: float = 1.0
    """V-trace's c-bar: the importance weight is cut at this (times gae_lambda) where one
    step's correction carries to the one before."""
    sil_batch: int = 0
    """Self-imitation (Oh et al. 2018): steps replayed per update from the worker's memory
    of steps whose return, to the end of their life, beat the value the network gave them;
    each adds -log pi(a|s) max(R - V, 0) to the loss (and sil_value_coef of the value's
    shortfall), so the policy leans toward what once did better than expected. 0: off.
    160 (one replayed step per new one, ~1.6x the time per step) led early and was
    behind the default at 2M over two seeds: ~400 unclipped, its gradient norms twice
    the default's by then, ~270 with sil_clip=1 (scripts/RESULTS.md)."""
    sil_capacity: int = 25_000
    """Steps each worker's self-imitation memory keeps (the oldest go first), and at most as
    many waiting for their life's end (a longer life keeps its last); each costs ~16 KB at
    84x84 (the view in half precision and the LSTM state it started from)."""
    sil_value_coef: float = 0.01
    """Weight of the self-imitation value term 0.5 * sum max(R - V, 0)^2 (the paper's)."""
    sil_clip: float | None = None
    """Self-imitation's gap max(R - V, 0) clipped at this in both terms (the official
    code's 1: a step far above its value then pulls no harder than one just above, and the
    value term is a Huber loss); empty = unclipped, as in the paper's equations."""
    entropy_coef: float = 0.01
    """Weight of the entropy bonus."""
    value_loss_coef: float = 0.5
    """Weight of the value loss 0.5 * sum (R - V)^2."""
    max_grad_norm: float = 100.0
    """Gradients are rescaled so their global L2 norm is at most this. With the default's
    other settings (a loss summed over 8 x 20 steps) the norm grows from ~70 early to ~200
    by 5M steps, so from ~1M steps the clip binds on most updates and, with RMSProp's eps
    above the LSTM's gradient root, sets the LSTM's step. 100 since 2026-12-05: against
    50, +298 at 2M over three seeds and +434 / +174 / +866 at 5M on three; 200, which rarely
    binds, was ~400 lower at 2M on two (scripts/RESULTS.md)."""
    optimizer: str = "rmsprop"
    """'rmsprop' (shared statistics, eps 0.1, as in the A3C paper) or 'adam'. RMSProp at
    7e-4 since 2026-11-30: ahead of Adam at 3e-4 at every mark from 1M to 2M steps on three
    seeds (scripts/RESULTS.md)."""
    optimizer_eps: float | None = None
    """The optimizer's epsilon, added to the root of its squared-gradient average; empty =
    the optimizer's own (RMSProp 0.1, the A3C paper's for its summed loss; Adam 1e-8). With
    0.1 the LSTM's weights, whose root averages run at ~0.002-0.04, take a smaller share of
    RMSProp's step than the other layers; 0.01 and 0.001 were behind at 1-2M steps on two seeds
    each (scripts/RESULTS.md)."""
    lr_anneal: bool = False
    """Anneal the learning rate linearly to zero over total_steps."""
    seed: int = 1
    """Seed of the initial weights and of the games: worker k's game b (of B per worker) is
    seeded with seed + k B + b, plus 1000 for each new set of games it starts (a restart; with
    early_steps also the switch, 2000 per restart then), so a worker never replays its games."""
    run_dir: str | None = None
    """Where checkpoints and TensorBoard files go; empty = the resumed run's folder, or
    runs/<timestamp>."""
    checkpoint_interval: float = 300.0
    """Seconds between checkpoints (one is always written at the end)."""
    resume: str | None = None
    """Path of a checkpoint to continue from (steps, weights, optimizer, normalisation) with
    the settings it was trained with: key=value (and a --config file, if given) change them,
    except the view, the network's sizes and initialisation, and the optimizer."""
    max_restarts: int = 10
    """Worker crashes tolerated (each restarted) before the run stops."""
    log_interval: float = 5.0
    """Seconds between progress lines when stdout is not a terminal."""
    forget_bias: float = 0.0
    """Initial bias of the LSTM forget gate. 1.0 (the gate ~73% open at the start): ahead
    at 0.75-1M steps, level at 2M on two seeds (2026-12-04, scripts/RESULTS.md)."""
    weight_init: str = "a3c"
    """How a new run's weights are drawn: 'a3c' (the original A3C-LSTM code's scheme) or
    'orthogonal' (the PPO and A2C Atari baselines'), forget_bias applying to either; see
    ActorCritic.initialize. A resumed run keeps its checkpoint's weights and this setting.
    'orthogonal' was ahead at 2M steps on two seeds of three, behind at 5M on both
    (2026-12-05, scripts/RESULTS.md)."""
    backend: str = "local"
    """'local': worker processes on this machine, sharing memory; 'ray': a parameter
    server and worker actors on a Ray cluster (pip install -e ".[ray]")."""
    ray_address: str | None = None
    """backend=ray: 'auto' or HOST:PORT of a running cluster; empty = start a Ray of the
    run's own here with one CPU per worker (even where `ray start` or RAY_ADDRESS names
    another: 'auto' joins that one)."""
    eval_interval: float = 60.0
    """Seconds between evaluations of the shared network during training; 0 = no evaluator."""
    eval_policy: str = "sample"
    """How the evaluator acts: 'sample' (draws actions from the policy, as training does),
    'greedy' (the most probable action) or 'both' (logged under distinct tags)."""
    eval_nice: int = 15
    """Scheduling niceness of the evaluator process (0-19): at 15 it gets about 2% of a busy
    machine's CPU and all of an idle one's; 0 = the workers' own priority."""
    eval_episodes: int = 3
    """Episodes per evaluation and policy; the first policy's mean decides checkpoints/best.pt."""
    eval_max_steps: int = 10_000
    """Cut evaluation episodes after this many agent steps (a greedy policy can stall for long)."""
    eval_clip_every: int = 5
    """Log a clip of the game to TensorBoard every this many evaluations; 0 = never."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def update_at(self, global_step: int) -> Config:
        """The settings a worker plays with at ``global_step``: the early update's games and
        rollout length before ``early_steps``, the run's own after."""
        if global_step < self.early_steps and (self.early_envs_per_worker, self.early_num_steps) != (
                self.envs_per_worker, self.num_steps):
            return dataclasses.replace(self, envs_per_worker=self.early_envs_per_worker,
                                       num_steps=self.early_num_steps)
        return self


FIELD_TYPES = {f.name: f.type for f in fields(Config)}


def field_docs() -> dict[str, str]:
    """Each setting's docstring, read from this file's source (for --help)."""
    import ast

    tree = ast.parse(Path(__file__).read_text())
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Config").body
    return {node.target.id: body[k + 1].value.value
            for k, node in enumerate(body[:-1])
            if isinstance(node, ast.AnnAssign) and isinstance(body[k + 1], ast.Expr)}

# the games take 32-bit seeds; workers add up to 2000 per restart and their rank x games
MAX_SEED = 2**31 - 1_000_000
# beyond these a run cannot start on any one machine (each worker is a process, each game an emulator)
LIMITS = {"workers": 1024, "envs_per_worker": 256, "num_steps": 10_000, "early_envs_per_worker": 256,
          "early_num_steps": 10_000, "eval_nice": 19, "conv_channels": 512,
          "hidden_size": 4096, "epochs": 64, "frame_stack": 16, "sil_batch": 65_536,
          "sil_capacity": 1_000_000, "replay_ratio": 64, "replay_capacity": 100_000}

SMALLEST_NATURE_FRAME = 36
SMALLEST_PIXEL_CONTROL_FRAME = 20

CHOICES = {"optimizer": ("adam", "rmsprop"), "backend": ("local", "ray"),
           "frame": ("original", "river_and_gauge", "jet_centred", "jet_centred_fuel_bar"), "eval_policy": ("sample", "greedy", "both"),
           "weight_init": ("a3c", "orthogonal"), "core": ("lstm", "feedforward", "layernorm_lstm"),
           "conv_stack": ("a3c", "nature")}


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` on one line and at most ``limit`` characters, for an error message
    (a tensor or a long list must not spread over the terminal)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _coerce(key: str, value: Any) -> Any:
    """Check and convert one value to its field's type (YAML already parsed it)."""
    kind = FIELD_TYPES[key]
    if key == "workers" and value == "auto":
        return 0
    if "None" in kind and value in (None, "", "null", "none"):
        return None
    if kind.startswith("int"):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {shown(value)}")
    elif kind.startswith("float"):
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {shown(value)}")
        try:
            value = float(value)
        except OverflowError:  # an integer beyond any float
            raise ConfigError(f"{key} must be a finite number, got {shown(value)}") from None
        if not math.isfinite(value):  # nan trains to all-NaN weights; inf breaks every schedule
            raise ConfigError(f"{key} must be a finite number, got {shown(value)}")
    elif kind.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {shown(value)}")
    elif kind.startswith("str"):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {shown(value)}")
        value = str(value)
    return value


def _unknown_key(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, FIELD_TYPES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown setting {key!r}{hint}")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["lr=3e-4", "workers=4"]`` -> ``{"lr": 0.0003, "workers": 4}`` (YAML scalars)."""
    overrides = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {pair!r}")
        try:
            overrides[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            overrides[key.strip()] = text
    return overrides


def read_settings_file(path: str | Path) -> dict:
    """A YAML file's settings as given (checked later, with the rest)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read config {path}: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping of settings, got {type(raw).__name__}")
    return raw


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                saved: dict[str, Any] | None = None) -> Config:
    """Read YAML (default: configs/riverraid.yaml, or where a package was installed without
    it, Config's defaults, the same values), apply overrides, validate.

    A resumed run passes its checkpoint's settings as ``saved`` (see :func:`resumed_settings`):
    they replace the default file's values, and a file given here and the overrides replace
    them, so a run continues as it was trained unless told otherwise.
    """
    explicit = path is not None
    if explicit or DEFAULT_CONFIG.is_file():
        raw = read_settings_file(path if explicit else DEFAULT_CONFIG)
    else:  # installed without the repository's configs/ (pip install .): the same values
        raw = {}  # Config's own defaults (a test holds the file and them equal)
    if saved:
        raw = {**saved, **raw} if explicit else {**raw, **saved}
    raw.update(overrides or {})
    values = {}
    for key, value in raw.items():
        if key not in FIELD_TYPES:
            raise _unknown_key(str(key))
        values[key] = _coerce(key, value)
    config = Config(**values)
    validate(config)
    return resolve(config)


# where and on what a run executes, not what it learns: a resumed run takes these from its
# new start (the default "runs/<timestamp>" becomes the checkpoint's own folder, see resolve)
NOT_RESUMED = ("run_dir", "resume", "workers", "backend", "ray_address")

# what a run did before checkpoints recorded these settings, where today's default differs:
# a resumed older run goes on doing it; and the parts of the network a setting added, which
# an older run had not, whatever the default file says (a head it lacks cannot be resumed)
UNRECORDED_MEANT = {"frame": "original", "frame_size": 42, "optimizer": "adam", "life_loss_ends_returns": False,
                    "envs_per_worker": 1, "eval_policy": "greedy", "action_reward_input": False,
                    "pixel_control": False, "hidden_size": 256}


def recorded_settings(saved: dict) -> dict:
    """What a checkpoint's run was trained with: its config, UNRECORDED_MEANT for the
    settings it lacks (as given: unchecked)."""
    return {**UNRECORDED_MEANT, **saved}


def resumed_settings(recorded: dict, replaced=()) -> dict[str, Any]:
    """The settings a resumed run continues with: the ``recorded_settings`` of its
    checkpoint, checked as a new run's would be (a ConfigError for the first bad one), less
    NOT_RESUMED, the keys this version does not know (settings since removed) and those in
    ``replaced`` (given anew: a bad recorded value can be mended)."""
    return check_saved_settings(recorded, [key for key in recorded
                                           if key in FIELD_TYPES and key not in NOT_RESUMED and key not in replaced])


def check_saved_settings(saved: dict, keys) -> dict[str, Any]:
    """Check the settings ``keys`` of a saved run (a checkpoint's config) as a new run's
    would be checked, and return them converted to their types: a ConfigError for the
    first bad one. Absent keys keep their defaults (older checkpoints lack the newer
    settings) and are left out."""
    values = {key: _coerce(key, saved[key]) for key in keys if key in saved}
    validate(dataclasses.replace(Config(), **values))
    return values


def resolve(config: Config) -> Config:
    """The derived values, fixed once: worker count and run folder."""
    run_dir = config.run_dir
    if run_dir is None:  # a resumed run continues in its own folder, so TensorBoard curves join up
        run_dir = str(checkpoint_run_dir(Path(config.resume)) if config.resume else default_run_dir())
    return dataclasses.replace(config, workers=resolve_workers(config), run_dir=run_dir)


def validate(config: Config) -> None:
    """Range checks; raises ConfigError with the first problem found."""
    positive = ["total_steps", "num_steps", "lr", "checkpoint_interval", "log_interval", "max_grad_norm",
                "reward_scale", "reward_clip"]
    for key in positive:
        if getattr(config, key) <= 0:
            raise ConfigError(f"{key} must be positive, got {getattr(config, key)}")
    for key in ["gamma", "gae_lambda", "pixel_control_gamma"]:
        if not 0.0 <= getattr(config, key) <= 1.0:
            raise ConfigError(f"{key} must be in [0, 1], got {getattr(config, key)}")
    if not 16 <= config.frame_size <= 210:
        raise ConfigError(f"frame_size must be in [16, 210], got {config.frame_size}")
    # the LSTM's float32 bias holds it; beyond +-100 the forget gate is shut or open in float32 anyway
    if not -100.0 <= config.forget_bias <= 100.0:
        raise ConfigError(f"forget_bias must be in [-100, 100], got {config.forget_bias}")
    for key in ["vtrace_rho_clip", "vtrace_c_clip"]:
        if getattr(config, key) <= 0:
            raise ConfigError(f"{key} must be positive, got {getattr(config, key)}")
    if config.replay_ratio and config.epochs > 1:  # two kinds of replay, each tested alone
        raise ConfigError(f"replay_ratio and epochs > 1 do not go together: replay_ratio={config.replay_ratio} "
                          f"replays older rollouts, epochs={config.epochs} the latest; choose one")
    if config.action_reward_input and config.sil_batch:
        raise ConfigError("action_reward_input and sil_batch do not go together: the self-imitation memory "
                          "keeps no step before each of its steps")
    # a3c.pixel_control.grid_cells: 4 cells at least, from 20 pixels (a test keeps the two equal)
    if config.pixel_control and config.frame_size < SMALLEST_PIXEL_CONTROL_FRAME:
        raise ConfigError(f"frame_size must be at least {SMALLEST_PIXEL_CONTROL_FRAME} with pixel_control, "
                          f"got {config.frame_size}")
    if config.sil_clip is not None and config.sil_clip <= 0:
        raise ConfigError(f"sil_clip must be positive, got {config.sil_clip}")
    if config.optimizer_eps is not None and config.optimizer_eps <= 0:
        raise ConfigError(f"optimizer_eps must be positive, got {config.optimizer_eps}")
    if not 0.0 < config.clip_range < 1.0:
        raise ConfigError(f"clip_range must be in (0, 1), got {config.clip_range}")
    for key in ["eval_episodes", "eval_max_steps", "envs_per_worker", "early_envs_per_worker", "early_num_steps",
                "conv_channels", "hidden_size", "epochs", "frame_stack", "sil_capacity", "replay_capacity"]:
        if getattr(config, key) < 1:
            raise ConfigError(f"{key} must be at least 1, got {getattr(config, key)}")
    if config.core == "layernorm_lstm" and config.hidden_size < 2:  # one unit normalises to 0: no memory read
        raise ConfigError(f"hidden_size must be at least 2 with core=layernorm_lstm, got {config.hidden_size}")
    for key in ["entropy_coef", "value_loss_coef", "pixel_control_coef", "sil_batch", "replay_ratio", "sil_value_coef", "max_restarts", "workers", "eval_interval", "eval_clip_every",
                "eval_nice", "early_steps"]:
        if getattr(config, key) < 0:
            raise ConfigError(f"{key} must not be negative, got {getattr(config, key)}")
    for key, choices in CHOICES.items():
        if getattr(config, key) not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {shown(getattr(config, key))}")
    # a3c.model.smallest_frame_size: the three unpadded convolutions need room (config does
    # not import the model; a test keeps the two equal)
    if config.conv_stack == "nature" and config.frame_size < SMALLEST_NATURE_FRAME:
        raise ConfigError(f"frame_size must be at least {SMALLEST_NATURE_FRAME} with conv_stack=nature, "
                          f"got {config.frame_size}")
    if config.sil_batch > config.sil_capacity:  # the memory could never fill a batch: no self-imitation at all
        raise ConfigError(f"sil_batch must be at most sil_capacity ({config.sil_capacity}), got {config.sil_batch}")
    if config.ray_address is not None and config.backend != "ray":
        raise ConfigError(f"ray_address is only used with backend=ray (got backend={config.backend})")
    if not 0 <= config.seed <= MAX_SEED:
        raise ConfigError(f"seed must be in [0, {MAX_SEED}], got {config.seed}")
    for key, most in LIMITS.items():
        if getattr(config, key) > most:
            raise ConfigError(f"{key} must be at most {most}, got {getattr(config, key)}")


def resolve_workers(config: Config) -> int:
    return config.workers or os.cpu_count() or 1


def checkpoint_run_dir(checkpoint: Path) -> Path:
    """The run folder a checkpoint (``<run>/checkpoints/<name>.pt``) belongs to, relative to the
    working directory when it lies inside it: the config.yaml a resumed run writes then stays
    valid when the run folder is moved or committed (scripts/runs/)."""
    run_dir = checkpoint.resolve().parent.parent  # resolved: "latest.pt" alone has no parent.parent
    try:
        return run_dir.relative_to(Path.cwd().resolve())
    except ValueError:  # outside the working directory: only the absolute path names it
        return run_dir


def default_run_dir() -> Path:
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")


def check_env_id(env_id: str) -> None:
    """Fail early when ``env_id`` is not an Atari game of ale-py (with the closest ids)."""
    from a3c.envs import registered_env_ids

    known = registered_env_ids()
    if env_id in known and not is_atari(env_id):
        raise ConfigError(f"env_id {env_id!r} is not an Atari game of ale-py")
    if env_id not in known:
        close = difflib.get_close_matches(env_id, [name for name in known if is_atari(name)], n=3)
        hint = f" (close matches: {', '.join(close)})" if close else ""
        raise ConfigError(f"unknown env_id {env_id!r}{hint}")


def is_atari(env_id: str) -> bool:
    import gymnasium as gym

    return "ale_py" in str(gym.registry[env_id].entry_point)


def check_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` and prove it writable, or raise ConfigError."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"run_dir {str(run_dir)!r} is not writable: {error.strerror or error}") from None
