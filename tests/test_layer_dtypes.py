"""Layers follow torch's default dtype like torch.nn, convert as a whole with ``to``, and
an LSTM weight view whose ``.data`` is reassigned stays part of the cell."""
from __future__ import annotations

import pytest
import torch

from a3c.model import ActorCritic
from a3c.optim import SharedAdam
from layers import Conv2d, ConvTranspose2d, LayerNormLSTMCell, Linear, LSTMCell
from tests.helpers import assert_close

F64 = torch.float64


def make_layers(dtype=None):
    return [Conv2d(2, 3, 3, dtype=dtype), ConvTranspose2d(2, 3, 4, stride=2, dtype=dtype), Linear(4, 5, dtype=dtype),
            LSTMCell(4, 3, dtype=dtype), LayerNormLSTMCell(4, 3, dtype=dtype)]


@pytest.fixture
def default_float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    yield
    torch.set_default_dtype(previous)


def test_layers_and_the_network_take_torch_default_dtype(default_float64):
    for layer in make_layers():
        assert {p.dtype for p in layer.parameters()} == {F64}, layer
    model = ActorCritic(18, seed=0)
    assert {p.dtype for p in model.parameters()} == {F64}
    assert model.initial_state(2)[0].dtype == F64


def test_an_explicit_dtype_wins_over_the_default(default_float64):
    for layer in make_layers(torch.float32):
        assert {p.dtype for p in layer.parameters()} == {torch.float32}, layer


def lstm_pair(seed=0):
    torch.manual_seed(seed)
    reference = torch.nn.LSTMCell(5, 3).double()
    cell = LSTMCell(5, 3, dtype=torch.float32)
    cell.load_state_dict(reference.state_dict())
    return cell, reference


def check_against(cell, reference, what):
    x, state = torch.randn(2, 5, dtype=F64), (torch.randn(2, 3, dtype=F64), torch.randn(2, 3, dtype=F64))
    h, c = cell.forward(x, state, record=False)
    with torch.no_grad():
        h_ref, c_ref = reference(x, state)
    assert_close(h, h_ref, 1e-12, what=f"h after {what}")
    assert_close(c, c_ref, 1e-12, what=f"c after {what}")


def test_to_converts_the_lstm_joint_matrix_too():
    cell, reference = lstm_pair()
    objects = [id(p) for p in cell.parameters()]
    cell.to(F64)
    assert {p.dtype for p in cell.parameters()} == {F64}
    assert [id(p) for p in cell.parameters()] == objects  # an optimizer holding them keeps working
    reference.load_state_dict({k: v.double() for k, v in cell.state_dict().items()})  # float32 values, exact
    check_against(cell, reference, "to(float64)")
    cell.weight_hh.add_(0.25)  # in-place changes still reach the forward
    with torch.no_grad():
        reference.weight_hh.add_(0.25)
    check_against(cell, reference, "an in-place change after to()")


def test_reassigning_data_of_every_parameter_is_safe():
    """The torch.nn idiom ``p.data = p.data.double()``: the views detach, the forward
    rebuilds the joint matrix from them and an in-place update reaches it afterwards."""
    cell, reference = lstm_pair(1)
    for p in cell.parameters():
        p.data = p.data.double()
    reference.load_state_dict({k: v.clone() for k, v in cell.state_dict().items()})
    check_against(cell, reference, "p.data = p.data.double()")
    cell.weight_ih.mul_(-1.0)
    with torch.no_grad():
        reference.weight_ih.mul_(-1.0)
    check_against(cell, reference, "an in-place change after the reassignment")


def test_a_view_given_new_values_through_data_reaches_the_forward():
    cell, reference = lstm_pair(2)
    new = torch.randn(12, 5)
    cell.weight_ih.data = new.clone()
    with torch.no_grad():
        reference.weight_ih.copy_(new.double())
    check_against(cell.to(F64), reference, "weight_ih.data = new values")


def test_half_converted_parameters_are_refused_with_a_clear_message():
    cell, _ = lstm_pair(3)
    cell.weight_ih.data = cell.weight_ih.data.double()  # weight_hh and the biases stay float32
    with pytest.raises(TypeError, match=r"parameters differ in dtype.*weight_ih torch.float64.*\.to\(dtype\)"):
        cell.forward(torch.randn(1, 5, dtype=F64), record=False)


def test_a_view_given_another_shape_is_refused():
    cell, _ = lstm_pair(4)
    cell.weight_hh.data = torch.zeros(12, 4)
    with pytest.raises(ValueError, match="no longer have the cell's shapes"):
        cell.forward(torch.randn(1, 5), record=False)


def test_the_whole_network_converts_and_its_optimizer_follows():
    model = ActorCritic(18, seed=0, dtype=torch.float32)
    optimizer = SharedAdam(model.parameters(), 1e-3)
    model.to(F64)
    frames = torch.rand(2, 1, 42, 42, dtype=F64)
    logits, values, _ = model.step(frames, model.initial_state(2), record=True)
    model.backward(torch.randn(1, 2, 18, dtype=F64), torch.randn(1, 2, 1, dtype=F64))
    grads = [p.grad for p in model.parameters()]
    assert logits.dtype == values.dtype == F64 and {g.dtype for g in grads} == {F64}
    before, _, _ = model.step(frames, model.initial_state(2))
    optimizer.step(grads)  # updates the tensors the forward reads, the LSTM's joint matrix included
    after, _, _ = model.step(frames, model.initial_state(2))
    assert not torch.equal(before, after)
    reference = ActorCritic(18, dtype=F64)
    reference.load_state_dict(model.state_dict())
    assert torch.equal(reference.step(frames, reference.initial_state(2))[0], after)
