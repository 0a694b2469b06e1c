"""The actor-critic network, built from the hand-differentiated layers.

4 x (Conv2d 32@3x3, stride 2, padding 1 -> ELU) on (N, 1, 42, 42) frames -> 288
features -> LSTMCell(288, 256) -> critic Linear(256, 1) and actor Linear(256, A): the
class's default sizes (the first design's, and what a checkpoint that records no size
had); the frames stacked as input channels, the frame side, the convolutions' channels
and the LSTM size are settings (``network_settings``). The default run
(``a3c.config.Config``) sees 84x84 frames: 1,152 features into an LSTM of 512.

``conv_stack="nature"`` puts the DQN Nature paper's three convolutions (C@8x8 stride 4,
2C@4x4 stride 2, 2C@3x3 stride 1, no padding; C = conv_channels, 32 in the paper) in place
of the four 3x3 ones, each still followed by an ELU: the network of the DQN, Quantile and
PPO agents the issue compares against. At 84x84 it hands 3,136 features to the core.

``action_reward_input=True`` hands the core, beside the features, the step before's action
(one-hot) and reward (as learned from: clipped), as IMPALA's and UNREAL's agents do: the
core then knows what it just did and what that earned. A row whose episode starts at this
step (its mask 0) reads zeros there, as its state is zeroed. The caller builds that input
with ``action_reward_inputs``; a network without it ignores ``previous``.

``core="layernorm_lstm"`` puts the layer-normalised LSTM of Ba et al. (2016)
(``layers.LayerNormLSTMCell``) where the LSTM was: the same memory, with its gate inputs
and its output's read of the cell normalised at every step.

``pixel_control=True`` adds UNREAL's pixel-control head (Jaderberg et al. 2017), an
auxiliary task whose gradient shapes the shared convolutions and core: from the core's
output, Linear(hidden, 32 m m) -> ReLU -> ConvTranspose2d(32, 1 + A, 4, stride 2) gives a
value map and A advantage maps on an n x n grid of 4x4-pixel cells over the centre of the
view (n = 2 m + 2 = ``a3c.pixel_control.grid_cells``: 20 at 84x84), combined as a dueling
network's: Q = V + A_a - mean_a A_a. The policy never reads it; its loss
(``a3c.pixel_control``) reaches the core through ``backward(..., grad_pixel_q)``.

``core="feedforward"`` puts Linear(features, hidden) -> ELU where the LSTM was: the A3C
paper's feed-forward agent, which sees motion only through stacked frames. It has no
state: it hands back the state it was given (zeros from ``initial_state``), so the
worker, its memories and the evaluator keep one code path for both cores.

Acting: ``step(..., record=False)`` keeps nothing. Learning: the T steps of a
rollout are run with ``record=True``; ``backward`` then takes d(loss)/d(logits,
values) for all T steps and fills every parameter's ``.grad``: heads and
convolutions back-propagate the whole rollout in one call each, and only the LSTM
steps back in time.
"""
from __future__ import annotations

import math

import torch

from a3c.pixel_control import grid_cells
from layers import ELU, Conv2d, ConvTranspose2d, LayerNormLSTMCell, Linear, LSTMCell, ReLU
from layers import init as layer_init

FRAME_SIZE = 42
CONV_CHANNELS = 32
HIDDEN_SIZE = 256
FRAME_STACK = 1
CORE = "lstm"
CORES = ("lstm", "feedforward", "layernorm_lstm")
RECURRENT_CORES = {"lstm": LSTMCell, "layernorm_lstm": LayerNormLSTMCell}
CONV_STACK = "a3c"
CONV_STACKS = ("a3c", "nature")
NETWORK_DEFAULTS = {"frame_stack": FRAME_STACK, "frame_size": FRAME_SIZE, "conv_channels": CONV_CHANNELS,
                    "hidden_size": HIDDEN_SIZE, "core": CORE, "conv_stack": CONV_STACK,
                    "action_reward_input": False, "pixel_control": False}
PIXEL_CHANNELS = 32  # the pixel-control head's maps before its transposed convolution (UNREAL's)


def network_settings(settings) -> dict:
    """The sizes that shape a network, from a run's settings (a Config or a checkpoint's
    config mapping; a setting it lacks has its default, as in checkpoints older than it)."""
    if not isinstance(settings, dict):
        settings = vars(settings)
    return {key: type(default)(settings.get(key, default)) for key, default in NETWORK_DEFAULTS.items()}


def action_reward_inputs(actions: torch.Tensor, rewards: torch.Tensor, n_actions: int) -> torch.Tensor:
    """The core's extra input for the step after: actions (N,) one-hot, then rewards (N,)
    -> (N, n_actions + 1), in the rewards' dtype."""
    inputs = torch.zeros(actions.shape[0], n_actions + 1, dtype=rewards.dtype, device=rewards.device)
    inputs[torch.arange(actions.shape[0]), actions] = 1.0
    inputs[:, n_actions] = rewards
    return inputs


def conv_specs(conv_stack: str = CONV_STACK, frame_stack: int = FRAME_STACK,
               conv_channels: int = CONV_CHANNELS) -> list[tuple[int, int, int, int, int]]:
    """(in_channels, out_channels, kernel, stride, padding) of each convolution, in order:
    'a3c', the A3C-LSTM code's four 3x3 convolutions of stride 2, each halving the side;
    'nature', the DQN Nature paper's three, whose last two are twice as wide."""
    c = conv_channels
    if conv_stack == "a3c":
        return [(frame_stack if k == 0 else c, c, 3, 2, 1) for k in range(4)]
    if conv_stack == "nature":
        return [(frame_stack, c, 8, 4, 0), (c, 2 * c, 4, 2, 0), (2 * c, 2 * c, 3, 1, 0)]
    raise ValueError(f"conv_stack must be one of {', '.join(CONV_STACKS)}, got {conv_stack!r}")


def conv_sides(frame_size: int, conv_stack: str = CONV_STACK) -> list[int]:
    """The output side of each convolution (0 or less: the frame is too small for the stack)."""
    sides = [frame_size]
    for _, _, kernel, stride, padding in conv_specs(conv_stack):
        sides.append((sides[-1] + 2 * padding - kernel) // stride + 1)
    return sides[1:]


def smallest_frame_size(conv_stack: str = CONV_STACK) -> int:
    """The smallest frame side every convolution of the stack has room for (a3c 1, nature 36)."""
    return next(size for size in range(1, 1000) if min(conv_sides(size, conv_stack)) >= 1)


def check_frame_size(frame_size: int, conv_stack: str) -> None:
    """A ValueError for a frame too small for the stack: its last side would be 0 or less,
    which squares to a plausible feature count."""
    if frame_size < smallest_frame_size(conv_stack):
        raise ValueError(f"frame_size must be at least {smallest_frame_size(conv_stack)} for "
                         f"conv_stack={conv_stack}, got {frame_size}")


def pixel_map_side(frame_size: int) -> int:
    """m, the side of the pixel-control head's maps before its transposed convolution
    (4x4, stride 2: 2 m + 2 = the grid's n cells); a ValueError below 20 pixels (n < 4)."""
    cells = grid_cells(frame_size)
    if cells < 4:
        raise ValueError(f"pixel control needs frame_size of at least 20, got {frame_size}")
    return cells // 2 - 1


def parameter_shapes(n_actions: int, frame_stack: int = FRAME_STACK, frame_size: int = FRAME_SIZE,
                     conv_channels: int = CONV_CHANNELS, hidden_size: int = HIDDEN_SIZE,
                     core: str = CORE, conv_stack: str = CONV_STACK,
                     action_reward_input: bool = False, pixel_control: bool = False) -> dict[str, tuple[int, ...]]:
    """The shape of every parameter of ``ActorCritic`` with these sizes, by name, without
    building it (a checkpoint's weights are checked against its own settings with this)."""
    shapes = {}
    specs = conv_specs(conv_stack, frame_stack, conv_channels)
    for k, (in_channels, out_channels, kernel, _, _) in enumerate(specs):
        shapes[f"conv{k}.weight"] = (out_channels, in_channels, kernel, kernel)
        shapes[f"conv{k}.bias"] = (out_channels,)
    check_frame_size(frame_size, conv_stack)
    side = conv_sides(frame_size, conv_stack)[-1]
    features = specs[-1][1] * side * side + (n_actions + 1 if action_reward_input else 0)
    gates = 4 * hidden_size
    if core == "lstm":
        shapes.update({"lstm.weight_ih": (gates, features), "lstm.weight_hh": (gates, hidden_size),
                       "lstm.bias_ih": (gates,), "lstm.bias_hh": (gates,)})
    elif core == "layernorm_lstm":
        shapes.update({"lstm.weight_ih": (gates, features), "lstm.weight_hh": (gates, hidden_size),
                       "lstm.bias": (gates,), "lstm.gain_ih": (gates,), "lstm.gain_hh": (gates,),
                       "lstm.cell_gain": (hidden_size,), "lstm.cell_bias": (hidden_size,)})
    else:
        shapes.update({"fc.weight": (hidden_size, features), "fc.bias": (hidden_size,)})
    shapes.update({"critic.weight": (1, hidden_size), "critic.bias": (1,),
                   "actor.weight": (n_actions, hidden_size), "actor.bias": (n_actions,)})
    if pixel_control:
        maps = PIXEL_CHANNELS * pixel_map_side(frame_size) ** 2
        shapes.update({"pixel_fc.weight": (maps, hidden_size), "pixel_fc.bias": (maps,),
                       "pixel_deconv.weight": (PIXEL_CHANNELS, n_actions + 1, 4, 4),
                       "pixel_deconv.bias": (n_actions + 1,)})
    return shapes


class ActorCritic:
    def __init__(self, n_actions: int, *, frame_stack: int = FRAME_STACK, frame_size: int = FRAME_SIZE,
                 conv_channels: int = CONV_CHANNELS, hidden_size: int = HIDDEN_SIZE, core: str = CORE,
                 conv_stack: str = CONV_STACK, action_reward_input: bool = False, pixel_control: bool = False,
                 forget_bias: float = 0.0,
                 weight_init: str = "a3c",
                 seed: int | None = None, dtype: torch.dtype | None = None) -> None:
        if core not in CORES:
            raise ValueError(f"ActorCritic: core must be one of {', '.join(CORES)}, got {core!r}")
        if conv_stack not in CONV_STACKS:
            raise ValueError(f"ActorCritic: conv_stack must be one of {', '.join(CONV_STACKS)}, got {conv_stack!r}")
        check_frame_size(frame_size, conv_stack)
        self.n_actions, self.frame_size, self.hidden_size, self.core = n_actions, frame_size, hidden_size, core
        # the stacked frames are the first convolution's input channels
        self.convs = [Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, dtype=dtype)
                      for c_in, c_out, kernel, stride, padding in conv_specs(conv_stack, frame_stack, conv_channels)]
        self.elus = [ELU() for _ in self.convs]
        side = frame_size
        for conv in self.convs:
            side = conv.output_size(side, side)[0]
        # a3c with 32 channels: 288 features for 42x42 frames, 1152 for 84x84; nature: 3136 for 84x84
        self.feature_size = self.convs[-1].out_channels * side * side
        self.action_reward_input = action_reward_input
        core_inputs = self.feature_size + (n_actions + 1 if action_reward_input else 0)
        # a recurrent core (plain or layer-normalised LSTM) or the feed-forward one; the other is None
        self.lstm = RECURRENT_CORES[core](core_inputs, hidden_size, dtype=dtype) if core in RECURRENT_CORES else None
        self.fc = Linear(core_inputs, hidden_size, dtype=dtype) if core == "feedforward" else None
        self.fc_elu = ELU() if core == "feedforward" else None
        self.critic = Linear(hidden_size, 1, dtype=dtype)
        self.actor = Linear(hidden_size, n_actions, dtype=dtype)
        self.pixel_fc = self.pixel_relu = self.pixel_deconv = None
        self.pixel_cells = self.pixel_side = 0  # n, the grid's side, and m, its maps'; 0 without the head
        if pixel_control:
            side = self.pixel_side = pixel_map_side(frame_size)
            self.pixel_cells = 2 * side + 2
            self.pixel_fc = Linear(hidden_size, PIXEL_CHANNELS * side * side, dtype=dtype)
            self.pixel_relu = ReLU()
            self.pixel_deconv = ConvTranspose2d(PIXEL_CHANNELS, n_actions + 1, 4, stride=2, dtype=dtype)
        self._hidden: list[torch.Tensor] = []  # the core's output at each recorded step (pixel control's input)
        self.last_hidden: torch.Tensor | None = None  # the core's output at the latest step
        self._steps_recorded = 0
        self._conv_out_shape: tuple[int, ...] = ()
        self.initialize(seed, forget_bias, weight_init)

    @property
    def layers(self):
        return [*self.convs, self.core_layer, self.critic, self.actor,
                *([self.pixel_fc, self.pixel_deconv] if self.pixel_fc is not None else [])]

    def initialize(self, seed: int | None = None, forget_bias: float = 0.0, weight_init: str = "a3c") -> None:
        """'a3c': the original A3C-LSTM code's scheme (Glorot-uniform convolutions, torch's
        LSTM, heads of row norm 1 and 0.01; the feed-forward core Glorot-uniform as the
        convolutions); 'orthogonal': the PPO and A2C Atari baselines' (orthogonal, gain sqrt(2)
        for the convolutions and the feed-forward core, whose ELU passes positive inputs as a
        rectifier does; 1 for the LSTM and the value head; 0.01 for the policy head).
        ``forget_bias`` applies to the LSTM only. The pixel-control head is Glorot-uniform
        in either scheme, drawn after every other weight: a seed gives the same network
        with or without it."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        if weight_init == "a3c":
            for conv in self.convs:
                layer_init.fan_uniform_(conv, generator)
            if self.lstm is not None:
                layer_init.lstm_(self.lstm, forget_bias, generator)
            else:
                layer_init.fan_uniform_(self.fc, generator)
            layer_init.normalized_columns_(self.critic.weight, 1.0, generator)
            layer_init.normalized_columns_(self.actor.weight, 0.01, generator)
            self.critic.bias.zero_()
            self.actor.bias.zero_()
        elif weight_init == "orthogonal":
            for conv in self.convs:
                layer_init.orthogonal_(conv, math.sqrt(2.0), generator)
            if self.lstm is not None:
                layer_init.lstm_orthogonal_(self.lstm, forget_bias, generator)
            else:
                layer_init.orthogonal_(self.fc, math.sqrt(2.0), generator)
            layer_init.orthogonal_(self.critic, 1.0, generator)
            layer_init.orthogonal_(self.actor, 0.01, generator)
        else:
            raise ValueError(f"ActorCritic: weight_init must be 'a3c' or 'orthogonal', got {weight_init!r}")
        if self.pixel_fc is not None:
            layer_init.fan_uniform_(self.pixel_fc, generator)
            layer_init.fan_uniform_(self.pixel_deconv, generator)

    # --- parameters --------------------------------------------------------------------
    def named_parameters(self):
        heads = [("pixel_fc", self.pixel_fc), ("pixel_deconv", self.pixel_deconv)] if self.pixel_fc is not None else []
        for prefix, layer in [*((f"conv{k}", c) for k, c in enumerate(self.convs)),
                              (self.core_name, self.core_layer), ("critic", self.critic),
                              ("actor", self.actor), *heads]:
            for name, tensor in layer.named_parameters():
                yield f"{prefix}.{name}", tensor

    def parameters(self) -> list[torch.Tensor]:
        return [p for _, p in self.named_parameters()]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.named_parameters())

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        own = self.state_dict()
        if own.keys() != state.keys():
            missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
            raise ValueError(f"ActorCritic: state_dict keys do not match "
                             f"(missing {missing}, unexpected {unexpected})")
        for name, tensor in own.items():
            if tensor.shape != state[name].shape:
                raise ValueError(f"ActorCritic: {name} has shape {tuple(tensor.shape)}, "
                                 f"state_dict gives {tuple(state[name].shape)}")
            tensor.copy_(state[name])

    def to(self, dtype: torch.dtype) -> "ActorCritic":
        """Convert every layer's parameters to ``dtype`` in place (``Layer.to``)."""
        for layer in self.layers:
            layer.to(dtype)
        return self

    def zero_grad(self) -> None:
        for layer in self.layers:
            layer.zero_grad()

    @property
    def core_layer(self):
        """The LSTMCell (plain or layer-normalised), or the feed-forward core's Linear."""
        return self.lstm if self.lstm is not None else self.fc

    @property
    def core_name(self) -> str:
        """The core's prefix in parameter names: 'lstm' or 'fc'."""
        return "lstm" if self.lstm is not None else "fc"

    def initial_state(self, batch: int = 1):
        if self.lstm is not None:
            return self.lstm.initial_state(batch)
        weight = self.fc.weight  # the state follows the weights' dtype and device, as the LSTM's does
        zeros = torch.zeros(batch, self.hidden_size, dtype=weight.dtype, device=weight.device)
        return zeros, zeros.clone()

    # --- forward -----------------------------------------------------------------------
    def step(self, frames: torch.Tensor, state, mask: torch.Tensor | None = None, *, previous=None,
             record: bool = False):
        """frames (N, C, S, S) (S = frame_size), state (h, c) each (N, hidden_size), mask (N, 1) zeroing the
        state of rows that start an episode, previous (N, A + 1) the step before's action and
        reward (``action_reward_inputs``; read only with action_reward_input)
        -> (logits (N, A), values (N, 1), (h, c))."""
        x = frames
        for conv, elu in zip(self.convs, self.elus):
            x = elu.forward(conv.forward(x, record=record), record=record)
        self._conv_out_shape = tuple(x.shape[1:])
        features = x.reshape(x.shape[0], self.feature_size)
        if self.action_reward_input:
            expected = (features.shape[0], self.n_actions + 1)
            if previous is None or tuple(previous.shape) != expected:
                raise ValueError(f"ActorCritic: action_reward_input needs previous {expected}, got "
                                 f"{None if previous is None else tuple(previous.shape)}")
            if mask is not None:  # a new episode has no step before: zeros, as its state
                previous = previous * mask
            features = torch.cat([features, previous.to(features.dtype)], 1)
        if self.lstm is not None:
            h, c = self.lstm.forward(features, state, mask, record=record)
            state = (h, c)
        else:  # no memory: the state passes through untouched, checked as the LSTM would check it
            expected = (features.shape[0], self.hidden_size)
            if len(state) != 2 or any(tuple(part.shape) != expected for part in state):
                raise ValueError(f"ActorCritic: state must be (h, c), each {expected}, got "
                                 f"{[tuple(part.shape) for part in state]}")
            h = self.fc_elu.forward(self.fc.forward(features, record=record), record=record)
        values = self.critic.forward(h, record=record)
        logits = self.actor.forward(h, record=record)
        self.last_hidden = h
        if record:
            self._steps_recorded += 1
            if self.pixel_fc is not None:
                self._hidden.append(h)
        return logits, values, state

    def pixel_q(self, hidden: torch.Tensor, *, record: bool = False) -> torch.Tensor:
        """The pixel-control head: the core's outputs (N, hidden_size) -> Q (N, A, n, n)."""
        if self.pixel_fc is None:
            raise ValueError("ActorCritic: this network has no pixel-control head (pixel_control=False)")
        x = self.pixel_relu.forward(self.pixel_fc.forward(hidden, record=record), record=record)
        side = self.pixel_side
        maps = self.pixel_deconv.forward(x.view(-1, PIXEL_CHANNELS, side, side), record=record)
        values, advantages = maps[:, :1], maps[:, 1:]
        return values + advantages - advantages.mean(1, keepdim=True)

    def recorded_pixel_q(self) -> torch.Tensor:
        """Q (T, N, A, n, n) of the T recorded steps, recorded in turn for the backward's
        ``grad_pixel_q``."""
        if not self._hidden:
            raise ValueError("ActorCritic: no recorded step to compute pixel control's Q for")
        q = self.pixel_q(torch.cat(self._hidden), record=True)
        return q.view(len(self._hidden), -1, *q.shape[1:])

    # --- backward ----------------------------------------------------------------------
    def backward(self, grad_logits: torch.Tensor, grad_values: torch.Tensor,
                 grad_pixel_q: torch.Tensor | None = None) -> None:
        """Add d(loss)/d(parameters) into ``.grad`` for all recorded steps.

        grad_logits (T, N, A) and grad_values (T, N, 1) for the T recorded steps in
        order; grad_pixel_q (T, N, A, n, n) for the Q maps ``recorded_pixel_q`` gave, or
        None when they were not computed. Gradients do not flow into the state the
        rollout started from (truncated back-propagation through time, as in A3C).
        """
        steps = self._steps_recorded
        if grad_logits.dim() != 3 or grad_logits.shape[0] != steps or grad_logits.shape[2] != self.n_actions \
                or grad_values.shape != (*grad_logits.shape[:2], 1):
            raise ValueError(
                f"ActorCritic: backward needs grad_logits (T={steps}, N, {self.n_actions}) and "
                f"grad_values (T, N, 1), got {tuple(grad_logits.shape)} and {tuple(grad_values.shape)}"
            )
        n = grad_logits.shape[1]
        grad_h = self.actor.backward(grad_logits.reshape(steps * n, self.n_actions))
        grad_h += self.critic.backward(grad_values.reshape(steps * n, 1))
        self._hidden.clear()
        if grad_pixel_q is not None:
            grad_h += self._pixel_backward(grad_pixel_q, steps, n)
        elif self.pixel_fc is not None:
            # a loss without pixel control (a replay, self-imitation): zero, as every parameter
            # has a gradient (RMSProp's average for the head then decays on each such update)
            for layer in (self.pixel_fc, self.pixel_deconv):
                for param in layer.parameters():
                    if param.grad is None:
                        param.grad = torch.zeros_like(param)
        if self.lstm is not None:
            grad_features, _, _ = self.lstm.backward_through_time(grad_h.view(steps, n, -1))
        else:  # every step at once, as the heads: nothing links one step to the next
            grad_features = self.fc.backward(self.fc_elu.backward(grad_h))
        # the action and reward inputs are data: only the convolutions' features go on down
        grad_features = grad_features.reshape(steps * n, -1)[:, :self.feature_size]
        grad_x = grad_features.reshape(steps * n, *self._conv_out_shape)
        for k in range(len(self.convs) - 1, -1, -1):  # the frames need no gradient
            grad_x = self.convs[k].backward(self.elus[k].backward(grad_x), input_grad=k > 0)
        self._steps_recorded = 0

    def _pixel_backward(self, grad_q: torch.Tensor, steps: int, n: int) -> torch.Tensor:
        """d(loss)/d(core outputs) (T N, hidden) through the pixel-control head, from
        d(loss)/dQ (T, N, A, n, n); the dueling sum's backward: dV = sum_a dQ_a,
        dA_a = dQ_a - mean_b dQ_b."""
        expected = (steps, n, self.n_actions, self.pixel_cells, self.pixel_cells)
        if self.pixel_fc is None or tuple(grad_q.shape) != expected:
            raise ValueError(f"ActorCritic: grad_pixel_q must be {expected} for a network with pixel control, got "
                             f"{tuple(grad_q.shape)}" + ("" if self.pixel_fc is not None else " (this network has none)"))
        grad_q = grad_q.reshape(steps * n, *expected[2:])
        grad_maps = torch.cat([grad_q.sum(1, keepdim=True), grad_q - grad_q.mean(1, keepdim=True)], 1)
        grad_x = self.pixel_relu.backward(self.pixel_deconv.backward(grad_maps).reshape(steps * n, -1))
        return self.pixel_fc.backward(grad_x)

    # --- sharing between processes -------------------------------------------------------
    def share_memory(self) -> "ActorCritic":
        """Move every parameter into shared memory (the global network of A3C)."""
        for tensor in self.parameters():
            tensor.share_memory_()
        return self

    def copy_from(self, other: "ActorCritic") -> None:
        """Pull ``other``'s weights into this network (a worker syncing with the global one)."""
        for mine, theirs in zip(self.parameters(), other.parameters()):
            mine.copy_(theirs)
