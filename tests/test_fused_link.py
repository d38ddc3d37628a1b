"""The fused link step against the reference composition in ``torchmem.core.linkage``.

Every backend must give the numbers of ``update_link`` followed by ``directional_weights``,
and gradients equal to autograd's through them. The cpp tests build the extension once (tens
of seconds on a cold cache) and are skipped where it cannot be built. The cpp backend's buffer
pool and its in-place backward are tested at the end.
"""

from __future__ import annotations

import io
import os
import pickle
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


# ------------------------------------------------------------------------------ buffer pool

# Outputs of 64 KiB and more come from the pool: (2, 128, 128) float64 is 256 KiB.
POOLED = (2, 1, 128)
POOLED_BYTES = 2 * 128 * 128 * 8


@pytest.fixture
def cpp():
    if not fused_link.cpp_available():
        pytest.skip("the C++ link kernel could not be built here")
    limit = fused_link.pool_stats()["limit_bytes"]
    yield torch.ops.torchmem_fused_link
    fused_link.set_pool_limit(limit)


def pool_delta(before):
    after = fused_link.pool_stats()
    return {key: after[key] - before[key] for key in ("hits", "misses", "dropped")}


def test_pool_stats_shape(cpp):
    stats = fused_link.pool_stats()
    assert set(stats) == {"held_bytes", "held_blocks", "in_use_bytes", "in_use_blocks", "hits",
                          "misses", "dropped", "limit_bytes"}  # fmt: skip
    assert all(isinstance(v, int) and v >= 0 for v in stats.values())


def test_pool_reuses_blocks_across_steps(cpp):
    inputs = [t.requires_grad_() for t in make_inputs(*POOLED, seed=20)]
    fused_link.clear_pool()
    for step in range(3):
        before = fused_link.pool_stats()
        outputs = fused_link.link_step(*inputs, backend="cpp")
        assert cpp.is_pooled(outputs[0])
        grads = torch.autograd.grad(weighted_loss(outputs), inputs)  # dL_{t-1}: a second block
        assert cpp.is_pooled(grads[0])
        del outputs, grads  # both blocks back to the pool
        expected = {"hits": 0, "misses": 2} if step == 0 else {"hits": 2, "misses": 0}
        assert pool_delta(before) == {**expected, "dropped": 0}
    stats = fused_link.pool_stats()
    assert stats["held_bytes"] == 2 * POOLED_BYTES and stats["held_blocks"] == 2


def test_small_outputs_bypass_the_pool(cpp):
    new_link, _, _ = fused_link.link_step(*make_inputs(2, 1, 16), backend="cpp")
    assert not cpp.is_pooled(new_link)


def test_block_in_use_is_never_handed_out_twice(cpp):
    inputs = make_inputs(*POOLED, seed=21)
    fused_link.clear_pool()
    first = fused_link.link_step(*inputs, backend="cpp")[0]
    second = fused_link.link_step(*inputs, backend="cpp")[0]
    assert first.data_ptr() != second.data_ptr()
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    address = first.data_ptr()
    del first
    third = fused_link.link_step(*inputs, backend="cpp")[0]
    assert third.data_ptr() == address  # the freed block, reused
    torch.testing.assert_close(third, second, rtol=0, atol=0)


def test_clear_pool_frees_cached_blocks_only(cpp):
    inputs = make_inputs(*POOLED, seed=22)
    alive = fused_link.link_step(*inputs, backend="cpp")[0]
    expected = alive.clone()
    dropped = fused_link.link_step(*inputs, backend="cpp")[0]
    del dropped
    assert fused_link.pool_stats()["held_bytes"] >= POOLED_BYTES
    assert fused_link.clear_pool() >= POOLED_BYTES
    stats = fused_link.pool_stats()
    assert stats["held_bytes"] == 0 and stats["held_blocks"] == 0
    assert stats["in_use_bytes"] >= POOLED_BYTES
    # The live tensor is untouched by the clear, and its block returns once when it dies.
    alive.add_(0)
    torch.testing.assert_close(alive, expected, rtol=0, atol=0)
    fused_link.clear_pool()
    del alive
    stats = fused_link.pool_stats()
    assert stats["held_bytes"] == POOLED_BYTES and stats["held_blocks"] == 1
    assert fused_link.clear_pool() == POOLED_BYTES
    assert fused_link.clear_pool() == 0


def test_pool_limit_is_respected(cpp):
    inputs = make_inputs(*POOLED, seed=23)
    fused_link.clear_pool()
    fused_link.set_pool_limit(POOLED_BYTES)  # room for one block
    links = [fused_link.link_step(*inputs, backend="cpp")[0] for _ in range(3)]
    before = fused_link.pool_stats()
    del links
    stats = fused_link.pool_stats()
    assert stats["held_bytes"] == POOLED_BYTES and stats["held_blocks"] == 1
    assert stats["dropped"] - before["dropped"] == 2
    # Lowering the limit frees what no longer fits; zero keeps nothing.
    assert fused_link.set_pool_limit(0) == POOLED_BYTES
    assert fused_link.pool_stats()["held_bytes"] == 0
    del inputs
    link = fused_link.link_step(*make_inputs(*POOLED, seed=23), backend="cpp")[0]
    del link
    assert fused_link.pool_stats()["held_bytes"] == 0
    with pytest.raises(RuntimeError, match=">= 0"):
        fused_link.set_pool_limit(-1)


def test_pool_limit_evicts_other_sizes_first(cpp):
    fused_link.clear_pool()
    small = fused_link.link_step(*make_inputs(2, 1, 96, seed=24), backend="cpp")[0]
    small_bytes = small.nbytes
    big = fused_link.link_step(*make_inputs(*POOLED, seed=24), backend="cpp")[0]
    fused_link.set_pool_limit(POOLED_BYTES)
    del small  # cached: it fits
    assert fused_link.pool_stats()["held_bytes"] == small_bytes
    del big  # does not fit beside it, and evicts it
    stats = fused_link.pool_stats()
    assert stats["held_bytes"] == POOLED_BYTES and stats["held_blocks"] == 1


def test_pool_limit_from_the_environment(cpp):
    code = (
        "import torchmem.core.fused_link as f; "
        "assert f.pool_stats()['limit_bytes'] == 3 << 20, f.pool_stats()"
    )
    source_root = str(Path(torchmem.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "TORCHMEM_LINK_POOL_MB": "3",
        "PYTHONPATH": os.pathsep.join([source_root, os.environ.get("PYTHONPATH", "")]),
    }
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_pooled_tensors_behave_like_ordinary_tensors(cpp, tmp_path):
    inputs = make_inputs(*POOLED, seed=25)
    link = fused_link.link_step(*inputs, backend="cpp")[0]
    assert cpp.is_pooled(link)
    expected = reference(*inputs)[0]
    copy = link.clone()
    assert not cpp.is_pooled(copy)
    torch.testing.assert_close(copy, link, rtol=0, atol=0)

    path = tmp_path / "link.pt"
    torch.save({"link": link, "view": link[1, :3]}, path)
    loaded = torch.load(path)
    torch.testing.assert_close(loaded["link"], expected, rtol=1e-12, atol=1e-12)
    assert loaded["view"].data_ptr() == loaded["link"][1, :3].data_ptr()  # storage kept shared
    buffer = io.BytesIO()
    torch.save(link, buffer)
    buffer.seek(0)
    torch.testing.assert_close(torch.load(buffer), link, rtol=0, atol=0)
    torch.testing.assert_close(pickle.loads(pickle.dumps(link)), link, rtol=0, atol=0)

    # In-place ops, views and growing the storage.
    link.mul_(2).add_(1)
    torch.testing.assert_close(link, expected * 2 + 1)
    link[0].zero_()
    assert torch.equal(link[0], torch.zeros_like(link[0]))
    link.resize_(3, 128, 128)
    torch.testing.assert_close(link[1], expected[1] * 2 + 1)
    assert not cpp.is_pooled(link)  # reallocated by torch's allocator, the block returned


def test_saved_link_survives_pool_clear(cpp):
    """A link saved for backward lives on through clear_pool and gives the right grads."""
    inputs = make_inputs(*POOLED, seed=26)
    _, expected = grads_of("reference", inputs)
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    # Two steps: the first's L_t (pooled) is saved by the second.
    mid = fused_link.link_step(*leaves, backend="cpp")
    out = fused_link.link_step(mid[0], *leaves[1:], backend="cpp")
    fused_link.clear_pool()
    garbage = [fused_link.link_step(*inputs, backend="cpp")[0] for _ in range(3)]
    for g in garbage:
        g.fill_(float("nan"))
    loss = weighted_loss(out) + weighted_loss(mid, seed=2)
    actual = torch.autograd.grad(loss, leaves)
    ref_leaves = [t.detach().clone().requires_grad_() for t in inputs]
    ref_mid = fused_link.link_step(*ref_leaves, backend="reference")
    ref_out = fused_link.link_step(ref_mid[0], *ref_leaves[1:], backend="reference")
    ref_loss = weighted_loss(ref_out) + weighted_loss(ref_mid, seed=2)
    assert_close(actual, torch.autograd.grad(ref_loss, ref_leaves), torch.float64)
    del expected


# ----------------------------------------------------------- backward written over dL_t


def chain(backend, inputs, steps, hook=None, retain=False):
    """`steps` link steps from inputs[0] with the same weights; returns (links, loss)."""
    link, write, precedence, read = inputs
    links, loss = [], 0
    for t in range(steps):
        link, forward, backward = fused_link.link_step(link, write, precedence, read,
                                                       backend=backend)  # fmt: skip
        if hook is not None and t == steps // 2:
            link.register_hook(hook)
        if retain and t == steps // 2:
            link.retain_grad()
        links.append(link)
        loss = loss + weighted_loss((forward, backward), seed=t)
    return links, loss


def leaves_of(inputs):
    return [t.detach().clone().requires_grad_() for t in inputs]


def test_backward_overwrites_only_its_own_unshared_grad(cpp):
    """In a chain dL_t is a pool block owned by autograd alone: dL_{t-1} goes over it."""
    inputs = make_inputs(*POOLED, seed=30)
    leaves = leaves_of(inputs)
    _, loss = chain("cpp", leaves, 4)
    before = fused_link.pool_stats()
    loss.backward()
    # Only the last step (no dL_t) needed a fresh block; the other three wrote in place.
    delta = pool_delta(before)
    assert delta["hits"] + delta["misses"] == 1
    ref = leaves_of(inputs)
    chain("reference", ref, 4)[1].backward()
    assert_close([t.grad for t in leaves], [t.grad for t in ref], torch.float64)


def test_gradient_kept_by_a_hook_is_not_overwritten(cpp):
    inputs = make_inputs(*POOLED, seed=31)
    kept, copies = [], []

    def hook(grad):
        kept.append(grad)
        copies.append(grad.clone())

    leaves = leaves_of(inputs)
    chain("cpp", leaves, 5, hook=hook)[1].backward()
    # The torch backend has the same graph (the reads inside the node, unlike "reference"), so
    # the same gradient reaches the hooked link.
    ref = leaves_of(inputs)
    ref_kept = []
    chain("torch", ref, 5, hook=ref_kept.append)[1].backward()
    assert len(kept) == 1
    torch.testing.assert_close(kept[0], copies[0], rtol=0, atol=0)
    torch.testing.assert_close(kept[0], ref_kept[0])
    assert_close([t.grad for t in leaves], [t.grad for t in ref], torch.float64)


def test_gradient_view_kept_by_a_hook_is_not_overwritten(cpp):
    inputs = make_inputs(*POOLED, seed=32)
    kept = []

    def hook(grad):
        kept.append((grad[0], grad[0].clone(), grad.untyped_storage()))

    leaves = leaves_of(inputs)
    chain("cpp", leaves, 5, hook=hook)[1].backward()
    torch.testing.assert_close(kept[0][0], kept[0][1], rtol=0, atol=0)


def test_captured_and_retained_gradients_are_not_overwritten(cpp):
    def run(backend):
        leaves = leaves_of(make_inputs(*POOLED, seed=33))
        links, loss = chain(backend, leaves, 5, retain=True)  # retains links[2].grad
        # torch.autograd.grad captures dL of an intermediate link while the chain continues
        # through it to the leaves.
        grads = torch.autograd.grad(loss, [links[3], *leaves], retain_graph=True)
        loss.backward()
        return [*grads, links[2].grad, *(t.grad for t in leaves)]

    # The torch backend has the same graph (see above).
    assert_close(run("cpp"), run("torch"), torch.float64)


def test_user_gradient_is_never_overwritten(cpp):
    inputs = make_inputs(*POOLED, seed=34)
    leaves = leaves_of(inputs)
    links, _ = chain("cpp", leaves, 2)
    grad = torch.randn(links[-1].shape, dtype=links[-1].dtype)
    expected = grad.clone()
    torch.autograd.backward(links[-1], grad)
    torch.testing.assert_close(grad, expected, rtol=0, atol=0)


def test_second_order_gradients_raise(cpp):
    inputs = [t.requires_grad_() for t in make_inputs(2, 1, 5, seed=35)]
    weight = torch.randn(2, 1, 5, dtype=torch.float64, requires_grad=True)
    _, forward, _ = fused_link.link_step(*inputs, backend="cpp")
    (grad_write,) = torch.autograd.grad((forward * weight).sum(), inputs[1], create_graph=True)
    _, expected = grads_of("reference", inputs, lambda outs: (outs[1] * weight).sum())
    torch.testing.assert_close(grad_write, expected[1])  # first order still right
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad_write.sum().backward()
