"""Product code computes gradients by hand: no autograd graph, no autograd API."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from a3c.model import ActorCritic

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = re.compile(
    r"requires_grad|\.backward\(\s*\)|torch\.autograd|autograd\.grad|torch\.func|torch\.nn\.grad|"
    r"retain_grad|enable_grad"
)


def test_outputs_have_no_graph_and_parameters_do_not_require_grad():
    model = ActorCritic(18, seed=0)
    state = model.initial_state(2)
    for _ in range(3):
        logits, values, state = model.step(torch.rand(2, 1, 42, 42), state, record=True)
        assert logits.grad_fn is None and values.grad_fn is None and state[0].grad_fn is None
    model.backward(torch.randn(3, 2, 18), torch.randn(3, 2, 1))
    for name, param in model.named_parameters():
        assert not param.requires_grad, name
        assert param.grad is not None and param.grad.grad_fn is None, name


def test_no_autograd_api_in_product_code():
    offenders = []
    for package in ("layers", "a3c"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if FORBIDDEN.search(code):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "autograd outside tests/:\n" + "\n".join(offenders)
