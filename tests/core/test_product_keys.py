"""Product-key memory: the k x k candidate lookup is the exact top k, the read, the layer."""

from __future__ import annotations

import pytest
import torch

from torchmem import GatedMemory, MemoryLayer, RecurrentMemoryLayer, TransformerMemoryLayer
from torchmem.core.product_keys import all_product_scores, product_key_read, product_key_topk


@pytest.mark.parametrize("n, k", [(8, 1), (8, 5), (16, 12), (5, 25)])
def test_the_lookup_finds_the_exact_top_k_of_all_n_squared_keys(n, k):
    g = torch.Generator().manual_seed(n * 100 + k)
    query = torch.randn(6, 3, 10, generator=g, dtype=torch.float64)  # (B, H, D)
    subkeys = torch.randn(3, 2, n, 5, generator=g, dtype=torch.float64)
    scores, indices = product_key_topk(query, subkeys, k)
    brute = all_product_scores(query, subkeys)  # (B, H, n^2)
    best, where = brute.topk(k, dim=-1)
    assert torch.allclose(scores, best) and torch.equal(indices, where)
    # index i * n + j is the pair of sub-key i of the first half and j of the second
    i, j = indices // n, indices % n
    first = (query[..., None, :5] * subkeys[:, 0][torch.arange(3)[:, None], i]).sum(-1)
    second = (query[..., None, 5:] * subkeys[:, 1][torch.arange(3)[:, None], j]).sum(-1)
    assert torch.allclose(scores, first + second)


def test_the_read_is_the_softmax_of_the_top_k_over_their_values():
    g = torch.Generator().manual_seed(0)
    query = torch.randn(4, 2, 6, generator=g, dtype=torch.float64)
    subkeys = torch.randn(2, 2, 7, 3, generator=g, dtype=torch.float64)
    values = torch.randn(49, 5, generator=g, dtype=torch.float64)
    read, weights, indices = product_key_read(query, subkeys, values, 4)
    scores = all_product_scores(query, subkeys)
    top = scores.topk(4, dim=-1)
    expected = (torch.softmax(top.values, -1)[..., None] * values[top.indices]).sum(-2)
    assert torch.allclose(read, expected) and torch.allclose(
        weights.sum(-1), torch.ones(4, 2, dtype=torch.float64)
    )
    for t in (query, subkeys, values):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda q, s, v: product_key_read(q, s, v, 4)[0], (query, subkeys, values)
    )


def test_memory_layer_reads_k_values_per_head_and_only_they_learn():
    torch.manual_seed(0)
    layer = MemoryLayer(12, 8, subkeys=16, heads=2, topk=4, key_size=10)
    assert layer.memory_size == 256
    x = torch.randn(3, 5, 12)
    read, weights, indices = layer.lookup(x)
    assert read.shape == (3, 5, 8) and weights.shape == indices.shape == (3, 5, 2, 4)
    assert torch.allclose(
        layer(x[:, 2]), read[:, 2], atol=1e-6
    )  # any leading dims, position by position
    read.sum().backward()
    touched = (layer.values.grad.abs().sum(-1) > 0).nonzero().flatten()
    assert set(touched.tolist()) <= set(indices.flatten().tolist())
    assert len(touched) <= 3 * 5 * 2 * 4 < layer.memory_size


def test_gated_memory_starts_close_to_its_input_and_errors_are_clear():
    torch.manual_seed(0)
    gated = GatedMemory(6, subkeys=4, heads=1, topk=2, key_size=4)
    x = torch.randn(10, 6)
    g = torch.sigmoid(gated.gate(x)).detach()
    assert torch.allclose(gated(x), (1 - g) * x + g * gated.memory(x))
    assert float(g.mean()) < 0.25  # gate bias -2: mostly the input at first
    with pytest.raises(ValueError, match="inputs of width 6 in the last dim, got shape"):
        gated.memory(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="key_size must be even"):
        MemoryLayer(4, key_size=5)
    with pytest.raises(ValueError, match=r"topk \(20\) cannot exceed the number of values"):
        MemoryLayer(4, subkeys=4, topk=20)
    with pytest.raises(ValueError, match="heads must be a positive integer"):
        MemoryLayer(4, heads=0)


def test_recurrent_memory_layer_whole_equals_chunks_equals_steps_and_starts_as_identity():
    torch.manual_seed(0)
    layer = RecurrentMemoryLayer(6, heads=2, key_size=4, value_size=3).double()
    x = torch.randn(3, 7, 6, dtype=torch.float64)
    y, state = layer(x)
    assert torch.equal(y, x)  # the read-out starts at zero
    torch.nn.init.normal_(layer.read_out.weight)
    y, state = layer(x)
    y1, s1 = layer(x[:, :3])
    y2, s2 = layer(x[:, 3:], s1)
    assert torch.allclose(torch.cat([y1, y2], 1), y) and torch.allclose(s2.memory, state.memory)
    steps, s = [], None
    for t in range(7):
        out, s = layer(x[:, t : t + 1], s)
        steps.append(out)
    assert torch.allclose(torch.cat(steps, 1), y)
    # batch independence and the delta rule's own state shape
    assert torch.allclose(layer(x[:1])[0], y[:1])
    assert state.memory.shape == (3, 2, 3, 4)
    x.requires_grad_(True)
    small = RecurrentMemoryLayer(4, heads=1, key_size=2, value_size=2).double()
    torch.nn.init.normal_(small.read_out.weight)
    assert torch.autograd.gradcheck(
        lambda v: small(v)[0], (x[:2, :3, :4].detach().requires_grad_(True),)
    )
    with pytest.raises(ValueError, match="input_size=6"):
        layer(torch.zeros(2, 3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="heads must be a positive integer"):
        RecurrentMemoryLayer(4, heads=0)


def test_transformer_memory_layer_carries_memory_tokens_across_segments():
    torch.manual_seed(0)
    layer = TransformerMemoryLayer(8, memory_tokens=3, segment_length=4, heads=2).double().eval()
    x = torch.randn(2, 12, 8, dtype=torch.float64)
    y, state = layer(x)
    assert y.shape == (2, 12, 8) and state.memory.shape == (2, 3, 8)
    # calls split at segment boundaries give the same outputs and memory
    y1, s1 = layer(x[:, :8])
    y2, s2 = layer(x[:, 8:], s1)
    assert torch.allclose(torch.cat([y1, y2], 1), y) and torch.allclose(s2.memory, state.memory)
    # causal within a segment: changing step 6 leaves steps 0-5 as they were
    # (a random change: a constant shift of one token would vanish in the layer norm)
    changed = x.clone()
    changed[:, 6] += torch.randn(2, 8, dtype=torch.float64)
    y_changed, _ = layer(changed)
    assert torch.allclose(y_changed[:, :6], y[:, :6]) and not torch.allclose(
        y_changed[:, 6], y[:, 6]
    )
    # the memory carries the first segment into the later ones
    early = x.clone()
    early[:, 0] += torch.randn(2, 8, dtype=torch.float64)
    assert not torch.allclose(layer(early)[0][:, 8:], y[:, 8:])
    # batch independence, and gradient reaches the learned initial memory
    assert torch.allclose(layer(x[:1])[0], y[:1])
    layer(x)[0].sum().backward()
    assert layer.initial_memory.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="must divide by heads"):
        TransformerMemoryLayer(6, heads=4)
