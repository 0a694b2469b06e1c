"""torch.nn twins of our layers and network, differentiated by autograd: the oracle.

Used by the tests and the benchmark scripts only; the product never imports this.
"""
from __future__ import annotations

import torch
from torch import nn


class TorchActorCritic(nn.Module):
    """The A3C network of ``a3c.model.ActorCritic`` in torch.nn."""

    def __init__(self, n_actions: int = 18, in_channels: int = 1):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if k == 0 else 32, 32, 3, stride=2, padding=1) for k in range(4)
        )
        self.lstm = nn.LSTMCell(288, 256)
        self.critic = nn.Linear(256, 1)
        self.actor = nn.Linear(256, n_actions)

    def forward(self, frames, state, mask=None):
        x = frames
        for conv in self.convs:
            x = nn.functional.elu(conv(x))
        h, c = state
        if mask is not None:
            h, c = h * mask, c * mask
        h, c = self.lstm(x.flatten(1), (h, c))
        return self.actor(h), self.critic(h), (h, c)

    def load_from(self, model) -> "TorchActorCritic":
        """Copy the weights of an ``a3c.model.ActorCritic`` (names map one to one)."""
        with torch.no_grad():
            for name, tensor in model.named_parameters():
                layer, param = name.split(".")
                if layer.startswith("conv"):
                    target = getattr(self.convs[int(layer[4:])], param)
                else:
                    target = getattr(getattr(self, layer), param)
                target.copy_(tensor)
        return self

    def gradients_like(self, model) -> dict[str, torch.Tensor]:
        """This module's .grad tensors under ``model``'s parameter names."""
        grads = {}
        for name, _ in model.named_parameters():
            layer, param = name.split(".")
            module = self.convs[int(layer[4:])] if layer.startswith("conv") else getattr(self, layer)
            grads[name] = getattr(module, param).grad
        return grads
