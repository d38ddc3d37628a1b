"""Associative-memory maths: modern Hopfield retrieval and energy, delta-rule fast weights,
and the two models built on them."""

from __future__ import annotations

import math

import pytest
import torch

from torchmem import AttentionMemory, FastWeights, HierarchicalMemory, HopfieldMemory
from torchmem.core.associative import (
    delta_rule_write,
    fast_weight_read,
    hopfield_energy,
    hopfield_retrieve,
    recent_summary,
    ring_write,
)

G = torch.Generator().manual_seed(0)


def randn(*shape, dtype=torch.float64):
    return torch.randn(*shape, generator=G, dtype=dtype)


def test_hopfield_retrieve_by_hand():
    patterns = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    values = torch.tensor([[1.0], [2.0], [3.0]])
    query = torch.tensor([[1.0, 0.0]])
    out, weights = hopfield_retrieve(query, patterns, 2.0, values)
    z = torch.tensor([2.0, 0.0, 2.0])  # beta * X^T xi
    expected = torch.softmax(z, 0)
    assert torch.allclose(weights[0], expected)
    assert torch.allclose(out[0], expected @ values)
    # Without values the patterns themselves come back; masked slots get no weight.
    out, weights = hopfield_retrieve(query, patterns, 2.0, mask=torch.tensor([True, True, False]))
    assert weights[0, 2] == 0 and torch.allclose(weights.sum(-1), torch.ones(1))
    assert torch.allclose(out[0], torch.softmax(z[:2], 0) @ patterns[:2])
    # One beta per query.
    both = torch.cat([query, query])
    _, w = hopfield_retrieve(both, patterns, torch.tensor([2.0, 50.0]))
    assert torch.allclose(w[0], expected) and w[1, 1] < 1e-20


def test_hopfield_update_never_raises_the_energy_and_retrieves_a_stored_pattern():
    patterns = randn(4, 10, 16)  # 4 batches of 10 patterns
    for beta in (0.1, 1.0, 8.0):
        xi = randn(4, 3, 16)
        energy = hopfield_energy(xi, patterns, beta)
        for _ in range(6):
            xi, _ = hopfield_retrieve(xi, patterns, beta)
            new = hopfield_energy(xi, patterns, beta)
            assert (new <= energy + 1e-9).all()
            energy = new
    # At a large beta a noisy cue of pattern 3 converges to pattern 3 in one step.
    cue = patterns[:, 3:4] + 0.3 * randn(4, 1, 16)
    out, weights = hopfield_retrieve(cue, patterns, 8.0)
    assert (weights[:, 0].argmax(-1) == 3).all()
    assert torch.allclose(out, patterns[:, 3:4], atol=1e-3)


def test_hopfield_energy_by_hand():
    patterns = torch.tensor([[[3.0, 4.0], [0.0, 1.0]]])  # M = 5
    xi = torch.tensor([[[1.0, 0.0]]])
    beta = 0.5
    lse = math.log(math.exp(beta * 3.0) + math.exp(0.0)) / beta
    expected = -lse + 0.5 + math.log(2) / beta + 0.5 * 25
    assert hopfield_energy(xi, patterns, beta).item() == pytest.approx(expected)


def test_delta_rule_overwrites_one_association_and_leaves_orthogonal_ones():
    memory = randn(3, 5, 4)  # (B, E, D)
    key = torch.nn.functional.normalize(randn(3, 4), dim=-1)
    value = randn(3, 5)
    written = delta_rule_write(memory, key, value, torch.ones(3))
    assert torch.allclose(fast_weight_read(written, key), value)  # W' k = v
    other = randn(3, 4)
    orthogonal = other - (other * key).sum(-1, keepdim=True) * key
    assert torch.allclose(
        fast_weight_read(written, orthogonal), fast_weight_read(memory, orthogonal)
    )
    # beta in (0, 1): an interpolation from what was stored towards v
    beta = torch.tensor([0.0, 0.25, 0.9])
    partial = delta_rule_write(memory, key, value, beta)
    expected = (1 - beta[:, None]) * fast_weight_read(memory, key) + beta[:, None] * value
    assert torch.allclose(fast_weight_read(partial, key), expected)
    # the formula itself, element by element
    error = value - torch.einsum("bed,bd->be", memory, key)
    by_hand = memory + beta[:, None, None] * error[:, :, None] * key[:, None, :]
    assert torch.allclose(partial, by_hand)


def test_a_hebbian_write_cannot_overwrite_but_the_delta_rule_can():
    key = torch.tensor([[1.0, 0.0]])
    memory = torch.zeros(1, 1, 2)
    old, new = torch.tensor([[1.0]]), torch.tensor([[-2.0]])
    memory = delta_rule_write(memory, key, old, torch.ones(1))
    memory = delta_rule_write(memory, key, new, torch.ones(1))
    assert fast_weight_read(memory, key).item() == pytest.approx(-2.0)
    hebbian = old[:, :, None] * key[:, None] + new[:, :, None] * key[:, None]
    assert fast_weight_read(hebbian, key).item() == pytest.approx(-1.0)  # the sum, not -2


def test_gradcheck_of_the_maths():
    memory, key, value = randn(2, 3, 4), randn(2, 4), randn(2, 3)
    beta = torch.rand(2, generator=G, dtype=torch.float64)
    for t in (memory, key, value, beta):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(delta_rule_write, (memory, key, value, beta))
    query, patterns, values = randn(2, 2, 4), randn(2, 5, 4), randn(2, 5, 3)
    betas = torch.rand(2, 2, generator=G, dtype=torch.float64) + 0.5
    for t in (query, patterns, values, betas):
        t.requires_grad_(True)
    mask = torch.tensor([[True] * 5, [True, True, False, True, False]])
    assert torch.autograd.gradcheck(
        lambda *a: hopfield_retrieve(*a, mask=mask), (query, patterns, betas, values)
    )


def test_hopfield_model_keeps_the_last_n_patterns_in_a_ring():
    torch.manual_seed(0)
    model = HopfieldMemory(4, 3, hidden_size=8, memory_slots=3, key_size=5, value_size=4)
    x = torch.randn(2, 5, 4)
    _, first = model(x[:, :1])
    assert first.written_at.tolist() == [[1.0, 0.0, 0.0]] * 2
    assert (first.read_weights[..., 1:] == 0).all()  # empty slots are never read
    _, state = model(x)
    assert state.written_at.tolist() == [[4.0, 5.0, 3.0]] * 2  # steps 4 and 5 wrapped round
    # what step 5 wrote is in slot 1: the keys are unit vectors
    assert torch.allclose(state.keys.norm(dim=-1), torch.ones(2, 3), atol=1e-5)


def test_fast_weights_memory_follows_the_delta_rule():
    torch.manual_seed(0)
    model = FastWeights(4, 3, hidden_size=8, key_size=5, value_size=4).double()
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    _, before = model(x[:, :2])
    _, after = model(x[:, 2:], before)
    # Recompute step 3's write from the interface by hand.
    hidden, _ = model.controller.step(
        torch.cat([x[:, 2], before.read_vectors.flatten(1)], -1), before.controller
    )
    key, value, beta, _ = model.interface(hidden).split([5, 4, 1, 5], -1)
    key = key / key.norm(dim=-1, keepdim=True)
    expected = delta_rule_write(before.memory, key, value, torch.sigmoid(beta[:, 0]))
    assert torch.allclose(after.memory, expected, atol=1e-9)
    assert torch.allclose(after.write_strength, torch.sigmoid(beta[:, 0]))


def test_ring_write_and_recent_summary_by_hand():
    keys, values, written = torch.zeros(1, 3, 2), torch.zeros(1, 3, 1), torch.zeros(1, 3)
    one = torch.ones(1)
    for step, (k, v) in enumerate([([1.0, 0.0], 1.0), ([0.0, 1.0], 3.0), ([1.0, 1.0], 5.0)], 1):
        keys, values, written = ring_write(
            keys, values, written, torch.tensor([k]), torch.tensor([[v]]), step * one, one
        )
    assert written.tolist() == [[1.0, 2.0, 3.0]]
    # a closed gate leaves everything as it was; the next open one replaces the oldest slot
    same = ring_write(keys, values, written, torch.ones(1, 2), torch.ones(1, 1), 4 * one, 0 * one)
    assert all(torch.equal(a, b) for a, b in zip(same, (keys, values, written)))
    keys, values, written = ring_write(
        keys, values, written, torch.tensor([[0.0, -1.0]]), torch.tensor([[7.0]]), 5 * one, one
    )
    assert written.tolist() == [[5.0, 2.0, 3.0]] and values[0, 0, 0] == 7.0
    # summary of the slots written after step 2: steps 3 and 5
    key, value = recent_summary(keys, values, written, 2 * one)
    assert value.item() == pytest.approx(6.0)
    assert torch.allclose(key, torch.nn.functional.normalize(torch.tensor([[1.0, 0.0]]), dim=-1))


def test_hierarchical_levels_are_written_at_their_time_scales_with_summaries():
    torch.manual_seed(0)
    model = HierarchicalMemory(
        4, 3, hidden_size=8, levels=3, memory_slots=4, stride=2, key_size=5, value_size=3
    ).double()
    x = torch.randn(2, 8, 4, dtype=torch.float64)
    final = None
    for t in range(8):  # step by step, as the schedule is per step
        _, final = model(x[:, t : t + 1], final)
    # level 0 every step (ring of 4: steps 5-8), level 1 every 2 (steps 2-8), level 2 every 4
    assert sorted(final.written_at[0, 0].tolist()) == [5.0, 6.0, 7.0, 8.0]
    assert sorted(final.written_at[0, 1].tolist()) == [2.0, 4.0, 6.0, 8.0]
    assert sorted(final.written_at[0, 2].tolist()) == [0.0, 0.0, 4.0, 8.0]
    # level 1's step-8 entry is the summary of level 0's steps 7 and 8
    slot1 = int((final.written_at[0, 1] == 8).nonzero())
    recent0 = final.written_at[0, 0] > 6
    assert torch.allclose(final.values[0, 1, slot1], final.values[0, 0][recent0].mean(0))
    mean_key = final.keys[0, 0][recent0].mean(0)
    assert torch.allclose(final.keys[0, 1, slot1], mean_key / mean_key.norm(), atol=1e-6)
    # reads put no weight on empty slots
    assert (final.read_weights[:, :, 2][:, :, final.written_at[0, 2] == 0] == 0).all()
    assert torch.allclose(final.read_weights.sum((-1, -2)), torch.ones(2, 1, dtype=torch.float64))


def test_hierarchical_rejects_a_ring_smaller_than_its_stride():
    with pytest.raises(ValueError, match=r"memory_slots \(2\) must be at least stride \(4\)"):
        HierarchicalMemory(4, 3, memory_slots=2, stride=4)


def test_attention_memory_reads_scaled_dot_product_attention_over_its_steps():
    torch.manual_seed(0)
    model = AttentionMemory(
        4, 3, hidden_size=8, memory_slots=3, num_heads=2, key_size=5, value_size=4
    ).double()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    _, state = model(x[:, :4])
    _, after = model(x[:, 4:], state)
    assert after.written_at.tolist() == [[4.0, 5.0, 3.0]] * 2  # a ring of the last 3 steps
    hidden, _ = model.controller.step(
        torch.cat([x[:, 4], state.read_vectors.flatten(1)], -1), state.controller
    )
    key, value, query = model.interface(hidden).unflatten(-1, (2, 14)).split([5, 4, 5], -1)
    assert torch.allclose(after.keys[:, :, 1], key) and torch.allclose(after.values[:, :, 1], value)
    scores = torch.einsum("bhd,bhnd->bhn", query, after.keys) / 5**0.5
    expected = torch.einsum("bhn,bhne->bhe", torch.softmax(scores, -1), after.values)
    assert torch.allclose(after.read_vectors, expected)
    # before the ring is full, empty slots get no weight
    _, first = model(x[:, :1])
    assert (first.read_weights[..., 1:] == 0).all()


@pytest.mark.parametrize(
    "cls, field, shape",
    [
        (FastWeights, "write_strength", (2, 5)),
        (HopfieldMemory, "read_weights", (2, 5, 1, 64)),
        (AttentionMemory, "read_weights", (2, 5, 4, 64)),
        (HierarchicalMemory, "read_weights", (2, 5, 1, 3, 16)),
    ],
)
def test_trace_gives_each_step(cls, field, shape):
    model = cls(4, 3)
    x = torch.randn(2, 5, 4)
    y, trace = model.trace(x)
    assert torch.equal(y, model(x)[0]) and trace[field].shape == shape
