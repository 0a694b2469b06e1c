"""The whole A3C update: model + loss gradients equal an autograd reference (float64)."""
from __future__ import annotations

import math

import pytest
import torch

from a3c.loss import a3c_loss, discounted_targets, normalized, surrogate_loss, taken_log_probs, vtrace_targets
from a3c.model import ActorCritic
from a3c.pixel_control import pixel_control_loss
from tests.autograd_reference import TorchActorCritic
from tests.helpers import assert_close

F64 = torch.float64
ACTIONS = 18
HYPER = dict(gamma=0.99, gae_lambda=0.95, entropy_coef=0.01, value_loss_coef=0.5)


def reference_targets(rewards, dones, values, bootstrap, gamma, gae_lambda):
    """Textbook recursions, one env at a time, in plain Python floats."""
    steps, n = rewards.shape
    returns, advantages = torch.zeros(steps, n, dtype=F64), torch.zeros(steps, n, dtype=F64)
    for env in range(n):
        ret, adv, next_value = float(bootstrap[env]), 0.0, float(bootstrap[env])
        for t in reversed(range(steps)):
            keep = 1.0 - float(dones[t, env])
            ret = float(rewards[t, env]) + gamma * keep * ret
            delta = float(rewards[t, env]) + gamma * keep * next_value - float(values[t, env])
            adv = delta + gamma * gae_lambda * keep * adv
            returns[t, env], advantages[t, env] = ret, adv
            next_value = float(values[t, env])
    return returns, advantages


def reference_pixel_targets(rewards, dones, bootstrap_q, gamma):
    """Pixel control's n-step Q-learning targets, one env at a time: (T, N, n, n)."""
    steps, n = dones.shape
    targets = torch.zeros_like(rewards)
    for env in range(n):
        target = bootstrap_q[env].max(0).values
        for t in reversed(range(steps)):
            target = rewards[t, env] + gamma * (1.0 - float(dones[t, env])) * target
            targets[t, env] = target
    return targets


def run_update(steps, batch, dones, masks, bootstrap_zero, seed=0, normalize_advantages=False, network=None,
               pixel=None):
    """``network``: sizes other than the default (frame_stack, frame_size, conv_channels, hidden_size, core,
    conv_stack); ``pixel``: {"coef", "gamma"} of a pixel-control loss added to the update."""
    torch.manual_seed(seed)
    network = {**(network or {}), **({"pixel_control": True} if pixel else {})}
    model = ActorCritic(ACTIONS, seed=seed, dtype=F64, **network)
    reference = TorchActorCritic(ACTIONS, **network).double().load_from(model)
    side = network.get("frame_size", 42)
    frames = torch.rand(steps, batch, network.get("frame_stack", 1), side, side, dtype=F64)
    actions = torch.randint(0, ACTIONS, (steps, batch))
    rewards = torch.randint(-1, 2, (steps, batch)).to(F64)

    # reference: autograd through the same network and loss
    hidden = network.get("hidden_size", 256)
    state = (torch.zeros(batch, hidden, dtype=F64), torch.zeros(batch, hidden, dtype=F64))
    logits_ref, values_ref, hidden_ref = [], [], []
    for t in range(steps):
        logits, values, state = reference(frames[t], state, masks[t])
        logits_ref.append(logits)
        values_ref.append(values)
        hidden_ref.append(reference.last_hidden)
    logits_ref, values_ref = torch.stack(logits_ref), torch.stack(values_ref).squeeze(2)
    bootstrap = torch.zeros(batch, dtype=F64) if bootstrap_zero else torch.randn(batch, dtype=F64)
    returns, advantages = reference_targets(rewards, dones, values_ref.detach(), bootstrap,
                                            HYPER["gamma"], HYPER["gae_lambda"])
    if normalize_advantages:  # over the whole T x N rollout, population standard deviation
        advantages = (advantages - advantages.mean()) / (advantages.std(unbiased=False) + 1e-8)
    log_probs = torch.log_softmax(logits_ref, 2)
    policy_loss = -(log_probs.gather(2, actions.unsqueeze(2)).squeeze(2) * advantages).sum()
    entropy = -(log_probs.exp() * log_probs).sum()
    value_loss = 0.5 * ((returns - values_ref) ** 2).sum()
    total = policy_loss + HYPER["value_loss_coef"] * value_loss - HYPER["entropy_coef"] * entropy
    if pixel:  # pseudo-rewards and the bootstrap's Q are data to the loss
        q_ref = torch.stack([reference.pixel_q(h) for h in hidden_ref])  # (T, N, A, n, n)
        cells = q_ref.shape[-1]
        pixel_rewards = torch.rand(steps, batch, cells, cells, dtype=F64)
        bootstrap_q = torch.randn(batch, ACTIONS, cells, cells, dtype=F64)
        pixel_targets = reference_pixel_targets(pixel_rewards, dones, bootstrap_q, pixel["gamma"])
        taken_q = q_ref.gather(2, actions.view(steps, batch, 1, 1, 1).expand(-1, -1, 1, cells, cells)).squeeze(2)
        pixel_loss = pixel["coef"] * 0.5 * ((pixel_targets - taken_q) ** 2).sum()
        total = total + pixel_loss
    total.backward()

    # ours: record the rollout, loss gradients by hand, backward by hand
    state = model.initial_state(batch)
    logits_seq, values_seq = [], []
    for t in range(steps):
        logits, values, state = model.step(frames[t], state, masks[t], record=True)
        logits_seq.append(logits)
        values_seq.append(values)
    terms = a3c_loss(torch.stack(logits_seq), torch.stack(values_seq), actions, rewards, dones, bootstrap,
                     **HYPER, normalize_advantages=normalize_advantages)
    grad_pixel_q = None
    if pixel:
        pixel_terms = pixel_control_loss(model.recorded_pixel_q(), actions, pixel_rewards, dones, bootstrap_q,
                                         gamma=pixel["gamma"], coef=pixel["coef"])
        assert pixel_terms.loss == pytest.approx(pixel_loss.item(), rel=1e-10)
        grad_pixel_q = pixel_terms.grad_q
    model.backward(terms.grad_logits, terms.grad_values, grad_pixel_q)

    assert terms.policy == pytest.approx(policy_loss.item(), rel=1e-10, abs=1e-10)
    assert terms.value == pytest.approx(value_loss.item(), rel=1e-10)
    assert terms.entropy == pytest.approx(entropy.item(), rel=1e-10)
    reference_grads = reference.gradients_like(model)
    for name, param in model.named_parameters():
        assert_close(param.grad, reference_grads[name], what=name)


def test_rollout_without_terminal_bootstraps_from_the_value():
    steps = 20
    dones = torch.zeros(steps, 1, dtype=F64)
    run_update(steps, 1, dones, [None] * steps, bootstrap_zero=False)


def test_rollout_that_ends_at_a_terminal():
    steps = 13  # an episode ended at step 13: a short rollout with V(s_T) = 0
    dones = torch.zeros(steps, 1, dtype=F64)
    dones[-1] = 1.0
    run_update(steps, 1, dones, [None] * steps, bootstrap_zero=True, seed=1)


def test_several_envs_with_episodes_ending_inside_the_rollout():
    steps, batch = 10, 3
    dones = torch.zeros(steps, batch, dtype=F64)
    dones[3, 0] = dones[6, 2] = dones[9, 1] = 1.0
    masks = [None] + [(1.0 - dones[t - 1]).unsqueeze(1) for t in range(1, steps)]
    run_update(steps, batch, dones, masks, bootstrap_zero=False, seed=2)


def test_normalized_advantages_with_a_terminal_inside_and_at_the_last_step():
    steps, batch = 9, 3
    dones = torch.zeros(steps, batch, dtype=F64)
    dones[4, 0] = dones[8, 1] = 1.0
    masks = [None] + [(1.0 - dones[t - 1]).unsqueeze(1) for t in range(1, steps)]
    run_update(steps, batch, dones, masks, bootstrap_zero=False, seed=5, normalize_advantages=True)


@pytest.mark.parametrize("network", [
    {"conv_channels": 8, "hidden_size": 24},
    {"frame_size": 50, "conv_channels": 16, "hidden_size": 40},
    {"frame_stack": 3, "conv_channels": 8, "hidden_size": 24},
    {"core": "feedforward", "frame_stack": 4, "conv_channels": 8, "hidden_size": 24},
    {"core": "feedforward", "frame_size": 50, "conv_channels": 16, "hidden_size": 40},
    {"core": "layernorm_lstm", "frame_stack": 2, "conv_channels": 8, "hidden_size": 24},
    {"conv_stack": "nature", "frame_size": 84, "conv_channels": 8, "hidden_size": 24},
    {"conv_stack": "nature", "core": "feedforward", "frame_stack": 4, "frame_size": 40, "conv_channels": 6,
     "hidden_size": 16},
])
def test_other_network_sizes(network):
    steps, batch = 6, 2
    dones = torch.zeros(steps, batch, dtype=F64)
    dones[2, 1] = 1.0
    masks = [None] + [(1.0 - dones[t - 1]).unsqueeze(1) for t in range(1, steps)]
    run_update(steps, batch, dones, masks, bootstrap_zero=False, seed=6, network=network)


@pytest.mark.parametrize("network", [{"conv_channels": 8, "hidden_size": 24, "frame_size": 84},
                                     {"core": "feedforward", "frame_stack": 2, "conv_channels": 8, "hidden_size": 24}])
def test_pixel_control_with_a_life_lost_mid_rollout_and_an_episode_ending_at_the_last_step(network):
    """A lost life is a done flag for both losses (the game and its state go on); an
    episode's end at the last step leaves the bootstrap unused by both."""
    steps, batch = 7, 3
    dones = torch.zeros(steps, batch, dtype=F64)
    dones[3, 0] = 1.0  # a life lost: no mask, the state goes on
    dones[2, 1] = 1.0  # an episode's end: the state restarts at the next step
    dones[steps - 1, 2] = 1.0  # an episode's end at the rollout's last step
    masks = [None] * steps
    masks[3] = torch.tensor([[1.0], [0.0], [1.0]], dtype=F64)
    run_update(steps, batch, dones, masks, bootstrap_zero=False, seed=7, network=network,
               pixel={"coef": 0.3, "gamma": 0.8})


def test_normalized_advantages_have_mean_zero_and_unit_spread_and_survive_a_constant_rollout():
    advantages = torch.randn(20, 8, dtype=F64) * 7 + 3
    scaled = normalized(advantages)
    assert scaled.mean().item() == pytest.approx(0.0, abs=1e-12)
    assert scaled.std(correction=0).item() == pytest.approx(1.0, rel=1e-6)
    assert torch.equal(normalized(torch.full((5, 2), 4.0, dtype=F64)), torch.zeros(5, 2, dtype=F64))


def test_gae_with_lambda_one_is_return_minus_value():
    torch.manual_seed(3)
    rewards, values = torch.randn(6, 2, dtype=F64), torch.randn(6, 2, dtype=F64)
    dones = torch.zeros(6, 2, dtype=F64)
    dones[2, 1] = 1.0
    returns, advantages = discounted_targets(rewards, dones, values, torch.randn(2, dtype=F64), 0.9, 1.0)
    assert_close(advantages, returns - values, 1e-12, "advantages")


def test_targets_match_the_textbook_recursion():
    torch.manual_seed(4)
    rewards, values = torch.randn(7, 3, dtype=F64), torch.randn(7, 3, dtype=F64)
    dones = (torch.rand(7, 3) < 0.2).to(F64)
    bootstrap = torch.randn(3, dtype=F64)
    ours = discounted_targets(rewards, dones, values, bootstrap, 0.97, 0.9)
    expected = reference_targets(rewards, dones, values, bootstrap, 0.97, 0.9)
    assert_close(ours[0], expected[0], 1e-12, "returns")
    assert_close(ours[1], expected[1], 1e-12, "advantages")


@pytest.mark.parametrize("steps,batch,clip_range,seed", [(5, 3, 0.1, 10), (12, 1, 0.2, 11), (3, 8, 0.05, 12)])
def test_clipped_surrogate_gradients_equal_autograd(steps, batch, clip_range, seed):
    """The replays' loss, by hand, against autograd of PPO's min(rho A, clip(rho) A), with
    the old policy drawn so that ratios fall inside and on both sides of the clip."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(steps, batch, ACTIONS, dtype=F64, generator=generator)
    values = torch.randn(steps, batch, 1, dtype=F64, generator=generator)
    actions = torch.randint(0, ACTIONS, (steps, batch), generator=generator)
    returns = torch.randn(steps, batch, dtype=F64, generator=generator)
    advantages = torch.randn(steps, batch, dtype=F64, generator=generator)
    new_taken = taken_log_probs(logits, actions)
    old_log_probs = new_taken - torch.empty(steps, batch, dtype=F64).uniform_(-0.4, 0.4, generator=generator)

    logits_ref, values_ref = logits.clone().requires_grad_(), values.clone().requires_grad_()
    log_probs = torch.log_softmax(logits_ref, 2)
    ratio = (log_probs.gather(2, actions.unsqueeze(2)).squeeze(2) - old_log_probs).exp()
    policy = -torch.minimum(ratio * advantages, ratio.clamp(1 - clip_range, 1 + clip_range) * advantages).sum()
    entropy = -(log_probs.exp() * log_probs).sum()
    value = 0.5 * ((returns - values_ref.squeeze(2)) ** 2).sum()
    (policy + HYPER["value_loss_coef"] * value - HYPER["entropy_coef"] * entropy).backward()

    terms = surrogate_loss(logits, values, actions, returns, advantages, entropy_coef=HYPER["entropy_coef"],
                           value_loss_coef=HYPER["value_loss_coef"], old_log_probs=old_log_probs,
                           clip_range=clip_range)
    assert terms.policy == pytest.approx(policy.item(), rel=1e-10, abs=1e-10)
    assert terms.value == pytest.approx(value.item(), rel=1e-10)
    assert terms.entropy == pytest.approx(entropy.item(), rel=1e-10)
    assert_close(terms.grad_logits, logits_ref.grad, what="logits")
    assert_close(terms.grad_values, values_ref.grad, what="values")
    held = ((advantages > 0) & (ratio > 1 + clip_range)) | ((advantages < 0) & (ratio < 1 - clip_range))
    assert 0 < int(held.sum()) < held.numel()  # the case covers clipped and unclipped steps


def test_at_ratio_one_the_clipped_surrogate_has_the_a3c_policy_gradient():
    """Same gradients; the loss values differ (sum of rho A against sum of log pi A)."""
    generator = torch.Generator().manual_seed(13)
    logits = torch.randn(6, 4, ACTIONS, dtype=F64, generator=generator)
    values = torch.randn(6, 4, 1, dtype=F64, generator=generator)
    actions = torch.randint(0, ACTIONS, (6, 4), generator=generator)
    returns, advantages = torch.randn(2, 6, 4, dtype=F64, generator=generator)
    common = dict(entropy_coef=0.01, value_loss_coef=0.5)
    a3c = surrogate_loss(logits, values, actions, returns, advantages, **common)
    replay = surrogate_loss(logits, values, actions, returns, advantages, **common,
                            old_log_probs=taken_log_probs(logits, actions), clip_range=0.1)
    assert replay.policy == pytest.approx(-advantages.sum().item(), rel=1e-12)
    assert_close(replay.grad_logits, a3c.grad_logits, 1e-12, "logits")


def reference_vtrace(log_rhos, rewards, dones, values, bootstrap, gamma, gae_lambda, rho_clip, c_clip):
    """V-trace as Espeholt et al. (2018) write it, one env at a time in plain Python floats:
    v_s = V(x_s) + sum_{t>=s} gamma^(t-s) (prod_{s<=i<t} c_i) rhobar_t delta_t V, the sum and
    the product stopping at a done flag; the policy's advantage rhobar_s (r_s + gamma v_{s+1} - V(x_s))."""
    steps, n = rewards.shape
    targets, advantages = torch.zeros(steps, n, dtype=F64), torch.zeros(steps, n, dtype=F64)
    for env in range(n):
        value = [float(values[t, env]) for t in range(steps)] + [float(bootstrap[env])]
        rho = [math.exp(float(log_rhos[t, env])) for t in range(steps)]
        keep = [1.0 - float(dones[t, env]) for t in range(steps)]
        for s in range(steps):
            total, weight = value[s], 1.0  # weight: gamma^(t-s) prod c_i, zero past a done
            for t in range(s, steps):
                delta = min(rho_clip, rho[t]) * (float(rewards[t, env]) + gamma * keep[t] * value[t + 1] - value[t])
                total += weight * delta
                weight *= gamma * keep[t] * gae_lambda * min(c_clip, rho[t])
            targets[s, env] = total
        for s in range(steps):
            following = float(targets[s + 1, env]) if s + 1 < steps else value[steps]
            advantages[s, env] = min(rho_clip, rho[s]) * (float(rewards[s, env]) + gamma * keep[s] * following
                                                          - value[s])
    return targets, advantages


def off_policy_rollout(steps, batch, seed, spread=0.6):
    """Rewards, dones (about one in five), values, a bootstrap and log(pi / mu) spread both
    sides of 0, so that ratios fall under and over a clip of 1."""
    generator = torch.Generator().manual_seed(seed)
    rewards = torch.randint(-1, 2, (steps, batch), generator=generator).to(F64)
    dones = (torch.rand(steps, batch, generator=generator) < 0.2).to(F64)
    values = torch.randn(steps, batch, dtype=F64, generator=generator)
    bootstrap = torch.randn(batch, dtype=F64, generator=generator)
    log_rhos = torch.empty(steps, batch, dtype=F64).uniform_(-spread, spread, generator=generator)
    return log_rhos, rewards, dones, values, bootstrap


@pytest.mark.parametrize("steps,batch,gamma,gae_lambda,rho_clip,c_clip,seed", [
    (5, 3, 0.99, 1.0, 1.0, 1.0, 20), (12, 2, 0.9, 0.95, 1.0, 1.0, 21), (1, 4, 0.99, 1.0, 1.0, 1.0, 22),
    (8, 5, 0.97, 1.0, 2.0, 0.5, 23), (20, 8, 0.99, 0.9, 0.7, 1.3, 24)])
def test_vtrace_targets_match_the_papers_sum(steps, batch, gamma, gae_lambda, rho_clip, c_clip, seed):
    log_rhos, rewards, dones, values, bootstrap = off_policy_rollout(steps, batch, seed)
    ours = vtrace_targets(log_rhos, rewards, dones, values, bootstrap, gamma=gamma, gae_lambda=gae_lambda,
                          rho_clip=rho_clip, c_clip=c_clip)
    expected = reference_vtrace(log_rhos, rewards, dones, values, bootstrap, gamma, gae_lambda, rho_clip, c_clip)
    assert_close(ours[0], expected[0], 1e-12, "targets")
    assert_close(ours[1], expected[1], 1e-12, "advantages")


@pytest.mark.parametrize("gae_lambda", [1.0, 0.9])
def test_on_the_policys_own_rollout_vtrace_gives_the_a3c_targets(gae_lambda):
    """rho = 1 everywhere: the targets are the lambda-returns V + GAE, and with lambda = 1
    the advantages are R - V, the A3C update's."""
    _, rewards, dones, values, bootstrap = off_policy_rollout(9, 4, 25)
    targets, advantages = vtrace_targets(torch.zeros(9, 4, dtype=F64), rewards, dones, values, bootstrap,
                                         gamma=0.95, gae_lambda=gae_lambda)
    returns, gae = discounted_targets(rewards, dones, values, bootstrap, 0.95, gae_lambda)
    assert_close(targets, values + gae, 1e-12, "targets")
    if gae_lambda == 1.0:
        assert_close(targets, returns, 1e-12, "targets")
        assert_close(advantages, gae, 1e-12, "advantages")


def test_a_step_the_current_policy_would_not_take_moves_little_and_stops_the_trace():
    """rho near 0 at one step: its own TD error barely counts, and what lies after it does
    not reach the steps before (the target of the step before is its own TD target)."""
    log_rhos, rewards, dones, values, bootstrap = off_policy_rollout(4, 1, 26)
    dones.zero_()
    log_rhos[:] = 0.0
    log_rhos[2] = -50.0
    targets, advantages = vtrace_targets(log_rhos, rewards, dones, values, bootstrap, gamma=0.9)
    assert abs(float(advantages[2, 0])) < 1e-12 and abs(float(targets[2, 0] - values[2, 0])) < 1e-12
    assert_close(targets[1], rewards[1] + 0.9 * values[2], 1e-12, "target before the cut trace")


@pytest.mark.parametrize("steps,batch,seed", [(5, 3, 30), (12, 1, 31), (3, 8, 32)])
def test_vtrace_replay_gradients_equal_autograd(steps, batch, seed):
    """The replay's loss by hand (V-trace's targets, held constant, in the A3C loss)
    against autograd, with ratios under and over the clips."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(steps, batch, ACTIONS, dtype=F64, generator=generator)
    values = torch.randn(steps, batch, 1, dtype=F64, generator=generator)
    actions = torch.randint(0, ACTIONS, (steps, batch), generator=generator)
    _, rewards, dones, _, bootstrap = off_policy_rollout(steps, batch, seed)
    behaviour = taken_log_probs(logits, actions) - torch.empty(steps, batch, dtype=F64).uniform_(
        -0.6, 0.6, generator=generator)

    logits_ref, values_ref = logits.clone().requires_grad_(), values.clone().requires_grad_()
    log_probs = torch.log_softmax(logits_ref, 2)
    taken = log_probs.gather(2, actions.unsqueeze(2)).squeeze(2)
    targets, advantages = reference_vtrace((taken - behaviour).detach(), rewards, dones, values.squeeze(2), bootstrap,
                                           HYPER["gamma"], 1.0, 1.0, 1.0)
    policy = -(taken * advantages).sum()
    entropy = -(log_probs.exp() * log_probs).sum()
    value = 0.5 * ((targets - values_ref.squeeze(2)) ** 2).sum()
    (policy + HYPER["value_loss_coef"] * value - HYPER["entropy_coef"] * entropy).backward()

    ours_targets, ours_advantages = vtrace_targets(taken_log_probs(logits, actions) - behaviour, rewards, dones,
                                                   values.squeeze(2), bootstrap, gamma=HYPER["gamma"])
    terms = surrogate_loss(logits, values, actions, ours_targets, ours_advantages,
                           entropy_coef=HYPER["entropy_coef"], value_loss_coef=HYPER["value_loss_coef"])
    assert terms.policy == pytest.approx(policy.item(), rel=1e-10, abs=1e-10)
    assert terms.value == pytest.approx(value.item(), rel=1e-10)
    assert_close(terms.grad_logits, logits_ref.grad, what="logits")
    assert_close(terms.grad_values, values_ref.grad, what="values")
    ratios = (taken - behaviour).detach().exp()
    assert 0 < int((ratios > 1).sum()) < ratios.numel()  # the clip binds on some steps, not all
