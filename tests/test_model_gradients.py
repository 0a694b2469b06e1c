"""The A3C network stack: every parameter's gradient over a 20-step rollout equals autograd's."""
from __future__ import annotations

import pytest
import torch

from a3c.model import ActorCritic, action_reward_inputs
from tests.autograd_reference import TorchActorCritic
from tests.helpers import assert_close

F64 = torch.float64
STEPS, BATCH, ACTIONS = 20, 2, 18


# (conv_stack, core, frame_stack, frame_size, conv_channels, hidden_size): the default LSTM,
# the feed-forward core over several input and layer sizes, the layer-normalised LSTM, and
# the DQN Nature paper's convolutions with each core, from the smallest frame they take (36)
# to the default's 84
SHAPES = [("a3c", "lstm", 1, 42, 32, 256), ("a3c", "feedforward", 4, 42, 32, 256), ("a3c", "feedforward", 1, 16, 4, 8),
          ("a3c", "feedforward", 2, 84, 8, 32), ("a3c", "feedforward", 3, 23, 5, 7),
          ("a3c", "layernorm_lstm", 1, 42, 32, 256), ("a3c", "layernorm_lstm", 2, 84, 8, 32),
          ("a3c", "layernorm_lstm", 3, 23, 5, 7), ("nature", "layernorm_lstm", 1, 45, 3, 16),
          ("nature", "lstm", 1, 84, 8, 32), ("nature", "lstm", 2, 36, 4, 8), ("nature", "lstm", 1, 45, 3, 16),
          ("nature", "feedforward", 4, 84, 8, 32), ("nature", "feedforward", 3, 50, 5, 7)]
# the core reading the step before's action and reward too: each core, either stack
WITH_ACTION_REWARD = [("a3c", "lstm", 1, 42, 32, 256), ("a3c", "lstm", 2, 23, 5, 7), ("a3c", "feedforward", 1, 16, 4, 8),
                      ("a3c", "layernorm_lstm", 1, 23, 5, 7),
                      ("nature", "lstm", 1, 36, 4, 8), ("nature", "feedforward", 2, 45, 3, 16)]

# with the pixel-control head too: each core and stack, its smallest grid (20 pixels: 4 cells) to the default's 20
WITH_PIXEL_CONTROL = [("a3c", "lstm", 1, 84, 8, 32), ("a3c", "lstm", 2, 20, 5, 7), ("a3c", "feedforward", 1, 42, 4, 8),
                      ("a3c", "layernorm_lstm", 1, 29, 5, 7), ("nature", "lstm", 1, 36, 4, 8)]


@pytest.mark.parametrize("action_reward_input, pixel_control, conv_stack, core, stack, size, channels, hidden",
                         [(False, False, *shape) for shape in SHAPES]
                         + [(True, False, *shape) for shape in WITH_ACTION_REWARD]
                         + [(False, True, *shape) for shape in WITH_PIXEL_CONTROL])
def test_rollout_gradients_match_autograd_for_every_parameter(action_reward_input, pixel_control, conv_stack, core,
                                                              stack, size, channels, hidden):
    torch.manual_seed(0)
    sizes = dict(frame_stack=stack, frame_size=size, conv_channels=channels, hidden_size=hidden, core=core,
                 conv_stack=conv_stack, action_reward_input=action_reward_input, pixel_control=pixel_control)
    model = ActorCritic(ACTIONS, **sizes, seed=0, dtype=F64)
    reference = TorchActorCritic(ACTIONS, **sizes).double().load_from(model)
    frames = torch.rand(STEPS, BATCH, stack, size, size, dtype=F64)
    # any numbers, not only one-hot actions and clipped rewards: the input is data to the network
    previous = torch.randn(STEPS, BATCH, ACTIONS + 1, dtype=F64)
    # episode starts inside the rollout: row 1 resets at step 7, row 0 at step 13
    masks = torch.ones(STEPS, BATCH, 1, dtype=F64)
    masks[7, 1] = masks[13, 0] = 0.0
    grad_logits = torch.randn(STEPS, BATCH, ACTIONS, dtype=F64)
    grad_values = torch.randn(STEPS, BATCH, 1, dtype=F64)
    h0, c0 = torch.randn(BATCH, hidden, dtype=F64), torch.randn(BATCH, hidden, dtype=F64)

    state, logits_ref, values_ref, hidden_ref = (h0, c0), [], [], []
    for t in range(STEPS):
        logits, values, state = reference(frames[t], state, masks[t], previous[t])
        logits_ref.append(logits)
        values_ref.append(values)
        hidden_ref.append(reference.last_hidden)
    total = (torch.stack(logits_ref) * grad_logits).sum() + (torch.stack(values_ref) * grad_values).sum()
    grad_pixel_q = None
    if pixel_control:  # any upstream gradient for the Q maps of every step
        q_ref = torch.stack([reference.pixel_q(h) for h in hidden_ref])
        grad_pixel_q = torch.randn_like(q_ref)
        total = total + (q_ref * grad_pixel_q).sum()
    total.backward()

    state = (h0, c0)
    for t in range(STEPS):
        logits, values, state = model.step(frames[t], state, masks[t], previous=previous[t], record=True)
        assert_close(logits, logits_ref[t].detach(), what=f"logits at step {t}")
        assert_close(values, values_ref[t].detach(), what=f"values at step {t}")
    if pixel_control:
        assert_close(model.recorded_pixel_q(), q_ref.detach(), what="pixel-control Q")
    model.backward(grad_logits, grad_values, grad_pixel_q)

    reference_grads = reference.gradients_like(model)
    for name, param in model.named_parameters():
        assert_close(param.grad, reference_grads[name], what=name)


@pytest.mark.parametrize("core", ["lstm", "feedforward", "layernorm_lstm"])
def test_acting_keeps_no_records(core):
    model = ActorCritic(ACTIONS, core=core, seed=0)
    state = model.initial_state(1)
    for _ in range(3):
        _, _, state = model.step(torch.rand(1, 1, 42, 42), state)
    assert all(not layer._records for layer in [*model.layers, *model.elus, model.fc_elu] if layer is not None)


def test_the_feedforward_core_has_no_memory():
    """Its outputs depend on the frames alone, and the state comes back as it went in."""
    model = ActorCritic(ACTIONS, frame_stack=4, hidden_size=16, core="feedforward", seed=0, dtype=F64)
    frames = torch.rand(2, 4, 42, 42, dtype=F64)
    fresh = model.initial_state(2)
    assert [tuple(t.shape) for t in fresh] == [(2, 16), (2, 16)] and not any(t.any() for t in fresh)
    other = (torch.randn(2, 16, dtype=F64), torch.randn(2, 16, dtype=F64))
    logits, values, state = model.step(frames, other, torch.zeros(2, 1, dtype=F64))
    logits_fresh, values_fresh, _ = model.step(frames, fresh)
    assert torch.equal(logits, logits_fresh) and torch.equal(values, values_fresh)
    assert state[0] is other[0] and state[1] is other[1]
    with pytest.raises(ValueError, match=r"state must be \(h, c\), each \(2, 16\)"):
        model.step(frames, model.initial_state(3))
    assert model.to(torch.float32).initial_state(1)[0].dtype == torch.float32  # follows the weights
    assert [name for name, _ in model.named_parameters()][8:] == [
        "fc.weight", "fc.bias", "critic.weight", "critic.bias", "actor.weight", "actor.bias"]


def test_an_unknown_core_is_refused():
    with pytest.raises(ValueError, match="core must be one of lstm, feedforward, layernorm_lstm, got 'gru'"):
        ActorCritic(ACTIONS, core="gru")


def test_the_nature_convolutions_are_the_dqn_papers():
    """8x8 stride 4, 4x4 stride 2, 3x3 stride 1, unpadded, the last two twice as wide: 3,136
    features from 84x84 frames, as in the paper."""
    model = ActorCritic(ACTIONS, frame_stack=4, frame_size=84, conv_channels=32, conv_stack="nature", seed=0)
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in model.convs] == [
        (4, 32, (8, 8), (4, 4), (0, 0)), (32, 64, (4, 4), (2, 2), (0, 0)), (64, 64, (3, 3), (1, 1), (0, 0))]
    assert model.feature_size == 64 * 7 * 7 and len(model.elus) == 3
    assert [name for name, _ in model.named_parameters()][:7] == [
        "conv0.weight", "conv0.bias", "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "lstm.weight_ih"]


def test_an_unknown_conv_stack_or_a_frame_too_small_for_it_is_refused():
    with pytest.raises(ValueError, match="conv_stack must be one of a3c, nature, got 'resnet'"):
        ActorCritic(ACTIONS, conv_stack="resnet")
    with pytest.raises(ValueError, match="frame_size must be at least 36 for conv_stack=nature, got 35"):
        ActorCritic(ACTIONS, frame_size=35, conv_stack="nature")
    ActorCritic(ACTIONS, frame_size=36, conv_stack="nature")  # its last convolution sees one position


@pytest.mark.parametrize("core", ["lstm", "feedforward"])
def test_the_action_and_reward_input_is_read_and_zeroed_where_an_episode_starts(core):
    model = ActorCritic(ACTIONS, hidden_size=16, core=core, action_reward_input=True, seed=0, dtype=F64)
    frames, state = torch.rand(2, 1, 42, 42, dtype=F64), model.initial_state(2)
    before = action_reward_inputs(torch.tensor([3, 7]), torch.tensor([1.0, -1.0], dtype=F64), ACTIONS)
    assert before[0, 3] == 1 and before[1, 7] == 1 and before[:, :ACTIONS].sum() == 2
    assert before[:, ACTIONS].tolist() == [1.0, -1.0]
    none = torch.zeros_like(before)
    read, _, _ = model.step(frames, state, previous=before)
    unread, _, _ = model.step(frames, state, previous=none)
    assert not torch.allclose(read, unread)  # the input changes the policy
    restarts = torch.tensor([[0.0], [1.0]], dtype=F64)  # row 0 starts an episode: nothing before it
    masked, _, _ = model.step(frames, state, restarts, previous=before)
    assert torch.equal(masked[0], unread[0]) and torch.equal(masked[1], read[1])
    with pytest.raises(ValueError, match=r"action_reward_input needs previous \(2, 19\), got None"):
        model.step(frames, state)
    plain = ActorCritic(ACTIONS, hidden_size=16, core=core, seed=0, dtype=F64)
    assert torch.equal(plain.step(frames, state, previous=before)[0], plain.step(frames, state)[0])  # ignored
