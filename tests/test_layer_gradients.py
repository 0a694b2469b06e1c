"""Every hand-written backward equals torch autograd in float64 (relative error <= 1e-8)."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from layers import ELU, Conv2d, ConvTranspose2d, LayerNormLSTMCell, Linear, LSTMCell, ReLU
from layers.softmax import entropy, entropy_backward, log_softmax, log_softmax_backward
from tests.autograd_reference import TorchLayerNormLSTMCell
from tests.helpers import assert_close

F64 = torch.float64


def conv_configs(count: int = 80, seed: int = 0):
    """Random valid Conv2d configurations covering the ranges the layer must support."""
    rng = random.Random(seed)
    configs = []
    while len(configs) < count:
        groups = rng.choice([1, 2])
        kernel = (rng.randint(1, 5), rng.randint(1, 5))
        stride = (rng.randint(1, 3), rng.randint(1, 3))
        padding = (rng.randint(0, 2), rng.randint(0, 2))
        dilation = (rng.randint(1, 2), rng.randint(1, 2))
        size = (rng.randint(1, 12), rng.randint(1, 12))  # odd and even, non-square
        if any(s + 2 * p - d * (k - 1) - 1 < 0 for s, p, d, k in zip(size, padding, dilation, kernel)):
            continue
        configs.append(dict(
            in_channels=groups * rng.randint(1, 3), out_channels=groups * rng.randint(1, 3),
            kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
            bias=rng.random() < 0.5, batch=rng.randint(1, 4), size=size, seed=len(configs),
        ))
    return configs


def check_convolution(layer_type, reference_type, cfg):
    """Output, input gradient and parameter gradients of ``layer_type(**cfg)`` against its
    torch.nn twin's autograd, on a random input and upstream gradient."""
    cfg = dict(cfg)
    batch, size = cfg.pop("batch"), cfg.pop("size")
    torch.manual_seed(cfg.pop("seed"))
    reference = reference_type(**cfg).double()
    layer = layer_type(**cfg, dtype=F64)
    layer.load_state_dict(reference.state_dict())

    x = torch.randn(batch, cfg["in_channels"], *size, dtype=F64, requires_grad=True)
    y_ref = reference(x)
    grad_out = torch.randn_like(y_ref)
    y_ref.backward(grad_out)

    y = layer.forward(x.detach())
    assert tuple(y.shape[2:]) == layer.output_size(*size)
    grad_x = layer.backward(grad_out)
    assert_close(y, y_ref.detach(), what="output")
    assert_close(grad_x, x.grad, what="input gradient")
    assert_close(layer.weight.grad, reference.weight.grad, what="weight gradient")
    if cfg["bias"]:
        assert_close(layer.bias.grad, reference.bias.grad, what="bias gradient")


@pytest.mark.parametrize("cfg", conv_configs(), ids=lambda c: "k{kernel_size}s{stride}p{padding}d{dilation}g{groups}".format(**c))
def test_conv2d_matches_autograd(cfg):
    check_convolution(Conv2d, torch.nn.Conv2d, cfg)


@pytest.mark.parametrize("seed", range(20))
def test_linear_matches_autograd(seed):
    rng = random.Random(seed)
    n_in, n_out, batch, bias = rng.randint(1, 40), rng.randint(1, 40), rng.randint(1, 6), rng.random() < 0.5
    torch.manual_seed(seed)
    reference = torch.nn.Linear(n_in, n_out, bias=bias).double()
    linear = Linear(n_in, n_out, bias=bias, dtype=F64)
    linear.load_state_dict(reference.state_dict())
    x = torch.randn(batch, n_in, dtype=F64, requires_grad=True)
    y_ref = reference(x)
    grad_out = torch.randn_like(y_ref)
    y_ref.backward(grad_out)

    assert_close(linear.forward(x.detach()), y_ref.detach(), what="output")
    assert_close(linear.backward(grad_out), x.grad, what="input gradient")
    assert_close(linear.weight.grad, reference.weight.grad, what="weight gradient")
    if bias:
        assert_close(linear.bias.grad, reference.bias.grad, what="bias gradient")


def conv_transpose_configs(count: int = 60, seed: int = 1):
    """Random valid ConvTranspose2d configurations: strides, padding, output padding,
    dilation, groups, odd and even non-square inputs (the pixel-control head's 4x4,
    stride 2 among them)."""
    rng = random.Random(seed)
    configs = [dict(in_channels=8, out_channels=19, kernel_size=(4, 4), stride=(2, 2), padding=(0, 0),
                    output_padding=(0, 0), dilation=(1, 1), groups=1, bias=True, batch=3, size=(9, 9), seed=0)]
    while len(configs) < count:
        groups = rng.choice([1, 2])
        kernel = (rng.randint(1, 5), rng.randint(1, 5))
        stride = (rng.randint(1, 3), rng.randint(1, 3))
        dilation = (rng.randint(1, 2), rng.randint(1, 2))
        padding = (rng.randint(0, 2), rng.randint(0, 2))
        output_padding = tuple(rng.randint(0, max(s, d) - 1) for s, d in zip(stride, dilation))
        size = (rng.randint(1, 9), rng.randint(1, 9))
        if any((n - 1) * s - 2 * p + d * (k - 1) + op + 1 < 1
               for n, s, p, d, k, op in zip(size, stride, padding, dilation, kernel, output_padding)):
            continue
        configs.append(dict(
            in_channels=groups * rng.randint(1, 3), out_channels=groups * rng.randint(1, 3),
            kernel_size=kernel, stride=stride, padding=padding, output_padding=output_padding,
            dilation=dilation, groups=groups, bias=rng.random() < 0.5, batch=rng.randint(1, 4), size=size,
            seed=len(configs),
        ))
    return configs


@pytest.mark.parametrize("cfg", conv_transpose_configs(),
                         ids=lambda c: "k{kernel_size}s{stride}p{padding}op{output_padding}d{dilation}g{groups}".format(**c))
def test_conv_transpose2d_matches_autograd(cfg):
    check_convolution(ConvTranspose2d, torch.nn.ConvTranspose2d, cfg)


def test_conv_transpose2d_backward_covers_several_forward_calls():
    """As for the other layers: one backward over the T steps of a rollout, each a forward."""
    torch.manual_seed(3)
    reference = torch.nn.ConvTranspose2d(3, 5, 4, stride=2).double()
    layer = ConvTranspose2d(3, 5, 4, stride=2, dtype=F64)
    layer.load_state_dict(reference.state_dict())
    xs = [torch.randn(2, 3, 4, 4, dtype=F64, requires_grad=True) for _ in range(3)]
    outputs = [reference(x) for x in xs]
    grad_out = torch.randn(6, 5, 10, 10, dtype=F64)
    torch.cat(outputs).backward(grad_out)
    for x in xs:
        layer.forward(x.detach())
    grad_x = layer.backward(grad_out)
    assert_close(grad_x, torch.cat([x.grad for x in xs]), what="input gradient")
    assert_close(layer.weight.grad, reference.weight.grad, what="weight gradient")
    with pytest.raises(ValueError, match="without a matching forward"):  # the records were consumed
        layer.backward(grad_out)


@pytest.mark.parametrize("shape", [(1, 7), (4, 3, 5, 6), (2, 32, 9, 9)])
def test_relu_matches_autograd(shape):
    torch.manual_seed(len(shape))
    x = torch.randn(*shape, dtype=F64)
    x.view(-1)[::5] = 0.0  # the kink: both give 0 there
    x.requires_grad_()
    y_ref = F.relu(x)
    grad_out = torch.randn_like(y_ref)
    y_ref.backward(grad_out)
    relu = ReLU()
    assert_close(relu.forward(x.detach()), y_ref.detach(), what="output")
    assert_close(relu.backward(grad_out), x.grad, what="input gradient")


@pytest.mark.parametrize("alpha", [1.0, 0.3, 2.5])
@pytest.mark.parametrize("shape", [(1, 7), (4, 3, 5, 6), (2, 32, 21, 21)])
def test_elu_matches_autograd(alpha, shape):
    torch.manual_seed(len(shape))
    x = (torch.randn(*shape, dtype=F64) * 3).requires_grad_()
    y_ref = F.elu(x, alpha)
    grad_out = torch.randn_like(y_ref)
    y_ref.backward(grad_out)
    elu = ELU(alpha)
    assert_close(elu.forward(x.detach()), y_ref.detach(), what="output")
    assert_close(elu.backward(grad_out), x.grad, what="input gradient")


def run_lstm_reference(reference, xs, h0, c0, masks):
    h, c, outputs = h0, c0, []
    for x, mask in zip(xs, masks):
        if mask is not None:
            h, c = h * mask, c * mask
        h, c = reference(x, (h, c))
        outputs.append(h)
    return torch.stack(outputs), c


def lstm_case(seed: int, min_hidden: int = 1):
    rng = random.Random(seed)
    steps, batch = rng.randint(1, 8), rng.randint(1, 4)
    n_in, hidden, bias = rng.randint(1, 12), rng.randint(min_hidden, 10), rng.random() < 0.8
    torch.manual_seed(seed)
    reference = torch.nn.LSTMCell(n_in, hidden, bias=bias).double()
    with torch.no_grad():  # large weights saturate some gates (sigma, tanh near 0 or 1)
        reference.weight_ih.mul_(rng.choice([1.0, 4.0, 15.0]))
    xs = [torch.randn(batch, n_in, dtype=F64, requires_grad=True) for _ in range(steps)]
    h0 = torch.randn(batch, hidden, dtype=F64, requires_grad=True)
    c0 = torch.randn(batch, hidden, dtype=F64, requires_grad=True)
    masks = [None] + [
        (torch.rand(batch, 1) > 0.3).to(F64) if rng.random() < 0.5 else None for _ in range(steps - 1)
    ]
    return reference, xs, h0, c0, masks


def check_cell_against_reference(cell, reference, xs, h0, c0, masks, mode):
    """Run a cell and its torch twin (same weights) over the sequence; their states and,
    back-propagated step by step or through time, every gradient must agree."""
    hs_ref, c_last_ref = run_lstm_reference(reference, xs, h0, c0, masks)
    grad_hs, grad_c_last = torch.randn_like(hs_ref), torch.randn_like(c_last_ref)
    ((hs_ref * grad_hs).sum() + (c_last_ref * grad_c_last).sum()).backward()

    state, hs = (h0.detach(), c0.detach()), []
    for x, mask in zip(xs, masks):
        state = cell.forward(x.detach(), state, mask)
        hs.append(state[0])
    assert_close(torch.stack(hs), hs_ref.detach(), what="hidden states")
    assert_close(state[1], c_last_ref.detach(), what="last cell state")

    if mode == "through_time":
        grad_xs, grad_h0, grad_c0 = cell.backward_through_time(grad_hs, grad_c_last)
    else:
        grad_h, grad_c, grad_x_list = torch.zeros_like(h0), grad_c_last, []
        for t in reversed(range(len(xs))):
            grad_x, grad_h, grad_c = cell.backward(grad_hs[t] + grad_h, grad_c)
            grad_x_list.insert(0, grad_x)
        grad_xs, grad_h0, grad_c0 = torch.stack(grad_x_list), grad_h, grad_c
    assert_close(grad_xs, torch.stack([x.grad for x in xs]), what="input gradients")
    assert_close(grad_h0, h0.grad, what="h0 gradient")
    assert_close(grad_c0, c0.grad, what="c0 gradient")
    for name, param in cell.named_parameters():
        assert_close(param.grad, getattr(reference, name).grad, what=name)


@pytest.mark.parametrize("mode", ["step_by_step", "through_time"])
@pytest.mark.parametrize("seed", range(16))
def test_lstm_cell_matches_autograd_over_sequences(seed, mode):
    reference, xs, h0, c0, masks = lstm_case(seed)
    cell = LSTMCell(reference.input_size, reference.hidden_size, bias=reference.bias, dtype=F64)
    cell.load_state_dict(reference.state_dict())
    check_cell_against_reference(cell, reference, xs, h0, c0, masks, mode)


@pytest.mark.parametrize("mode", ["step_by_step", "through_time"])
@pytest.mark.parametrize("seed", range(16))
def test_layernorm_lstm_cell_matches_autograd_over_sequences(seed, mode):
    """Shapes, masks and saturation as the plain cell's test; the gains and biases drawn
    away from their initial 1 and 0 so that each of their gradients is exercised. At
    least 2 units, as the cell requires."""
    _, xs, h0, c0, masks = lstm_case(seed, min_hidden=2)
    rng = random.Random(seed)
    reference = TorchLayerNormLSTMCell(xs[0].shape[1], h0.shape[1]).double()
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if not name.startswith("weight"):
                param.add_(rng.choice([0.3, 1.0, 3.0]) * torch.randn_like(param))
    cell = LayerNormLSTMCell(xs[0].shape[1], h0.shape[1], dtype=F64)
    cell.load_state_dict(reference.state_dict())
    check_cell_against_reference(cell, reference, xs, h0, c0, masks, mode)


def test_layernorm_lstm_keeps_its_gates_at_one_scale_however_large_the_input():
    """What the normalisation is for: scaling the input (or the weights) by 1,000 leaves
    every output unchanged (up to the EPS added to the variance), where the plain cell's
    gates would saturate."""
    torch.manual_seed(3)
    cell = LayerNormLSTMCell(6, 4, dtype=F64)
    for name, param in cell.named_parameters():
        param.copy_(torch.randn(param.shape, dtype=F64) + (1.0 if "gain" in name else 0.0))
    x, state = torch.randn(3, 6, dtype=F64), (torch.randn(3, 4, dtype=F64), torch.randn(3, 4, dtype=F64))
    h, c = cell.forward(x, state, record=False)
    h_large, c_large = cell.forward(1000.0 * x, state, record=False)
    assert_close(h_large, h, tol=1e-4, what="h for an input 1,000 times larger")
    assert_close(c_large, c, tol=1e-4, what="c for an input 1,000 times larger")
    assert h.abs().max() < 1.0 and not torch.allclose(h, torch.zeros_like(h))


def test_lstm_weights_are_views_that_in_place_updates_reach():
    """W_ih and W_hh live side by side in one matrix (one forward matmul): an in-place
    change (an optimizer step, a load, shared memory) must reach the forward, and
    rebinding the attribute, which would silently detach it, is refused."""
    reference = torch.nn.LSTMCell(5, 3).double()
    cell = LSTMCell(5, 3, dtype=F64)
    cell.load_state_dict(reference.state_dict())
    x, state = torch.randn(2, 5, dtype=F64), (torch.randn(2, 3, dtype=F64), torch.randn(2, 3, dtype=F64))
    for name in ("weight_ih", "weight_hh"):
        with torch.no_grad():
            getattr(reference, name).add_(0.5)
        getattr(cell, name).add_(0.5)
        h, c = cell.forward(x, state, record=False)
        h_ref, c_ref = reference(x, state)
        assert_close(h, h_ref.detach(), what=f"h after an in-place change of {name}")
        assert_close(c, c_ref.detach(), what=f"c after an in-place change of {name}")
        with pytest.raises(AttributeError, match=f"{name} is a view"):
            setattr(cell, name, torch.zeros_like(getattr(cell, name)))
    cell.weight_ih.share_memory_()  # moves the whole matrix: both views and the forward follow
    assert cell.weight_hh.is_shared()
    cell.weight_ih.zero_()
    cell.weight_hh.mul_(2.0)
    with torch.no_grad():
        reference.weight_ih.zero_()
        reference.weight_hh.mul_(2.0)
        h_ref, _ = reference(x, state)
    h, _ = cell.forward(x, state, record=False)
    assert_close(h, h_ref, what="h after in-place changes in shared memory")


def test_gradients_accumulate_over_two_backward_calls():
    torch.manual_seed(0)
    conv, reference = Conv2d(2, 3, 3, padding=1, dtype=F64), torch.nn.Conv2d(2, 3, 3, padding=1).double()
    conv.load_state_dict(reference.state_dict())
    for _ in range(2):
        x = torch.randn(2, 2, 5, 5, dtype=F64)
        grad_out = torch.randn(2, 3, 5, 5, dtype=F64)
        reference(x).backward(grad_out)
        conv.forward(x)
        conv.backward(grad_out)
    assert_close(conv.weight.grad, reference.weight.grad, what="accumulated weight gradient")
    assert_close(conv.bias.grad, reference.bias.grad, what="accumulated bias gradient")

    cell, ref_cell = LSTMCell(3, 4, dtype=F64), torch.nn.LSTMCell(3, 4).double()
    cell.load_state_dict(ref_cell.state_dict())
    for _ in range(2):
        x, grad_h = torch.randn(2, 3, dtype=F64), torch.randn(2, 4, dtype=F64)
        (ref_cell(x)[0] * grad_h).sum().backward()
        cell.forward(x)
        cell.backward(grad_h)
    for name, param in cell.named_parameters():
        assert_close(param.grad, getattr(ref_cell, name).grad, what=f"accumulated {name}")


def test_zero_grad_clears_gradients():
    linear = Linear(3, 2, dtype=F64)
    linear.forward(torch.randn(4, 3, dtype=F64))
    linear.backward(torch.randn(4, 2, dtype=F64))
    assert all(p.grad is not None for p in linear.parameters())
    linear.zero_grad()
    assert all(p.grad is None for p in linear.parameters())


def test_one_backward_covers_several_forward_calls_in_order():
    """A rollout: T forward calls of batch N, one backward with the T*N gradients."""
    torch.manual_seed(1)
    conv, reference = Conv2d(1, 4, 3, stride=2, padding=1, dtype=F64), torch.nn.Conv2d(1, 4, 3, 2, 1).double()
    conv.load_state_dict(reference.state_dict())
    elu = ELU()
    frames = [torch.randn(2, 1, 8, 8, dtype=F64) for _ in range(5)]
    outputs = [elu.forward(conv.forward(f)) for f in frames]
    grad_out = torch.randn(10, *outputs[0].shape[1:], dtype=F64)
    grad_frames = conv.backward(elu.backward(grad_out))

    stacked = torch.cat(frames).requires_grad_()
    F.elu(reference(stacked)).backward(grad_out)
    assert_close(grad_frames, stacked.grad, what="input gradient")
    assert_close(conv.weight.grad, reference.weight.grad, what="weight gradient")


def test_last_forward_calls_can_be_backpropagated_one_at_a_time():
    torch.manual_seed(2)
    linear = Linear(3, 2, dtype=F64)
    xs = [torch.randn(1, 3, dtype=F64) for _ in range(3)]
    for x in xs:
        linear.forward(x)
    grads = [torch.randn(1, 2, dtype=F64) for _ in range(3)]
    for grad in reversed(grads):
        linear.backward(grad)
    expected = sum(g.t() @ x for g, x in zip(grads, xs))
    assert_close(linear.weight.grad, expected, what="weight gradient")


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e3])
def test_log_softmax_and_entropy_gradients_match_autograd(scale):
    torch.manual_seed(3)
    logits = (torch.randn(5, 18, dtype=F64) * scale).requires_grad_()
    grad_log_probs, grad_entropy = torch.randn(5, 18, dtype=F64), torch.randn(5, dtype=F64)
    log_probs_ref = torch.log_softmax(logits, 1)
    entropy_ref = -(log_probs_ref.exp() * log_probs_ref).sum(1)
    ((log_probs_ref * grad_log_probs).sum() + (entropy_ref * grad_entropy).sum()).backward()

    log_probs = log_softmax(logits.detach())
    assert_close(log_probs, log_probs_ref.detach(), what="log-softmax")
    assert_close(entropy(log_probs), entropy_ref.detach(), what="entropy")
    grad = log_softmax_backward(grad_log_probs, log_probs.exp()) + entropy_backward(grad_entropy, log_probs)
    assert_close(grad, logits.grad, what="logits gradient")
