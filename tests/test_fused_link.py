"""The fused link step against the reference composition in ``torchmem.core.linkage``.

Every backend must give the numbers of ``update_link`` followed by ``directional_weights``,
and gradients equal to autograd's through them. The cpp tests build the extension once (tens
of seconds on a cold cache) and are skipped where it cannot be built.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import torchmem
from torchmem.core import fused_link, linkage

FUSED = ["torch", "cpp"]
ALL = ["reference", *FUSED]
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}


@pytest.fixture(params=FUSED)
def fused_backend(request):
    if request.param == "cpp" and not fused_link.cpp_available():
        pytest.skip("the C++ link kernel could not be built here")
    return request.param


@pytest.fixture(params=ALL)
def any_backend(request):
    if request.param == "cpp" and not fused_link.cpp_available():
        pytest.skip("the C++ link kernel could not be built here")
    return request.param


def make_inputs(batch, heads, slots, dtype=torch.float64, valid=False, seed=0):
    """(link (B, N, N), write (B, N), precedence (B, N), read (B, R, N)).

    valid=True gives what a DNC produces: weightings that are non-negative with total at most
    one, and a link with zero diagonal whose rows and columns sum to at most one. Otherwise
    everything is standard normal, diagonal included, which exercises every term.
    """
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    def distribution(*shape):
        mass = torch.rand(*shape[:-1], 1, generator=gen, dtype=dtype)
        return torch.softmax(randn(*shape), dim=-1) * mass

    if not valid:
        return (
            randn(batch, slots, slots),
            randn(batch, slots),
            randn(batch, slots),
            randn(batch, heads, slots),
        )
    link = torch.zeros(batch, slots, slots, dtype=dtype)
    precedence = torch.zeros(batch, slots, dtype=dtype)
    for _ in range(3):  # a few real updates give a realistic link
        write = distribution(batch, slots)
        link = linkage.update_link(link, write, precedence)
        precedence = linkage.update_precedence(precedence, write)
    return link, distribution(batch, slots), precedence, distribution(batch, heads, slots)


def reference(link, write, precedence, read):
    new_link = linkage.update_link(link, write, precedence)
    return (new_link, *linkage.directional_weights(new_link, read))


def assert_close(actual, expected, dtype):
    tol = TOLERANCE[dtype]
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype
        torch.testing.assert_close(a, e, atol=tol, rtol=tol)


def weighted_loss(outputs, seed=1):
    """A loss that reaches every output, so dL_t, df and db are all non-zero."""
    gen = torch.Generator().manual_seed(seed)
    return sum(
        (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum() for out in outputs
    )


def grads_of(backend, inputs, loss_fn=weighted_loss):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    outputs = fused_link.link_step(*leaves, backend=backend)
    # Inputs the loss cannot reach (the read weights when only the link is used) get zeros.
    grads = torch.autograd.grad(loss_fn(outputs), leaves, allow_unused=True, materialize_grads=True)
    return outputs, grads


# ---------------------------------------------------------------------------- forward values


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("valid", [False, True])
@pytest.mark.parametrize("batch,heads,slots", [(1, 1, 1), (3, 1, 7), (1, 3, 7), (3, 3, 7),
                                               (2, 5, 9), (2, 4, 33)])  # fmt: skip
def test_outputs_match_reference(any_backend, dtype, valid, batch, heads, slots):
    inputs = make_inputs(batch, heads, slots, dtype, valid)
    actual = fused_link.link_step(*inputs, backend=any_backend)
    assert_close(actual, reference(*inputs), dtype)


def test_new_link_diagonal_is_exactly_zero(any_backend):
    link, write, precedence, read = make_inputs(3, 2, 7)
    link.diagonal(dim1=1, dim2=2).fill_(5.0)  # a non-zero old diagonal must not leak through
    new_link, _, _ = fused_link.link_step(link, write, precedence, read, backend=any_backend)
    assert torch.equal(new_link.diagonal(dim1=1, dim2=2), torch.zeros(3, 7, dtype=link.dtype))


def test_valid_inputs_keep_link_a_sub_stochastic_matrix(fused_backend):
    link, write, precedence, read = make_inputs(3, 2, 16, valid=True)
    new_link, forward, backward = fused_link.link_step(
        link, write, precedence, read, backend=fused_backend
    )
    assert (new_link >= 0).all()
    assert (new_link.sum(dim=-1) <= 1 + 1e-12).all() and (new_link.sum(dim=-2) <= 1 + 1e-12).all()
    assert (forward >= 0).all() and (backward >= 0).all()


def test_non_contiguous_inputs(any_backend):
    link, write, precedence, read = make_inputs(3, 2, 7, seed=3)
    strided = (
        link.transpose(1, 2).contiguous().transpose(1, 2),  # same values, transposed strides
        torch.stack([write, write], dim=-1)[..., 0],  # stride 2 along N
        precedence.t().contiguous().t(),
        read.transpose(1, 2).contiguous().transpose(1, 2),
    )
    assert not any(t.is_contiguous() for t in strided)
    assert_close(fused_link.link_step(*strided, backend=any_backend), reference(*strided),
                 torch.float64)  # fmt: skip
    _, expected = grads_of("reference", strided)
    _, actual = grads_of(any_backend, strided)
    assert_close(actual, expected, torch.float64)


# ------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("batch,heads,slots", [(2, 1, 5), (1, 3, 4), (2, 5, 3)])
def test_gradcheck(fused_backend, batch, heads, slots):
    inputs = [t.requires_grad_() for t in make_inputs(batch, heads, slots, seed=2)]
    assert torch.autograd.gradcheck(
        lambda *xs: fused_link.link_step(*xs, backend=fused_backend), inputs
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("valid", [False, True])
@pytest.mark.parametrize(
    "batch,heads,slots", [(1, 1, 1), (3, 1, 7), (1, 2, 16), (3, 3, 7), (2, 4, 33), (2, 5, 9)]
)
def test_gradients_match_reference(fused_backend, dtype, valid, batch, heads, slots):
    inputs = make_inputs(batch, heads, slots, dtype, valid, seed=4)
    _, expected = grads_of("reference", inputs)
    _, actual = grads_of(fused_backend, inputs)
    assert_close(actual, expected, dtype)


@pytest.mark.parametrize(
    "used",
    [(0,), (1,), (2,), (1, 2), (0, 2)],
    ids=["link only", "forward only", "backward only", "reads only", "link and backward"],
)
def test_gradients_when_some_outputs_are_unused(fused_backend, used):
    """Outputs the loss never touches reach the backward as None."""
    inputs = make_inputs(2, 2, 6, seed=5)

    def loss_fn(outputs):
        return weighted_loss([outputs[k] for k in used])

    _, expected = grads_of("reference", inputs, loss_fn)
    _, actual = grads_of(fused_backend, inputs, loss_fn)
    assert_close(actual, expected, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradients_chained_over_three_steps(fused_backend, dtype):
    """As in a DNC unroll: each new link feeds the next step, every output feeds the loss."""
    batch, heads, slots, steps = 3, 2, 7, 3
    gen = torch.Generator().manual_seed(6)
    link0 = make_inputs(batch, heads, slots, dtype, valid=True)[0]
    per_step = [make_inputs(batch, heads, slots, dtype, valid=True, seed=10 + t)[1:]
                for t in range(steps)]  # fmt: skip
    weights = [torch.randn(batch, heads, slots, generator=gen, dtype=dtype) for _ in range(2)]
    final_weight = torch.randn(batch, slots, slots, generator=gen, dtype=dtype)

    def run(backend):
        leaves = [link0.clone().requires_grad_()]
        leaves += [t.clone().requires_grad_() for step in per_step for t in step]
        link, loss = leaves[0], 0
        for t in range(steps):
            write, precedence, read = leaves[1 + 3 * t : 4 + 3 * t]
            link, forward, backward = fused_link.link_step(
                link, write, precedence, read, backend=backend
            )
            loss = loss + (forward * weights[0]).sum() + (backward * weights[1]).sum()
        loss = loss + (link * final_weight).sum()
        return torch.autograd.grad(loss, leaves)

    assert_close(run(fused_backend), run("reference"), dtype)


def test_cpp_parallel_batch_matches_reference():
    """Enough work per batch element that at::parallel_for splits the batch over threads."""
    if not fused_link.cpp_available():
        pytest.skip("the C++ link kernel could not be built here")
    inputs = make_inputs(8, 2, 96, torch.float32, valid=True, seed=7)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        outputs, grads = grads_of("cpp", inputs)
    finally:
        torch.set_num_threads(threads)
    expected_outputs, expected_grads = grads_of("reference", inputs)
    assert_close(outputs, expected_outputs, torch.float32)
    assert_close(grads, expected_grads, torch.float32)


def test_all_zero_memory_has_finite_zero_gradients(fused_backend):
    zeros = [torch.zeros(2, 5, 5), torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(2, 1, 5)]
    outputs, grads = grads_of(fused_backend, zeros, lambda outs: sum(o.sum() for o in outs))
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(torch.equal(o, torch.zeros_like(o)) for o in outputs)


# ------------------------------------------------------------------------ backend selection


def test_auto_matches_reference_and_handles_other_dtypes():
    inputs = make_inputs(2, 2, 6, torch.float32, seed=8)
    assert_close(fused_link.link_step(*inputs), reference(*inputs), torch.float32)
    half = [t.to(torch.bfloat16) for t in inputs]  # no C++ kernel: auto falls back to torch
    new_link, forward, backward = fused_link.link_step(*half)
    assert new_link.dtype == forward.dtype == backward.dtype == torch.bfloat16


def test_cpp_backend_rejects_what_it_cannot_run():
    inputs = [t.to(torch.bfloat16) for t in make_inputs(1, 1, 3)]
    with pytest.raises(ValueError, match="float32 or float64"):
        fused_link.link_step(*inputs, backend="cpp")


def test_bad_arguments_are_reported():
    link, write, precedence, read = make_inputs(2, 1, 4)
    with pytest.raises(ValueError, match="unknown link backend"):
        fused_link.link_step(link, write, precedence, read, backend="cuda")
    with pytest.raises(ValueError, match="read_weights"):
        fused_link.link_step(link, write, precedence, read[:, :, :3])
    with pytest.raises(ValueError, match="write_weights"):
        fused_link.link_step(link, write[:1], precedence, read)
    with pytest.raises(ValueError, match="one dtype"):
        fused_link.link_step(link, write.float(), precedence, read)


def test_importing_torchmem_does_not_build_the_extension():
    code = (
        "import torchmem, torchmem.core.fused_link as f; "
        "assert f._build_ok is None, 'built at import'"
    )
    # The child must import the same torchmem as this process, installed or not.
    source_root = str(Path(torchmem.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([source_root, os.environ.get("PYTHONPATH", "")]),
    }
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
