"""The fused LSTM cell (csrc/lstm_cell.h) against nn.LSTMCell, whose maths and parameters it
uses, and the models' controllers with it on and off."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchmem
from torchmem.core import fused_link
from torchmem.models.controller import LSTMController, LSTMState

pytestmark = pytest.mark.skipif(
    not fused_link.cpp_available(), reason="the C++ kernels could not be built here"
)


def fused(cell: nn.LSTMCell, x, h, c):
    return torch.ops.torchmem_fused_link.lstm_cell(
        x, h, c, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    )


def inputs(batch, width, hidden, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        (2 * torch.randn(*shape, generator=gen, dtype=dtype)).requires_grad_()
        for shape in ((batch, width), (batch, hidden), (batch, hidden))
    ]


@pytest.mark.parametrize("batch,width,hidden", [(1, 1, 1), (3, 5, 7), (16, 25, 64)])
def test_values_and_gradients_match_lstm_cell(batch, width, hidden):
    torch.manual_seed(0)
    cell = nn.LSTMCell(width, hidden).double()
    x, h, c = inputs(batch, width, hidden)
    expected = cell(x, (h, c))
    got = fused(cell, x, h, c)
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-12)
    gen = torch.Generator().manual_seed(1)
    weights = [torch.randn(e.shape, generator=gen, dtype=e.dtype) for e in expected]
    leaves = [x, h, c, *cell.parameters()]
    grads_expected = torch.autograd.grad(expected, leaves, weights)
    grads_got = torch.autograd.grad(got, leaves, weights)
    for e, g in zip(grads_expected, grads_got, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-12)


@pytest.mark.parametrize("which", [0, 1])
def test_one_output_alone_carries_gradient(which):
    torch.manual_seed(0)
    cell = nn.LSTMCell(4, 6).double()
    x, h, c = inputs(2, 4, 6)
    expected = torch.autograd.grad(cell(x, (h, c))[which].sum(), [x, h, c, *cell.parameters()])
    got = torch.autograd.grad(fused(cell, x, h, c)[which].sum(), [x, h, c, *cell.parameters()])
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-12)


def test_gradcheck():
    torch.manual_seed(0)
    cell = nn.LSTMCell(3, 4).double()
    x, h, c = inputs(2, 3, 4)
    params = tuple(p.detach().clone().requires_grad_() for p in cell.parameters())

    def f(*args):
        return tuple(torch.ops.torchmem_fused_link.lstm_cell(*args))

    assert torch.autograd.gradcheck(f, (x, h, c, *params))


def test_float32_and_saturated_gates():
    torch.manual_seed(0)
    cell = nn.LSTMCell(5, 8)
    x, h, c = inputs(4, 5, 8, dtype=torch.float32)
    with torch.no_grad():
        x[0] *= 100  # gates at 0 or 1: sigmoid and tanh saturate, nothing may turn NaN
    for e, g in zip(cell(x, (h, c)), fused(cell, x, h, c), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
        assert torch.isfinite(g).all()


def test_double_backward_raises():
    torch.manual_seed(0)
    cell = nn.LSTMCell(3, 4).double()
    x, h, c = inputs(2, 3, 4)
    (gx,) = torch.autograd.grad(fused(cell, x, h, c)[0].sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError, match="differentiable once"):
        gx.sum().backward()


def test_bad_inputs_are_named():
    cell = nn.LSTMCell(3, 4)
    x, h, c = (t.detach().float() for t in inputs(2, 3, 4))
    with pytest.raises(RuntimeError, match=r"input must have shape \(B, I\) = \(B, 3\)"):
        fused(cell, x[:, :2], h, c)
    with pytest.raises(RuntimeError, match="hidden and cell must have shape"):
        fused(cell, x, h[:1], c)
    with pytest.raises(RuntimeError, match="one dtype throughout"):
        fused(cell, x.double(), h, c)


def test_controller_falls_back_where_the_operator_does_not_apply():
    controller = LSTMController(3, 4).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    assert controller._use_fused(x)
    assert not controller._use_fused(x.float())  # parameters are float64
    assert not LSTMController(3, 4, fused=False).double()._use_fused(x)
    state = LSTMState(
        torch.zeros(2, 4, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64)
    )
    controller.fused = False
    expected = controller.step(x, state)[0]
    controller.fused = True
    torch.testing.assert_close(controller.step(x, state)[0], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["ntm", "dnc"])
def test_models_train_the_same_with_and_without_it(name):
    """Whole sequences, outputs and every parameter gradient, fused controller on and off."""
    grads = []
    for use in (True, False):
        torch.manual_seed(0)
        model = torchmem.make_model(name, 9, 8, memory_slots=16, fused_controller=use).double()
        x = torch.rand(3, 7, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        y, _ = model(x)
        y.square().sum().backward()
        grads.append([y.detach()] + [p.grad for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "name,options",
    [
        ("ntm", {"fused_controller": False}),
        ("dnc", {"step_backend": "composed", "link_backend": "reference",
                 "fused_controller": False}),
    ],
)  # fmt: skip
def test_plain_autograd_options_give_second_order_gradients(name, options):
    """What the README promises for higher-order gradients: those options differentiate twice,
    and the default (fused) configuration refuses instead of dropping terms."""
    torch.manual_seed(0)
    x = torch.rand(2, 5, 9, dtype=torch.float64, requires_grad=True)
    model = torchmem.make_model(name, 9, 8, memory_slots=8, **options).double()
    (grad,) = torch.autograd.grad(model(x)[0].square().sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert model.output.weight.grad.abs().sum() > 0
    fused = torchmem.make_model(name, 9, 8, memory_slots=8).double()
    (grad,) = torch.autograd.grad(fused(x)[0].square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiable once"):
        grad.square().sum().backward()
