"""The benchmark's baseline, the classic A3C worker differentiated by autograd
(scripts/autograd_a3c.py), pushes the very updates ours pushes.

scripts/benchmark.py reports our steps/s as a ratio to this baseline's: the ratio says
what the hand-written backward costs only if both workers do the same work. On the
scripted games of tests/test_worker_rollout.py, a float64 worker of each kind plays the
same rollouts from the same weights; each update, its logged loss terms and each action
taken are the same, with the default loss and with pixel control's.
"""
from __future__ import annotations

import pytest
import torch

import a3c.worker as worker_module
from a3c.config import load_config
from a3c.messages import UpdateDone
from a3c.model import ActorCritic, network_settings
from a3c.worker import Worker
from scripts.autograd_a3c import AutogradWorker
from tests.helpers import assert_close
from tests.test_worker_rollout import (BATCH, F64, ROLLOUTS, SETTINGS, STEPS, RecordingLink, ScriptedGame,
                                       play_rollouts, reference_network, scripted_vector_env)

LOSSES = {"a3c": {"pixel_control": False}, "pixel-control": {"pixel_control": True, "pixel_control_coef": 0.3, "pixel_control_gamma": 0.8}}


def played(monkeypatch, kind: str, config, weights: ActorCritic):
    """(the named updates pushed, the actions taken, the loss terms logged) of a worker of
    ``kind`` after ROLLOUTS rollouts on fresh scripted games, served ``weights`` throughout."""
    monkeypatch.setattr(worker_module, "make_vector_env", scripted_vector_env([ScriptedGame(k) for k in range(BATCH)]))
    if kind == "ours":
        link = RecordingLink(weights)
        worker = Worker(0, config, link, dtype=F64)
    else:
        network = reference_network(config, weights)
        link = RecordingLink(network)
        worker = AutogradWorker(0, config, link, dtype=F64)
        worker.model.net.double()
    _, actions = play_rollouts(worker, link)
    names = [name for name, _ in weights.named_parameters()]
    updates = []
    for grads in link.updates:
        if kind == "ours":
            updates.append(dict(zip(names, grads)))
        else:  # the baseline's gradients follow torch.nn's parameter order: name them as ours
            for param, grad in zip(network.parameters(), grads):
                param.grad = grad
            updates.append(network.gradients_like(weights))
    logged = [(m.policy_loss, m.value_loss, m.entropy, m.pixel_control_loss)
              for m in link.messages if isinstance(m, UpdateDone)]
    return updates, actions, logged


@pytest.mark.parametrize("loss", LOSSES.values(), ids=LOSSES.keys())
def test_the_autograd_baseline_pushes_the_updates_ours_pushes(monkeypatch, loss):
    config = load_config(None, {"workers": 1, "envs_per_worker": BATCH, "num_steps": STEPS, "max_grad_norm": 1e12,
                                "life_loss_ends_returns": True, **loss, **SETTINGS})
    weights = ActorCritic(18, **network_settings(config), seed=5, dtype=F64)
    ours, ours_actions, ours_logged = played(monkeypatch, "ours", config, weights)
    baseline, baseline_actions, baseline_logged = played(monkeypatch, "autograd", config, weights)
    assert torch.equal(ours_actions, baseline_actions) and ours_actions.shape == (ROLLOUTS * STEPS, BATCH)
    assert len(ours) == len(baseline) == ROLLOUTS
    for update, (mine, theirs) in enumerate(zip(ours, baseline)):
        assert mine.keys() == theirs.keys()
        for name in mine:
            assert_close(mine[name], theirs[name], what=f"update {update + 1}, {name}")
    for mine, theirs in zip(ours_logged, baseline_logged, strict=True):
        assert mine == pytest.approx(theirs, rel=1e-9, nan_ok=True)
    if loss.get("pixel_control"):  # the head learnt: its gradient is part of every update
        assert all(float(update["pixel_deconv.weight"].abs().sum()) > 0 for update in ours)


@pytest.mark.parametrize("setting", [{"normalize_advantages": True}, {"epochs": 2}, {"replay_ratio": 1},
                                     {"sil_batch": 2}], ids=lambda setting: next(iter(setting)))
def test_the_autograd_baseline_refuses_a_loss_it_does_not_compute(monkeypatch, setting):
    monkeypatch.setattr(worker_module, "make_vector_env", scripted_vector_env([ScriptedGame(k) for k in range(BATCH)]))
    config = load_config(None, {"workers": 1, "envs_per_worker": BATCH, "num_steps": STEPS, **setting, **SETTINGS})
    link = RecordingLink(reference_network(config, ActorCritic(18, **network_settings(config), seed=5, dtype=F64)))
    with pytest.raises(ValueError, match=f"AutogradWorker: no autograd loss for .*{next(iter(setting))}"):
        AutogradWorker(0, config, link, dtype=F64)
