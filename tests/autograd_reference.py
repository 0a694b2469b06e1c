"""torch.nn twins of our layers and network, differentiated by autograd: the oracle.

Used by the tests and the benchmark scripts only; the product never imports this.
"""
from __future__ import annotations

import torch
from torch import nn


class TorchLayerNormLSTMCell(nn.Module):
    """``layers.LayerNormLSTMCell`` in torch.nn: Ba et al.'s layer-normalised LSTM written
    with ``nn.functional.layer_norm`` (same parameter names)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        gates = 4 * hidden_size
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.randn(gates, input_size) / input_size ** 0.5)
        self.weight_hh = nn.Parameter(torch.randn(gates, hidden_size) / hidden_size ** 0.5)
        self.bias = nn.Parameter(torch.zeros(gates))
        self.gain_ih, self.gain_hh = nn.Parameter(torch.ones(gates)), nn.Parameter(torch.ones(gates))
        self.cell_gain, self.cell_bias = nn.Parameter(torch.ones(hidden_size)), nn.Parameter(torch.zeros(hidden_size))

    def forward(self, x, state):
        h, c = state
        layer_norm, gates = nn.functional.layer_norm, 4 * self.hidden_size
        a = (layer_norm(x @ self.weight_ih.t(), (gates,), self.gain_ih, None, 1e-5)
             + layer_norm(h @ self.weight_hh.t(), (gates,), self.gain_hh, None, 1e-5) + self.bias)
        i, f, g, o = a.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(layer_norm(c, (self.hidden_size,), self.cell_gain, self.cell_bias, 1e-5))
        return h, c


class TorchActorCritic(nn.Module):
    """The A3C network of ``a3c.model.ActorCritic`` in torch.nn."""

    def __init__(self, n_actions: int = 18, *, frame_stack: int = 1, frame_size: int = 42,
                 conv_channels: int = 32, hidden_size: int = 256, core: str = "lstm",
                 conv_stack: str = "a3c", action_reward_input: bool = False, pixel_control: bool = False):
        super().__init__()
        c = conv_channels
        if conv_stack == "a3c":  # four 3x3, stride 2, padding 1
            self.convs = nn.ModuleList(
                nn.Conv2d(frame_stack if k == 0 else c, c, 3, stride=2, padding=1) for k in range(4))
        elif conv_stack == "nature":  # the DQN Nature paper's three, unpadded
            self.convs = nn.ModuleList([nn.Conv2d(frame_stack, c, 8, stride=4), nn.Conv2d(c, 2 * c, 4, stride=2),
                                        nn.Conv2d(2 * c, 2 * c, 3, stride=1)])
        else:
            raise ValueError(f"TorchActorCritic: unknown conv_stack {conv_stack!r}")
        with torch.no_grad():  # the features' size, as torch itself computes it
            features = nn.Sequential(*self.convs)(torch.zeros(1, frame_stack, frame_size, frame_size)).numel()
        self.action_reward_input = action_reward_input
        features += n_actions + 1 if action_reward_input else 0  # one-hot action before, reward before
        if core == "lstm":
            self.lstm = nn.LSTMCell(features, hidden_size)
        elif core == "layernorm_lstm":
            self.lstm = TorchLayerNormLSTMCell(features, hidden_size)
        else:  # the feed-forward core: no memory, the state passed through as given
            self.fc = nn.Linear(features, hidden_size)
        self.core = core
        self.critic = nn.Linear(hidden_size, 1)
        self.actor = nn.Linear(hidden_size, n_actions)
        if pixel_control:  # UNREAL's head: Linear -> ReLU -> 4x4 stride-2 transposed convolution, dueling
            self.pixel_side = (2 * ((frame_size - 4) // 8)) // 2 - 1
            self.pixel_fc = nn.Linear(hidden_size, 32 * self.pixel_side ** 2)
            self.pixel_deconv = nn.ConvTranspose2d(32, n_actions + 1, 4, stride=2)
        self.last_hidden = None

    def pixel_q(self, h):
        """Q (N, A, n, n) of the pixel-control head from the core's outputs h (N, hidden)."""
        maps = self.pixel_deconv(nn.functional.relu(self.pixel_fc(h)).view(-1, 32, self.pixel_side, self.pixel_side))
        return maps[:, :1] + maps[:, 1:] - maps[:, 1:].mean(1, keepdim=True)

    def forward(self, frames, state, mask=None, previous=None):
        x = frames
        for conv in self.convs:
            x = nn.functional.elu(conv(x))
        x = x.flatten(1)
        if self.action_reward_input:
            x = torch.cat([x, previous if mask is None else previous * mask], 1)
        if self.core == "feedforward":
            h = nn.functional.elu(self.fc(x))
            self.last_hidden = h
            return self.actor(h), self.critic(h), state
        h, c = state
        if mask is not None:
            h, c = h * mask, c * mask
        h, c = self.lstm(x, (h, c))
        self.last_hidden = h
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
        """This module's .grad tensors under ``model``'s parameter names (zeros for one without)."""
        grads = {}
        for name, _ in model.named_parameters():
            layer, param = name.split(".")
            module = self.convs[int(layer[4:])] if layer.startswith("conv") else getattr(self, layer)
            tensor = getattr(module, param)
            # a parameter no loss term reached (the pixel-control head in a replay): zero, as the model gives
            grads[name] = tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)
        return grads
