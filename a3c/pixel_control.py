"""UNREAL's pixel-control auxiliary task (Jaderberg et al. 2017): pseudo-rewards and loss.

Each step's pseudo-reward is, per cell of an n x n grid of 4x4 pixels over the centre of
the view, the mean absolute change of those pixels from this step's view to the next:
a map of where the screen changed. The network's pixel-control head (``a3c.model``)
gives Q_c(s, a) for every cell c and action a, learnt by n-step Q-learning on the
rollout the policy played, with its own discount gamma_pc (0.9 in the paper):
  R_T = max_a Q_c(s_T, a)          (the view after the rollout's last step; 0 after an end)
  R_t = r_c,t + gamma_pc (1 - d_t) R_{t+1}
  loss = coef 0.5 sum_{t, n, c} (R_t - Q_c(s_t, a_t))^2,   R held constant
  dL/dQ_c(s_t, a) = -coef (R_t - Q_c(s_t, a_t)) [a = a_t]
Learning to predict which actions change which parts of the screen trains the shared
convolutions and core on every step, whatever the game's rewards. The paper learns it on
replayed sequences; here it is the rollout's own (on-policy, no extra forward of the
convolutions or the core).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

CELL = 4  # pixels per side of a grid cell (the paper's 4x4 cells of an 80x80 crop at 84x84)


def grid_cells(frame_size: int) -> int:
    """n, the grid's cells per side for a square view of ``frame_size`` pixels: the largest
    even n whose 4n pixels leave at least 2 on each side (20 at 84x84: the paper's
    central 80x80; 8 at 42x42). Even, because the head's transposed convolution (4x4,
    stride 2) makes 2 m + 2 cells from m x m maps."""
    return 2 * (max(frame_size - 2 * 2, 0) // (2 * CELL))


def pixel_change_rewards(views: torch.Tensor, cells: int) -> torch.Tensor:
    """views (T + 1, N, S, S), the view of each step and the one after the last
    -> pseudo-rewards (T, N, n, n): per cell of the central 4n x 4n pixels, the mean
    absolute change from step t's view to step t + 1's."""
    side, crop = views.shape[-1], CELL * cells
    start = (side - crop) // 2
    centre = views[..., start:start + crop, start:start + crop]
    change = (centre[1:] - centre[:-1]).abs()
    steps, n = change.shape[:2]
    return F.avg_pool2d(change.reshape(steps * n, 1, crop, crop), CELL).view(steps, n, cells, cells)


@dataclass
class PixelControlTerms:
    """The pixel-control loss's value (for logging) and its gradient with respect to Q."""

    loss: float
    grad_q: torch.Tensor  # (T, N, A, n, n)


def pixel_control_targets(rewards: torch.Tensor, dones: torch.Tensor, bootstrap_q: torch.Tensor,
                          gamma: float) -> torch.Tensor:
    """R (T, N, n, n) of the module docstring from pseudo-rewards (T, N, n, n), dones
    (T, N) and the bootstrap's Q (N, A, n, n) (its maximum over actions starts the recursion)."""
    returns = torch.empty_like(rewards)
    following = bootstrap_q.max(1).values
    for t in range(rewards.shape[0] - 1, -1, -1):
        following = rewards[t] + gamma * (1.0 - dones[t]).view(-1, 1, 1) * following
        returns[t] = following
    return returns


def pixel_control_loss(q: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor,
                       bootstrap_q: torch.Tensor, *, gamma: float, coef: float) -> PixelControlTerms:
    """q (T, N, A, n, n) of the rollout's steps, actions (T, N) int64, pseudo-rewards
    (T, N, n, n), dones (T, N), bootstrap_q (N, A, n, n) -> the loss and dL/dQ."""
    returns = pixel_control_targets(rewards, dones, bootstrap_q, gamma)
    index = actions.view(*actions.shape, 1, 1, 1).expand(-1, -1, 1, *q.shape[3:])
    error = returns - q.gather(2, index).squeeze(2)  # R - Q(s_t, a_t), per cell
    grad_q = torch.zeros_like(q).scatter_(2, index, (-coef * error).unsqueeze(2))
    return PixelControlTerms(loss=coef * 0.5 * float((error * error).sum()), grad_q=grad_q)
