"""The classic A3C worker, differentiated by autograd: the baseline of scripts/benchmark.py.

Same network (tests/autograd_reference.TorchActorCritic, torch.nn), same rollout code
(it subclasses a3c.worker.Worker: games, sampling, masks, bootstrap), same loss (written
with torch ops and ``loss.backward()``, as the textbook A3C does; with ``pixel_control``,
UNREAL's pixel-control loss too) and the same shared optimizer. Only the network's
forward and backward differ from ours: tests/test_autograd_baseline.py holds its updates
equal to ours. Never used by the product.
"""
from __future__ import annotations


import torch

from a3c.loss import discounted_targets
from a3c.model import network_settings
from a3c.optim import make_optimizer
from a3c.pixel_control import grid_cells, pixel_control_targets
from a3c.worker import Worker
from tests.autograd_reference import TorchActorCritic


class AutogradNetwork:
    """TorchActorCritic behind the interface the worker uses (step, copy_from, ...).

    Recorded steps keep their autograd graph; the LSTM state is detached where a new
    rollout starts (truncated back-propagation through time, as in ours).
    """

    def __init__(self, n_actions: int, **sizes) -> None:
        self.net = TorchActorCritic(n_actions, **sizes)
        self.recorded: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # logits, values, core output
        self.pixel_cells = grid_cells(sizes["frame_size"]) if sizes.get("pixel_control") else 0

    def initial_state(self, batch: int):
        hidden, dtype = self.net.actor.in_features, self.net.actor.weight.dtype  # the LSTM's size, or the feed-forward core's
        return torch.zeros(batch, hidden, dtype=dtype), torch.zeros(batch, hidden, dtype=dtype)

    def step(self, frames, state, mask=None, *, previous=None, record: bool = False):
        if record:
            frames = frames.clone()  # the worker reuses its frame buffer; autograd needs these intact
            if not self.recorded:
                state = (state[0].detach(), state[1].detach())
        with torch.set_grad_enabled(record):
            logits, values, state = self.net(frames, state, mask, previous)
        if record:
            self.recorded.append((logits, values, self.net.last_hidden))
        return logits.detach(), values.detach(), state

    @property
    def last_hidden(self) -> torch.Tensor:
        """The core's output at the latest step, without its graph (pixel control's bootstrap)."""
        return self.net.last_hidden.detach()

    def copy_from(self, shared: TorchActorCritic) -> None:
        with torch.no_grad():
            for mine, theirs in zip(self.net.parameters(), shared.parameters()):
                mine.copy_(theirs)

    def parameters(self):
        return list(self.net.parameters())

    def zero_grad(self) -> None:
        self.net.zero_grad(set_to_none=True)


class AutogradWorker(Worker):
    # what ours adds to the rollout's loss that this baseline's does not: a run with one of
    # these would compare unlike work
    UNSUPPORTED = {"normalize_advantages": False, "epochs": 1, "replay_ratio": 0, "sil_batch": 0}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        given = {key: getattr(self.config, key) for key in self.UNSUPPORTED
                 if getattr(self.config, key) != self.UNSUPPORTED[key]}
        if given:
            raise ValueError(f"AutogradWorker: no autograd loss for {given}")
        self.model = AutogradNetwork(self.n_actions, **network_settings(self.config))

    def gradients(self, bootstrap: torch.Tensor):
        config = self.config
        recorded, self.model.recorded = self.model.recorded, []
        logits = torch.stack([r[0] for r in recorded])  # (T, B, A), with graph
        values = torch.stack([r[1] for r in recorded]).squeeze(2)
        returns, advantages = discounted_targets(self.rewards, self.dones, values.detach(), bootstrap,
                                                 config.gamma, config.gae_lambda)
        log_probs = torch.log_softmax(logits, 2)
        policy_loss = -(log_probs.gather(2, self.actions.unsqueeze(2)).squeeze(2) * advantages).sum()
        entropy = -(log_probs.exp() * log_probs).sum()
        value_loss = 0.5 * ((returns - values) ** 2).sum()
        loss = policy_loss + config.value_loss_coef * value_loss - config.entropy_coef * entropy
        logged = (policy_loss.item(), value_loss.item(), entropy.item())
        if config.pixel_control:  # UNREAL's n-step Q-learning on the rollout, as a3c.pixel_control states it
            hidden = torch.cat([r[2] for r in recorded])  # (T B, hidden), with graph
            q = self.model.net.pixel_q(hidden)
            q = q.view(*self.actions.shape, *q.shape[1:])  # (T, B, A, n, n)
            with torch.no_grad():
                targets = pixel_control_targets(self.pixel_control_rewards(), self.dones,
                                                self.model.net.pixel_q(self.final_hidden), config.pixel_control_gamma)
            taken = q.gather(2, self.actions.view(*self.actions.shape, 1, 1, 1).expand(-1, -1, 1, *q.shape[3:]))
            pixel_loss = config.pixel_control_coef * 0.5 * ((targets - taken.squeeze(2)) ** 2).sum()
            loss = loss + pixel_loss
            logged += (pixel_loss.item(),)
        loss.backward()
        grads = [p.grad for p in self.model.parameters()]
        return grads, logged


def shared_network(n_actions: int, optimizer: str, lr: float, slots: int, **sizes):
    """The global torch.nn network (``sizes``: a3c.model.network_settings) in shared memory
    and its shared optimizer."""
    net = TorchActorCritic(n_actions, **sizes).share_memory()
    params = [p.data for p in net.parameters()]  # the optimizer updates them in place
    return net, make_optimizer(optimizer, params, lr, slots=slots)
