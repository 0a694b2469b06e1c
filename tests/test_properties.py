"""Property-based tests (hypothesis): whatever settings, YAML or checkpoint a user (or an
attacker) gives, the answer is a valid run or one ``error:`` line with exit code 2, and a
damaged checkpoint is a CheckpointError, never another exception."""
from __future__ import annotations

import io
import math
from contextlib import redirect_stderr

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import a3c.trainer
from a3c import train
from a3c.checkpoint import CheckpointError, save_checkpoint
from a3c.config import FIELD_TYPES, Config, ConfigError
from a3c.model import ActorCritic, network_settings
from a3c.optim import SharedRMSprop
from a3c.policy import load_agent
from a3c.trainer import restore_training

# run_dir and resume name places on disk: they are given fixed values below
KEYS = sorted(set(FIELD_TYPES) - {"run_dir", "resume"})
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-10, 300),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1), st.text(max_size=12),
    st.sampled_from(["auto", "adam", "rmsprop", "ray", "local", "sample", "greedy", "both", "original",
                     "river_and_gauge", "orthogonal", "a3c", "nature", "lstm", "feedforward", "Riverraid-v0", "CartPole-v1", "ALE/Pong-v5", "1e-4", "nan", "-inf"]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=5), SCALARS, max_size=2))
SETTINGS = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=10)), VALUES, max_size=6)


class Accepted(Exception):
    """Raised by the stand-in trainer: the settings were accepted, nothing trains."""


class NoTraining:
    """Does what the trainer does before any process starts (restore a resumed network and
    optimizer), then stops."""

    def __init__(self, config, checkpoint):
        restore_training(config, checkpoint, 18)
        raise Accepted(config)


def run_main(argv: list[str], monkeypatch) -> tuple[int | None, str]:
    """train.main with the trainer replaced: (exit code or None when accepted, stderr)."""
    monkeypatch.setattr(a3c.trainer, "Trainer", NoTraining)
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        try:
            code = train.main(argv)
        except Accepted:
            code = None
        except SystemExit as done:  # a usage mistake (argparse)
            code = done.code
    return code, stderr.getvalue()


def assert_valid_or_one_error_line(code, stderr):
    if code is None:  # accepted: at most a warning (more workers than cores)
        assert all(line.startswith("warning: ") for line in stderr.splitlines()), stderr
    else:
        assert code == 2, stderr
        assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
        assert "Traceback" not in stderr


def as_yaml_scalar(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return {math.inf: ".inf", -math.inf: "-.inf"}.get(value, ".nan")
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


# the example count comes from the loaded profile (tests/conftest.py: 60, or 600 when thorough)
FAST = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(overrides=SETTINGS)
def test_any_key_value_settings_give_a_run_or_one_error_line(overrides, monkeypatch, tmp_path):
    argv = [f"{key}={as_yaml_scalar(value)}" for key, value in overrides.items()]
    code, stderr = run_main([*argv, f"run_dir={tmp_path / 'run'}"], monkeypatch)
    assert_valid_or_one_error_line(code, stderr)


@FAST
@given(document=st.one_of(
    SETTINGS.map(lambda d: yaml.safe_dump({str(k): v for k, v in d.items()}, allow_unicode=True)),
    st.text(max_size=60),
    st.lists(st.sampled_from(["lr: 1e-4\n", "workers: [\n", "- 3\n", "!!python/object:os.system x\n",
                              "gamma: .nan\n", "{a: 1}\n", "seed: 99999999999999999999\n", ": :\n",
                              "env_id: Pong\n", "'\n", "\t\n", "frame_size: 1e9\n"]), max_size=4).map("".join),
))
def test_any_yaml_document_gives_a_run_or_one_error_line(document, monkeypatch, tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text(document)
    code, stderr = run_main(["--config", str(path), f"run_dir={tmp_path / 'run'}"], monkeypatch)
    assert_valid_or_one_error_line(code, stderr)


# --- checkpoints ----------------------------------------------------------------------------

# every setting as a run records them, at 42x42: a quarter of the default's LSTM input, so
# each of the many examples saves and loads a quarter of the bytes (the checks are the same)
RECORDED = Config(frame_size=42)


def real_checkpoint() -> dict:
    model = ActorCritic(18, **network_settings(RECORDED), seed=0)
    optimizer = SharedRMSprop(model.parameters(), 7e-4)  # the default optimizer: resume takes it
    optimizer.step([torch.full_like(p, 1e-3) for p in model.parameters()])
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "global_step": 1234,
            "obs_norm": torch.tensor([[0.3, 0.2, 50.0], [0.31, 0.21, 60.0]], dtype=torch.float64),
            "n_actions": 18, "config": {**RECORDED.to_dict(), "workers": 2}}


TENSORS = st.one_of(
    st.builds(lambda shape, fill: torch.full(shape, fill, dtype=torch.float64), st.lists(st.integers(0, 3), max_size=3).map(tuple),
              st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda shape: torch.zeros(shape, dtype=torch.int64), st.lists(st.integers(0, 3), max_size=2).map(tuple)),
    st.just(torch.zeros(2, 3, dtype=torch.bool)),
)
ANYTHING = st.one_of(SCALARS, TENSORS, st.lists(st.one_of(SCALARS, TENSORS), max_size=3),
                     st.dictionaries(st.text(max_size=6), st.one_of(SCALARS, TENSORS), max_size=3))


def paths_of(payload: dict, prefix=()) -> list[tuple]:
    """Every place in the payload a mutation can hit: top-level fields, and each entry of a
    mapping or list one level down (a weight, an optimizer statistic, a setting)."""
    found = []
    for key, value in payload.items():
        found.append((*prefix, key))
        if isinstance(value, dict) and not prefix:
            found.extend(paths_of(value, (key,)))
        if isinstance(value, list) and prefix:
            found.extend((*prefix, key, index) for index in range(len(value)))
    return found


PLACES = paths_of(real_checkpoint()) + [("optimizer", "square_avg", 0), ("config", "frame_size")]


def tensor_mutations(tensor: torch.Tensor):
    return st.sampled_from([
        tensor.double(), tensor.flatten(), tensor[:1], tensor.t() if tensor.dim() == 2 else tensor.unsqueeze(0),
        torch.full_like(tensor, math.nan), torch.full_like(tensor, -1.0), tensor.to(torch.int32), tensor[..., :0],
    ])


class Mutated:
    """A mutated checkpoint payload, shown in a failure report by what was changed."""

    def __init__(self, payload: dict, what: str) -> None:
        self.payload, self.what = payload, what

    def __repr__(self) -> str:
        return self.what


@st.composite
def mutated(draw):
    payload = real_checkpoint()
    place = draw(st.sampled_from(PLACES))
    parent = payload
    for key in place[:-1]:
        parent = parent[key]
    old = parent[place[-1]]
    action = draw(st.sampled_from(["replace", "delete", "tensor"] if isinstance(old, torch.Tensor)
                                  else ["replace", "delete"]))
    if action == "delete" and isinstance(parent, dict):
        del parent[place[-1]]
        new = "deleted"
    else:
        new = parent[place[-1]] = draw(tensor_mutations(old) if action == "tensor" else ANYTHING)
    described = f"tensor {new.dtype} {tuple(new.shape)}" if isinstance(new, torch.Tensor) else repr(new)[:200]
    return Mutated(payload, f"{'.'.join(map(str, place))} <- {described}")


@settings(max_examples=2 * settings().max_examples, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=mutated())
def test_any_mutation_of_a_checkpoint_is_refused_in_one_line_or_loads(payload, monkeypatch, tmp_path):
    path = tmp_path / "mutated.pt"
    save_checkpoint(path, payload.payload)
    # evaluate's path: a CheckpointError (or an unknown game) or a playable agent
    try:
        model, normalizer, _, _ = load_agent(path)
        side = model.frame_size  # the checkpoint's own, as the evaluator plays it
        frames = torch.from_numpy(normalizer(torch.rand(1, side, side).numpy(), update=False)).float().unsqueeze(0)
        logits, _, _ = model.step(frames, model.initial_state(1))
        assert torch.isfinite(logits).all()
    except (CheckpointError, ConfigError) as error:
        assert "\n" not in str(error)
    # resume's path: one error line and exit 2, or a restored network and optimizer
    code, stderr = run_main([f"resume={path}", f"run_dir={tmp_path / 'run'}", "workers=2"], monkeypatch)
    assert_valid_or_one_error_line(code, stderr)


def test_the_unmutated_checkpoint_loads_on_both_paths(monkeypatch, tmp_path):
    path = tmp_path / "real.pt"
    save_checkpoint(path, real_checkpoint())
    load_agent(path)
    code, stderr = run_main([f"resume={path}", f"run_dir={tmp_path / 'run'}", "workers=2"], monkeypatch)
    assert code is None and stderr == ""
