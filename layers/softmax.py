"""Softmax, log-softmax and entropy over the last dimension, with their gradients.

For logits z (N, A): p = softmax(z), log p = z - logsumexp(z).
  d(log p)/dz:  dz = g - p * sum_a g            (g = upstream gradient on log p)
  entropy H = -sum_a p log p;  dH/dz = -p (log p + H)
"""
from __future__ import annotations

import torch


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log p = z - max(z) - log sum exp(z - max(z)): no overflow for large logits."""
    if logits.dim() != 2:
        raise ValueError(f"log_softmax: logits must have shape (N, A), got {tuple(logits.shape)}")
    shifted = logits - logits.amax(1, keepdim=True)
    return shifted - shifted.exp().sum(1, keepdim=True).log()


def log_softmax_backward(grad_log_probs: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """dz = g - p * sum_a g, shapes (N, A)."""
    if grad_log_probs.shape != probs.shape:
        raise ValueError(
            f"log_softmax_backward: gradient shape {tuple(grad_log_probs.shape)} "
            f"!= probabilities shape {tuple(probs.shape)}"
        )
    return grad_log_probs - probs * grad_log_probs.sum(1, keepdim=True)


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """H = -sum_a p log p per row, shape (N,)."""
    return -(log_probs.exp() * log_probs).sum(1)


def entropy_backward(grad_entropy: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """dz = -grad_H * p (log p + H), grad_entropy (N,), log_probs (N, A) -> (N, A)."""
    probs = log_probs.exp()
    ent = -(probs * log_probs).sum(1, keepdim=True)
    return -grad_entropy.unsqueeze(1) * probs * (log_probs + ent)
