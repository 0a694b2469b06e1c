"""Shared test helpers."""
from __future__ import annotations

import torch


def rel_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - reference| / max |reference| (0 when both are all zero)."""
    assert ours.shape == reference.shape, (tuple(ours.shape), tuple(reference.shape))
    scale = reference.abs().max().item()
    diff = (ours - reference).abs().max().item()
    return diff / scale if scale > 0 else diff


def assert_close(ours: torch.Tensor, reference: torch.Tensor, tol: float = 1e-8, what: str = "") -> None:
    err = rel_error(ours, reference)
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.0e}"
