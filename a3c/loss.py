"""The A3C loss of one rollout and its gradients with respect to logits and values.

For a rollout of T steps (N parallel envs), rewards r_t, done flags d_t (the episode
ended after step t), values V_t and a bootstrap V_T (zero after a terminal):
  returns     R_t = r_t + gamma (1 - d_t) R_{t+1},            R_T = V_T
  TD errors   delta_t = r_t + gamma (1 - d_t) V_{t+1} - V_t
  advantages  A_t = delta_t + gamma lambda (1 - d_t) A_{t+1}  (GAE; lambda = 1: R_t - V_t)
  loss = -sum_t log pi(a_t|s_t) A_t  - beta sum_t H(pi(.|s_t))  + c_v 0.5 sum_t (R_t - V_t)^2
with A_t and R_t held constant. With ``normalize_advantages`` the policy term uses
(A_t - mean A) / (std A + 1e-8) over the rollout's T x N steps (still a constant; the
value targets R_t are unchanged). Gradients, by hand:
  dL/dV_t      = -c_v (R_t - V_t)
  dL/dlogits_t = -A_t (onehot(a_t) - pi_t)  - beta dH/dlogits_t

A replay of the rollout with newer weights (``epochs`` > 1) uses PPO's clipped
surrogate in place of the policy term, with rho_t = pi(a_t|s_t) / pi_old(a_t|s_t) the
ratio to the policy that played the rollout and A_t, R_t those of the rollout:
  policy = -sum_t min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t)
  d policy / d log pi(a_t|s_t) = -rho_t A_t where the unclipped term is the minimum, else 0
(the clipped term is the smaller one only when A_t > 0 and rho_t > 1 + eps, or A_t < 0
and rho_t < 1 - eps: the update stops pushing a probability further from the old one).
At rho_t = 1 its gradient is the A3C policy term's (the loss values differ: sum rho A
against sum log pi A).

A replay of an older rollout (``replay_ratio``, a3c.replay) uses V-trace's targets
(Espeholt et al. 2018, ``vtrace_targets``) in place of R_t and A_t: with
rho_t = pi(a_t|s_t) / mu(a_t|s_t), the ratio of the current policy to the one that played
the step, its truncations rhobar_t = min(rho_clip, rho_t) and c_t = lambda min(c_clip, rho_t),
and V the current values (V_T the bootstrap):
  delta_t     = rhobar_t (r_t + gamma (1 - d_t) V_{t+1} - V_t)
  v_t - V_t   = delta_t + gamma (1 - d_t) c_t (v_{t+1} - V_{t+1}),   v_T = V_T
  A_t         = rhobar_t (r_t + gamma (1 - d_t) v_{t+1} - V_t)
the value regressed on v_t and the policy term -sum_t log pi(a_t|s_t) A_t, both held
constant, so the gradients are the A3C ones above with R_t = v_t. On the policy's own
rollout (rho_t = 1, both clips at least 1) v_t is the lambda-return and, with lambda = 1,
A_t = R_t - V_t: the A3C update.

Self-imitation (Oh et al. 2018, ``self_imitation_loss``) learns from past steps whose
return R_i (to the end of their life, as above with lambda = 1: no bootstrap but a time
limit's, added to its last reward) beat the value the network now gives them; with
w_i = max(R_i - V_i, 0), held constant:
  loss = -sum_i log pi(a_i|s_i) w_i  + c_s 0.5 sum_i w_i^2
  dL/dlogits_i = -w_i (onehot(a_i) - pi_i),   dL/dV_i = -c_s w_i
(a step the network already values at R_i or more contributes nothing). With a clip k
(the official code's, 1 there), w_i = min(max(R_i - V_i, 0), k) in both gradients: the
value term is then a Huber loss, k (s - k / 2) for a shortfall s = R_i - V_i beyond k.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from layers.softmax import entropy, entropy_backward, log_softmax, log_softmax_backward


@dataclass
class LossTerms:
    """Loss values for logging (sums over the rollout) and the gradients to back-propagate."""

    policy: float
    value: float
    entropy: float
    grad_logits: torch.Tensor  # (T, N, A)
    grad_values: torch.Tensor  # (T, N, 1)


def discounted_targets(rewards, dones, values, bootstrap, gamma: float, gae_lambda: float):
    """Returns R (T, N) and GAE advantages A (T, N); all inputs (T, N) but bootstrap (N,)."""
    steps = rewards.shape[0]
    returns = torch.empty_like(rewards)
    advantages = torch.empty_like(rewards)
    next_return, next_value = bootstrap, bootstrap
    next_advantage = torch.zeros_like(bootstrap)
    for t in range(steps - 1, -1, -1):
        not_done = 1.0 - dones[t]
        next_return = rewards[t] + gamma * not_done * next_return
        delta = rewards[t] + gamma * not_done * next_value - values[t]
        next_advantage = delta + gamma * gae_lambda * not_done * next_advantage
        returns[t], advantages[t] = next_return, next_advantage
        next_value = values[t]
    return returns, advantages


def vtrace_targets(log_rhos, rewards, dones, values, bootstrap, *, gamma: float, gae_lambda: float = 1.0,
                   rho_clip: float = 1.0, c_clip: float = 1.0):
    """V-trace's value targets v (T, N) and policy advantages A (T, N), the ratio's
    truncation included, from log(pi / mu) of the taken actions, rewards, dones and the
    current values (T, N) and the bootstrap V(s_T) (N,): the module docstring's recursion."""
    rhos = log_rhos.exp()
    clipped_rhos = rhos.clamp(max=rho_clip)
    traces = gae_lambda * rhos.clamp(max=c_clip)
    not_done = 1.0 - dones
    next_values = torch.cat([values[1:], bootstrap.unsqueeze(0)])
    deltas = clipped_rhos * (rewards + gamma * not_done * next_values - values)
    corrections = torch.empty_like(values)  # v_t - V_t
    following = torch.zeros_like(bootstrap)
    for t in range(values.shape[0] - 1, -1, -1):
        following = deltas[t] + gamma * not_done[t] * traces[t] * following
        corrections[t] = following
    targets = values + corrections
    next_targets = torch.cat([targets[1:], bootstrap.unsqueeze(0)])
    advantages = clipped_rhos * (rewards + gamma * not_done * next_targets - values)
    return targets, advantages


ADVANTAGE_EPS = 1e-8  # a rollout whose advantages are all equal gets zeros, not a division by zero


def normalized(advantages: torch.Tensor) -> torch.Tensor:
    """Mean 0 and (population) standard deviation 1 over every element."""
    return (advantages - advantages.mean()) / (advantages.std(correction=0) + ADVANTAGE_EPS)


def a3c_loss(logits, values, actions, rewards, dones, bootstrap, *, gamma: float, gae_lambda: float,
             entropy_coef: float, value_loss_coef: float, normalize_advantages: bool = False) -> LossTerms:
    """logits (T, N, A), values (T, N, 1), actions (T, N) int64, rewards and dones (T, N),
    bootstrap (N,) = V(s_T) (zero where the last step was terminal)."""
    returns, advantages = rollout_targets(values, rewards, dones, bootstrap, gamma=gamma, gae_lambda=gae_lambda,
                                          normalize_advantages=normalize_advantages)
    return surrogate_loss(logits, values, actions, returns, advantages, entropy_coef=entropy_coef,
                          value_loss_coef=value_loss_coef)


def rollout_targets(values, rewards, dones, bootstrap, *, gamma: float, gae_lambda: float,
                    normalize_advantages: bool = False):
    """The value targets R (T, N) and the advantages the policy term uses (T, N),
    normalised over the rollout when asked; values (T, N, 1)."""
    returns, advantages = discounted_targets(rewards, dones, values.squeeze(2), bootstrap, gamma, gae_lambda)
    return returns, (normalized(advantages) if normalize_advantages else advantages)


def taken_log_probs(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log pi(a_t|s_t) (T, N) of the actions taken, from logits (T, N, A)."""
    steps, n, n_actions = logits.shape
    return log_softmax(logits.reshape(steps * n, n_actions)).gather(1, actions.reshape(-1, 1)).view(steps, n)


def surrogate_loss(logits, values, actions, returns, advantages, *, entropy_coef: float, value_loss_coef: float,
                   old_log_probs: torch.Tensor | None = None, clip_range: float = 0.1) -> LossTerms:
    """The loss of the module docstring for fixed targets: returns and advantages (T, N).

    ``old_log_probs`` (T, N): log pi_old(a_t|s_t) of the policy that played the rollout;
    None when ``logits`` are that policy's own (the ratio is 1: the A3C policy term)."""
    steps, n, n_actions = logits.shape
    values_flat = values.squeeze(2)
    flat_logits = logits.reshape(steps * n, n_actions)
    log_probs = log_softmax(flat_logits)
    taken = actions.reshape(-1, 1)
    log_prob_taken = log_probs.gather(1, taken).squeeze(1)
    entropies = entropy(log_probs)
    flat_adv = advantages.reshape(-1)

    if old_log_probs is None:
        policy_loss = -(log_prob_taken * flat_adv).sum()
        grad_taken = -flat_adv
    else:
        ratio = (log_prob_taken - old_log_probs.reshape(-1)).exp()
        clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
        policy_loss = -torch.minimum(ratio * flat_adv, clipped * flat_adv).sum()
        held = ((flat_adv > 0) & (ratio > 1.0 + clip_range)) | ((flat_adv < 0) & (ratio < 1.0 - clip_range))
        grad_taken = torch.where(held, torch.zeros_like(ratio), -ratio * flat_adv)
    entropy_sum = entropies.sum()
    value_error = returns - values_flat
    value_loss = 0.5 * (value_error * value_error).sum()

    # d loss / d log pi: at the taken action only
    grad_log_probs = torch.zeros_like(log_probs).scatter_(1, taken, grad_taken.unsqueeze(1))
    grad_logits = log_softmax_backward(grad_log_probs, log_probs.exp())
    grad_logits -= entropy_backward(torch.full_like(entropies, entropy_coef), log_probs)
    grad_values = (-value_loss_coef * value_error).unsqueeze(2)
    return LossTerms(
        policy=policy_loss.item(), value=value_loss.item(), entropy=entropy_sum.item(),
        grad_logits=grad_logits.view(steps, n, n_actions), grad_values=grad_values,
    )


@dataclass
class ImitationTerms:
    """The self-imitation loss's values for logging and its gradients (a batch of B steps)."""

    policy: float
    value: float
    imitated: int  # steps of the batch whose return beats their value (the others give no gradient)
    grad_logits: torch.Tensor  # (1, B, A): one step of B rows, as ActorCritic.backward takes it
    grad_values: torch.Tensor  # (1, B, 1)


def self_imitation_loss(logits, values, actions, returns, *, value_coef: float,
                        clip: float | None = None) -> ImitationTerms:
    """The self-imitation loss of the module docstring: logits (B, A), values (B, 1),
    actions (B,) int64 and returns (B,) of B replayed steps; ``clip`` k, or None."""
    log_probs = log_softmax(logits)
    shortfall = (returns - values.squeeze(1)).clamp(min=0.0)
    gap = shortfall if clip is None else shortfall.clamp(max=clip)  # w_i: held constant
    log_prob_taken = log_probs.gather(1, actions.view(-1, 1)).squeeze(1)
    grad_log_probs = torch.zeros_like(log_probs).scatter_(1, actions.view(-1, 1), -gap.unsqueeze(1))
    grad_logits = log_softmax_backward(grad_log_probs, log_probs.exp())
    return ImitationTerms(
        policy=-(log_prob_taken * gap).sum().item(), value=(gap * (shortfall - 0.5 * gap)).sum().item(),
        imitated=int((gap > 0).sum()), grad_logits=grad_logits.unsqueeze(0),
        grad_values=(-value_coef * gap).view(1, -1, 1),
    )
