"""The fused DNC memory step (csrc/dnc_step.h) against the composed step it replaces.

``DNCMemory.step`` runs one C++ operator with a hand-written backward where it can
(``step_backend="auto"``) and the composition of ``torchmem.core`` functions otherwise
(``"composed"``). The composition is the reference: outputs and every gradient must agree to
rounding, over several sizes and head counts (1-4 use the blocked link kernels, 5 the
any-heads ones), from random states that exercise every term, over several time steps so that
the in-place reuse of the link gradient is exercised too. (Random states also keep the usages
apart: near-ties in the allocation sort are broken by rounding, see test_from_the_zero_state.)
"""

from __future__ import annotations

import pytest
import torch

import torchmem
from torchmem.core import fused_link
from torchmem.memories.dnc_memory import DNCMemory, DNCMemoryState

pytestmark = pytest.mark.skipif(
    not fused_link.cpp_available(), reason="the C++ kernels could not be built here"
)


def random_state(batch, slots, width, heads, dtype, seed=1) -> DNCMemoryState:
    """A state with every entry non-trivial (link diagonal included, usage inside (0, 1))."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=gen, dtype=dtype)

    def simplex(*shape):
        return torch.softmax(3 * torch.randn(*shape, generator=gen, dtype=dtype), -1) * rand(
            *shape[:-1], 1
        )

    return DNCMemoryState(
        torch.randn(batch, slots, width, generator=gen, dtype=dtype),
        rand(batch, slots),
        rand(batch, slots, slots) / slots,
        simplex(batch, slots),
        simplex(batch, slots),
        simplex(batch, heads, slots),
        torch.zeros(batch, heads, width, dtype=dtype),
    )


def unroll(memory, backend, hidden, state, loss_of=None):
    """Run len(hidden) steps; return the states and the gradients of a loss that touches
    every output of every step (or ``loss_of(states)``) w.r.t. the first state and weights."""
    memory.step_backend = backend
    start = DNCMemoryState(*[t.detach().clone().requires_grad_(True) for t in state])
    states, current = [], start
    for h in hidden:
        current = memory.step(h, current)
        states.append(current)
    if loss_of is None:
        weights = torch.linspace(0.3, 1.7, len(DNCMemoryState._fields), dtype=hidden.dtype)
        loss = sum(w * (torch.sin(t) * t).sum() for s in states for w, t in zip(weights, s))
    else:
        loss = loss_of(states)
    inputs = list(start[:6]) + list(memory.parameters())
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return states, grads


def assert_same(first, second, tolerance):
    for a, b in zip(first, second):
        if a is None or b is None:
            assert a is None and b is None
            continue
        scale = max(1.0, b.abs().max().item())
        assert torch.allclose(a, b, rtol=0, atol=tolerance * scale), (a - b).abs().max()


@pytest.mark.parametrize(
    "batch, slots, width, heads",
    [(2, 5, 3, 1), (3, 8, 4, 2), (2, 9, 5, 3), (2, 16, 4, 4), (1, 7, 2, 5), (4, 33, 16, 1)],
)
def test_fused_equals_composed_float64(batch, slots, width, heads):
    torch.manual_seed(0)
    memory = DNCMemory(7, slots, width, heads).double()
    hidden = 2 * torch.randn(4, batch, 7, dtype=torch.float64)
    state = random_state(batch, slots, width, heads, torch.float64)
    states_c, grads_c = unroll(memory, "composed", hidden, state)
    states_f, grads_f = unroll(memory, "fused", hidden, state)
    for composed, fused in zip(states_c, states_f):
        assert_same(fused, composed, 1e-12)
    assert_same(grads_f, grads_c, 1e-11)


def test_fused_equals_composed_float32():
    torch.manual_seed(0)
    memory = DNCMemory(12, 20, 6, 2)
    hidden = torch.randn(6, 3, 12)
    state = random_state(3, 20, 6, 2, torch.float32)
    states_c, grads_c = unroll(memory, "composed", hidden, state)
    states_f, grads_f = unroll(memory, "fused", hidden, state)
    for composed, fused in zip(states_c, states_f):
        assert_same(fused, composed, 1e-5)
    assert_same(grads_f, grads_c, 1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_from_the_zero_state(dtype):
    """The first two steps agree; gradients stay finite on an all-zero memory.

    Only the weights' gradients are compared: those w.r.t. the zero state itself are of order
    1 / eps (the cosine of a zero slot, see addressing._norm), too ill-conditioned for float32
    in either implementation.

    Later steps from the zero state are not compared: the slots written at the start have
    usages equal up to rounding, and the allocation sort breaks those near-ties by the last
    bit, which two correct implementations need not share (nor does eager vs compiled torch).
    """
    torch.manual_seed(0)
    memory = DNCMemory(12, 20, 6, 2).to(dtype)
    hidden = torch.randn(6, 3, 12, dtype=dtype)
    state = memory.initial_state(3, dtype=dtype)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    states_c, grads_c = unroll(memory, "composed", hidden[:2], state)
    states_f, grads_f = unroll(memory, "fused", hidden[:2], state)
    for composed, fused in zip(states_c, states_f):
        assert_same(fused, composed, tolerance)
    assert_same(grads_f[6:], grads_c[6:], 10 * tolerance)
    _, grads = unroll(memory, "fused", hidden, state)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)


@pytest.mark.parametrize("output", DNCMemoryState._fields)
def test_gradient_through_one_output_only(output):
    """Outputs without a gradient arrive as None in the backward and count as zero."""
    torch.manual_seed(1)
    memory = DNCMemory(5, 6, 3, 2).double()
    hidden = torch.randn(2, 2, 5, dtype=torch.float64)
    state = random_state(2, 6, 3, 2, torch.float64, seed=3)

    def loss_of(states):
        return (getattr(states[-1], output) ** 2).sum()

    _, grads_c = unroll(memory, "composed", hidden, state, loss_of)
    _, grads_f = unroll(memory, "fused", hidden, state, loss_of)
    grads_c = [torch.zeros(1) if g is None else g for g in grads_c]
    grads_f = [torch.zeros(1) if g is None else g for g in grads_f]
    for a, b in zip(grads_f, grads_c):
        assert torch.allclose(a.expand_as(b), b, rtol=0, atol=1e-12)


def test_gradcheck_of_the_operator():
    """Against finite differences, independently of the composed step."""
    torch.manual_seed(2)
    batch, slots, width, heads = 2, 5, 3, 2
    memory = DNCMemory(4, slots, width, heads).double()
    state = random_state(batch, slots, width, heads, torch.float64, seed=5)
    interface = torch.randn(batch, memory.interface.out_features, dtype=torch.float64)
    inputs = [t.clone().requires_grad_(True) for t in (interface, *state[:6])]

    def op(*args):
        return tuple(torch.ops.torchmem_fused_link.dnc_step(*args))

    assert torch.autograd.gradcheck(op, inputs, eps=1e-6, atol=1e-7)


def test_non_contiguous_state_is_accepted():
    torch.manual_seed(3)
    memory = DNCMemory(5, 6, 4, 1).double()
    state = random_state(2, 6, 4, 1, torch.float64)
    # The same values, laid out transposed in memory.
    link = state.link.transpose(1, 2).contiguous().transpose(1, 2)
    skewed = state._replace(link=link, memory=state.memory.transpose(1, 2).contiguous().mT)
    assert not skewed.link.is_contiguous() and not skewed.memory.is_contiguous()
    hidden = torch.randn(2, 5, dtype=torch.float64)
    memory.step_backend = "fused"
    expected = memory.step(hidden, state)
    got = memory.step(hidden, skewed)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


def test_double_backward_raises():
    memory = DNCMemory(5, 6, 4, 1).double()
    start = random_state(1, 6, 4, 1, torch.float64)
    state = DNCMemoryState(*[t.requires_grad_(True) for t in start])
    memory.step_backend = "fused"
    out = memory.step(torch.randn(1, 5, dtype=torch.float64), state)
    # A squared loss, so that the gradient arriving at the operator itself requires grad.
    loss = out.read_vectors.square().sum()
    (grad,) = torch.autograd.grad(loss, state.memory, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()


def test_backend_choice():
    memory = DNCMemory(5, 6, 4, 1)
    hidden = torch.randn(1, 5)
    assert memory.fused(hidden)
    assert not memory.fused(hidden.to(torch.bfloat16))
    for option in ("masking", "deallocation", "link_sharpness"):
        with_option = DNCMemory(5, 6, 4, 1, **{option: True})
        assert not with_option.fused(hidden)  # auto: the composed step
        with_option.step_backend = "fused"
        with pytest.raises(ValueError, match="step_backend='fused' needs"):
            with_option.fused(hidden)
    assert not DNCMemory(5, 6, 4, 1, link_backend="torch").fused(hidden)
    assert not DNCMemory(5, 6, 4, 1, step_backend="composed").fused(hidden)
    with pytest.raises(ValueError, match="unknown DNC step_backend 'fast'"):
        DNCMemory(5, 6, 4, 1, step_backend="fast")


def test_operator_shape_errors_name_what_was_expected():
    state = random_state(2, 6, 4, 1, torch.float32)
    op = torch.ops.torchmem_fused_link.dnc_step
    with pytest.raises(RuntimeError, match=r"interface must have shape \(B, R W \+ 3 W"):
        op(torch.zeros(2, 10), *state[:6])
    with pytest.raises(RuntimeError, match="link must have shape"):
        op(torch.zeros(2, 24), *state[:2], state.link[:, :5], *state[3:6])
    with pytest.raises(RuntimeError, match="share one dtype"):
        op(torch.zeros(2, 24, dtype=torch.float64), *state[:6])


def test_dnc_model_uses_the_fused_step_and_matches_composed():
    torch.manual_seed(4)
    fused = torchmem.DNC(5, 3, memory_slots=8, memory_width=4, read_heads=2).double()
    composed = torchmem.DNC(
        5, 3, memory_slots=8, memory_width=4, read_heads=2, step_backend="composed"
    ).double()
    composed.load_state_dict(fused.state_dict())
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    y_f, _ = fused(x)
    y_c, _ = composed(x)
    assert torch.allclose(y_f, y_c, atol=1e-12, rtol=0)
    y_f.square().sum().backward()
    y_c.square().sum().backward()
    for a, b in zip(fused.parameters(), composed.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-11, rtol=0)
