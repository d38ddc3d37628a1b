"""Addressing maths against hand-computed values, invariants and float64 gradcheck."""

import math

import pytest
import torch

from torchmem.core import addressing as A


def test_cosine_similarity_by_hand():
    memory = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]])
    keys = torch.tensor([[[3.0, 0.0]]])
    sim = A.cosine_similarity(memory, keys, eps=0.0)
    assert torch.allclose(sim, torch.tensor([[[1.0, 0.0, 1 / math.sqrt(2)]]]))


def test_content_weights_is_softmax_of_scaled_similarity():
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    keys = torch.tensor([[[1.0, 0.0]]])
    w = A.content_weights(memory, keys, torch.tensor([[2.0]]))
    e = math.exp(2.0)
    assert torch.allclose(w, torch.tensor([[[e / (e + 1), 1 / (e + 1)]]]), atol=1e-6)


def test_masked_content_weights_ignore_masked_columns():
    # Column 1 differs wildly, but the mask hides it: both slots match the key equally.
    memory = torch.tensor([[[1.0, 5.0], [1.0, -3.0]]])
    keys = torch.tensor([[[1.0, 0.0]]])
    mask = torch.tensor([[[1.0, 0.0]]])
    w = A.content_weights(memory, keys, torch.tensor([[10.0]]), mask)
    assert torch.allclose(w, torch.full_like(w, 0.5), atol=1e-6)
    # With a full mask it equals the unmasked version.
    full = A.content_weights(memory, keys, torch.tensor([[10.0]]), torch.ones_like(mask))
    plain = A.content_weights(memory, keys, torch.tensor([[10.0]]))
    assert torch.allclose(full, plain, atol=1e-6)


def test_interpolate():
    c = torch.tensor([[[1.0, 0.0]]])
    p = torch.tensor([[[0.0, 1.0]]])
    assert torch.allclose(
        A.interpolate(c, p, torch.tensor([[0.25]])), torch.tensor([[[0.25, 0.75]]])
    )


def test_circular_shift_moves_weight_and_wraps():
    w = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    right = torch.tensor([[[0.0, 0.0, 1.0]]])  # offsets -1, 0, +1
    left = torch.tensor([[[1.0, 0.0, 0.0]]])
    assert torch.equal(A.circular_shift(w, right), torch.tensor([[[0.0, 1.0, 0.0, 0.0]]]))
    assert torch.equal(A.circular_shift(w, left), torch.tensor([[[0.0, 0.0, 0.0, 1.0]]]))


def test_circular_shift_matches_convolution_definition():
    g = torch.Generator().manual_seed(0)
    w = torch.softmax(torch.randn(2, 3, 7, generator=g), -1)
    s = torch.softmax(torch.randn(2, 3, 5, generator=g), -1)
    out = A.circular_shift(w, s)
    n, k = 7, 2
    expected = torch.zeros_like(w)
    for i in range(n):
        for j in range(n):
            offset = (i - j) % n
            offset = offset - n if offset > n // 2 else offset
            if -k <= offset <= k:
                expected[..., i] += w[..., j] * s[..., offset + k]
    assert torch.allclose(out, expected)
    assert torch.allclose(out.sum(-1), torch.ones(2, 3))
    with pytest.raises(ValueError, match="odd"):
        A.circular_shift(w, s[..., :4])


def test_sharpen_by_hand_and_normalised():
    w = torch.tensor([[[0.5, 0.25, 0.25]]])
    out = A.sharpen(w, torch.tensor([[2.0]]), eps=0.0)
    assert torch.allclose(out, torch.tensor([[[0.25, 0.0625, 0.0625]]]) / 0.375)


def test_erase_and_add_single_and_multi_head():
    memory = torch.ones(1, 2, 2)
    w = torch.tensor([[[1.0, 0.0]]])
    erase = torch.tensor([[[1.0, 0.5]]])
    add = torch.tensor([[[2.0, 3.0]]])
    out = A.erase_and_add(memory, w, erase, add)
    assert torch.allclose(out, torch.tensor([[[2.0, 3.5], [1.0, 1.0]]]))
    # Two heads: erasures multiply, additions sum (NTM section 3.2).
    g = torch.Generator().manual_seed(1)
    memory = torch.randn(2, 5, 3, generator=g)
    w = torch.softmax(torch.randn(2, 2, 5, generator=g), -1)
    e = torch.rand(2, 2, 3, generator=g)
    a = torch.randn(2, 2, 3, generator=g)
    out = A.erase_and_add(memory, w, e, a)
    expected = memory.clone()
    for h in range(2):
        expected = expected * (1 - w[:, h, :, None] * e[:, h, None, :])
    for h in range(2):
        expected = expected + w[:, h, :, None] * a[:, h, None, :]
    assert torch.allclose(out, expected)


def test_read_memory():
    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    assert torch.allclose(
        A.read_memory(memory, torch.tensor([[[0.25, 0.75]]])), torch.tensor([[[2.5, 3.5]]])
    )


def test_ntm_address_is_a_distribution():
    g = torch.Generator().manual_seed(2)
    b, h, n, w = 3, 2, 6, 4
    out = A.ntm_address(
        torch.randn(b, n, w, generator=g),
        torch.softmax(torch.randn(b, h, n, generator=g), -1),
        torch.randn(b, h, w, generator=g),
        torch.rand(b, h, generator=g) * 5,
        torch.rand(b, h, generator=g),
        torch.softmax(torch.randn(b, h, 3, generator=g), -1),
        1 + torch.rand(b, h, generator=g) * 3,
    )
    assert (out >= 0).all()
    assert torch.allclose(out.sum(-1), torch.ones(b, h))


def test_gradcheck_addressing_pipeline():
    g = torch.Generator().manual_seed(3)
    b, h, n, w = 2, 2, 5, 3
    inputs = (
        torch.randn(b, n, w, generator=g),
        torch.softmax(torch.randn(b, h, n, generator=g), -1),
        torch.randn(b, h, w, generator=g),
        torch.rand(b, h, generator=g) * 3,
        torch.rand(b, h, generator=g),
        torch.softmax(torch.randn(b, h, 3, generator=g), -1),
        1 + torch.rand(b, h, generator=g),
    )
    inputs = tuple(t.requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(A.ntm_address, inputs)
    mask = torch.rand(b, h, w, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(A.content_weights, (inputs[0], inputs[2], inputs[3], mask))


def test_zero_memory_gives_finite_gradients():
    memory = torch.zeros(2, 4, 3, requires_grad=True)
    keys = torch.zeros(2, 1, 3, requires_grad=True)
    strengths = torch.ones(2, 1, requires_grad=True)
    mask = torch.full((2, 1, 3), 0.5, requires_grad=True)
    for m in (None, mask):
        w = A.content_weights(memory, keys, strengths, m)
        assert torch.allclose(w, torch.full_like(w, 0.25))
        w.pow(2).sum().backward()
        for t in (memory, keys, strengths):
            assert torch.isfinite(t.grad).all()
