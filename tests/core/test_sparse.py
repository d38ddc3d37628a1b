"""Sparse Access Memory: its equations by hand, gradients, and lazy == fully materialised."""

import math

import pytest
import torch

from torchmem import SAM, SparseDNC, detach_state
from torchmem.core.linkage import directional_weights, update_link, update_precedence
from torchmem.core.sparse import (
    dense_weights,
    least_recently_used,
    record_access,
    sam_write_weights,
    sparse_content_weights,
    sparse_directional_weights,
    sparse_link_update,
    sparse_precedence,
    sparse_read,
    sparse_write,
    top_entries,
    top_k_lowest_first,
)
from torchmem.models.sam import GROW_BLOCK, materialise

D = torch.float64


def test_top_k_breaks_ties_towards_the_lowest_index():
    scores = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0, -1.0]])
    assert top_k_lowest_first(scores, 4).tolist() == [[1, 3, 0, 2]]


def test_sparse_content_weights_by_hand():
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]], dtype=D)
    key = torch.tensor([[[2.0, 1.0]]], dtype=D)
    index, weight = sparse_content_weights(memory, key, torch.tensor([[3.0]], dtype=D), 2)
    # cosines: 2/sqrt5, 1/sqrt5, 3/sqrt10, -2/sqrt5 -> the two nearest are rows 2 and 0
    assert index.tolist() == [[[2, 0]]]
    cos = torch.tensor([3 / math.sqrt(10), 2 / math.sqrt(5)], dtype=D)
    expected = torch.softmax(3 * cos, dim=0)
    torch.testing.assert_close(weight[0, 0], expected, rtol=1e-5, atol=1e-6)


def test_sparse_read_is_the_dense_read_of_the_same_weights():
    g = torch.Generator().manual_seed(0)
    memory = torch.randn(3, 9, 4, generator=g, dtype=D)
    index = torch.randint(0, 9, (3, 2, 3), generator=g)
    weight = torch.rand(3, 2, 3, generator=g, dtype=D)
    dense = dense_weights(index, weight, 9)  # (3, 2, 9), repeated indices added
    torch.testing.assert_close(sparse_read(memory, index, weight), dense @ memory)


def test_least_recently_used_takes_the_oldest_lowest_index_first():
    last = torch.tensor([[3.0, -1.0, 2.0, -1.0], [5.0, 1.0, 1.0, 4.0]])
    assert least_recently_used(last).tolist() == [1, 1]


def test_sam_write_weights_by_hand():
    read_index = torch.tensor([[[4, 1], [1, 0]]])  # R = 2 heads, K = 2
    read_weight = torch.tensor([[[0.75, 0.25], [0.5, 0.5]]], dtype=D)
    alpha, gamma = torch.tensor([0.8], dtype=D), torch.tensor([0.6], dtype=D)
    index, weight = sam_write_weights(read_index, read_weight, torch.tensor([3]), alpha, gamma)
    assert index.tolist() == [[4, 1, 1, 0, 3]]
    expected = 0.8 * torch.tensor([0.6 * 0.375, 0.6 * 0.125, 0.6 * 0.25, 0.6 * 0.25, 0.4])
    torch.testing.assert_close(weight[0], expected.to(D))
    # a write weighting sums to alpha (each read weighting sums to one)
    torch.testing.assert_close(weight.sum(), torch.tensor(0.8, dtype=D))


def test_sparse_write_erases_the_lru_word_then_adds():
    memory = torch.arange(12, dtype=D).view(1, 4, 3)
    add = torch.tensor([[1.0, -1.0, 2.0]], dtype=D)
    index, weight = torch.tensor([[0, 2, 2]]), torch.tensor([[0.5, 0.25, 0.25]], dtype=D)
    out = sparse_write(memory, torch.tensor([2]), index, weight, add)
    expected = memory.clone()
    expected[0, 0] += 0.5 * add[0]
    expected[0, 2] = 0.5 * add[0]  # erased, then written with 0.25 + 0.25
    torch.testing.assert_close(out, expected)


def test_record_access_marks_weights_above_delta():
    last = torch.tensor([[-1.0, 2.0, -1.0, 0.0]])
    index, weight = torch.tensor([[0, 1, 3, 3]]), torch.tensor([[0.004, 0.5, 0.003, 0.003]])
    out = record_access(last, index, weight, torch.tensor([7.0]), delta=0.005)
    # row 3 gets 0.006 in total: accessed; row 0's 0.004 is not
    assert out.tolist() == [[-1.0, 7.0, -1.0, 7.0]]


def test_sparse_functions_gradcheck():
    g = torch.Generator().manual_seed(1)
    memory = torch.randn(2, 6, 3, generator=g, dtype=D, requires_grad=True)
    keys = torch.randn(2, 2, 3, generator=g, dtype=D, requires_grad=True)
    beta = torch.rand(2, 2, generator=g, dtype=D).add(1).requires_grad_()
    add = torch.randn(2, 3, generator=g, dtype=D, requires_grad=True)
    weight = torch.rand(2, 4, generator=g, dtype=D, requires_grad=True)
    index = torch.tensor([[0, 3, 3, 5], [1, 2, 4, 4]])
    lru = torch.tensor([5, 0])

    def read(memory, keys, beta):
        i, w = sparse_content_weights(memory, keys, beta, 3)
        return sparse_read(memory, i, w)

    assert torch.autograd.gradcheck(read, (memory, keys, beta))
    write = lambda m, w, a: sparse_write(m, lru, index, w, a)  # noqa: E731
    assert torch.autograd.gradcheck(write, (memory, weight, add))


def _padded(model, batch, rows):
    return materialise(model.initial_state(batch, dtype=D), rows, model.config.memory_init)


@pytest.mark.parametrize("model_class", [SAM, SparseDNC])
@pytest.mark.parametrize("heads,init", [(1, 0.0), (2, 0.1)])
def test_lazy_memory_equals_the_fully_materialised_one(model_class, heads, init):
    """Over 60 steps the lazy state grows several times; a state holding all N rows from
    the start (the dense SAM) makes the same choices and gives the same outputs and rows
    (up to the last bit of a matrix product over more rows)."""
    torch.manual_seed(0)
    slots = 600
    model = model_class(5, 3, hidden_size=16, memory_slots=slots, memory_width=4,
                        read_heads=heads, sparse_reads=3, memory_init=init).to(D)  # fmt: skip
    x = torch.randn(3, 60, 5, dtype=D)
    lazy_y, lazy = model(x)
    dense_y, dense = model(x, _padded(model, 3, slots))
    assert dense.memory.shape[1] == slots
    # it grew, and still holds fewer rows than N
    assert model.initial_state(1).memory.shape[1] < lazy.memory.shape[1] < slots
    _, lazy_trace = model.trace(x)
    _, dense_trace = model.trace(x, _padded(model, 3, slots))
    for field in ("read_index", "write_index"):
        assert torch.equal(lazy_trace[field], dense_trace[field])
    exact = dict(rtol=0, atol=1e-12)
    torch.testing.assert_close(lazy_y, dense_y, **exact)
    rows = lazy.memory.shape[1]
    torch.testing.assert_close(lazy.memory, dense.memory[:, :rows], **exact)
    assert torch.equal(lazy.last_access, dense.last_access[:, :rows])
    if model_class is SparseDNC:
        torch.testing.assert_close(lazy.link_weights, dense.link_weights[:, :rows], **exact)
        assert (dense.link_weights[:, rows:] == 0).all()
    # every row past the lazy state's is still untouched in the dense one
    assert (dense.memory[:, rows:] == init).all() and (dense.last_access[:, rows:] == -1).all()
    assert (lazy.frontier + model.config.sparse_reads + 1 <= rows).all()


@pytest.mark.parametrize("model_class", [SAM, SparseDNC])
def test_lazy_memory_stops_growing_at_n_slots(model_class):
    torch.manual_seed(0)
    model = model_class(5, 3, hidden_size=8, memory_slots=20, memory_width=4, sparse_reads=4)
    _, state = model(torch.randn(2, 40, 5))
    assert state.memory.shape[1] == 20
    # with every word touched the least recently used one is reused
    assert (state.last_access >= 0).all()


@pytest.mark.parametrize("model_class", [SAM, SparseDNC])
def test_a_step_costs_the_same_for_a_thousand_and_a_million_slots(model_class):
    """The same weights with N = 1e3 and N = 1e6: identical outputs and state sizes while
    an episode touches fewer than 1e3 words; gradients reach every parameter."""
    torch.manual_seed(0)
    small = model_class(5, 3, hidden_size=16, memory_slots=1000, memory_width=8, sparse_reads=4)
    large = model_class(5, 3, hidden_size=16, memory_slots=10**6, memory_width=8, sparse_reads=4)
    large.load_state_dict(small.state_dict())
    x = torch.randn(4, 30, 5)
    y_small, s_small = small(x)
    y_large, s_large = large(x)
    assert torch.equal(y_small, y_large)
    assert s_small.memory.shape == s_large.memory.shape
    assert s_large.memory.shape[1] < 30 * 9 + GROW_BLOCK + 5
    y_large.square().mean().backward()
    for name, p in large.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_gradient_flows_through_memory_from_a_write_to_a_later_read():
    """The write vector at step 0 reaches the read at step 3 through the memory only."""
    torch.manual_seed(0)
    model = SAM(5, 3, hidden_size=8, memory_slots=10**6, memory_width=4, sparse_reads=2).to(D)
    state = model.initial_state(1, dtype=D)
    _, state = model(torch.randn(1, 1, 5, dtype=D), state)
    memory = state.memory.detach().requires_grad_()
    # cut every other path: later steps see the memory, the rest of the state is detached
    state = detach_state(state)._replace(memory=memory)
    y, _ = model(torch.randn(1, 3, 5, dtype=D), state)
    (grad,) = torch.autograd.grad(y[:, -1].sum(), memory)
    assert grad.abs().sum() > 0
    assert grad[0, state.frontier.item() + 5 :].abs().sum() == 0  # untouched rows: no effect


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(sparse_reads=9, memory_slots=8), "sparse_reads"),
        (dict(access_threshold=1.5), "access_threshold"),
        (dict(memory_slots=0), "memory_slots"),
        (dict(reads=2), "unknown"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        SAM(5, 3, **options)


def _random_link(g, batch, rows, density=0.6):
    """A DNC-like link: non-negative, zero diagonal, rows summing to 0.8 at most."""
    link = torch.rand(batch, rows, rows, generator=g, dtype=D)
    link = link * (torch.rand(batch, rows, rows, generator=g, dtype=D) < density)
    link.diagonal(dim1=1, dim2=2).zero_()
    return 0.8 * link / link.sum(-1, keepdim=True).clamp_min(1e-9)


def _random_distribution(g, batch, rows, total=0.9, density=0.5):
    values = torch.rand(batch, rows, generator=g, dtype=D)
    values = values * (torch.rand(batch, rows, generator=g, dtype=D) < density)
    return total * values / values.sum(-1, keepdim=True).clamp_min(1e-9)


def test_sparse_links_uncut_are_the_dnc_links():
    """With K_L = S nothing is cut: link, precedence and directional weights are the DNC's."""
    g = torch.Generator().manual_seed(0)
    rows = 7
    link = _random_link(g, 3, rows)
    precedence = _random_distribution(g, 3, rows)
    write = _random_distribution(g, 3, rows)
    index, value = sparse_link_update(
        *top_entries(link, rows), write, *top_entries(precedence, rows)
    )
    expected = update_link(link, write, precedence)
    torch.testing.assert_close(dense_weights(index, value, rows), expected)
    p_index, p_value = sparse_precedence(*top_entries(precedence, rows), write, rows)
    torch.testing.assert_close(
        dense_weights(p_index, p_value, rows), update_precedence(precedence, write)
    )
    read = torch.rand(3, 2, rows, generator=g, dtype=D)
    for ours, theirs in zip(
        sparse_directional_weights(index, value, read), directional_weights(expected, read)
    ):
        torch.testing.assert_close(ours, theirs)


def test_sparse_links_cut_keep_the_largest_entries_of_the_dnc_update():
    g = torch.Generator().manual_seed(1)
    rows, keep = 9, 3
    link = dense_weights(*top_entries(_random_link(g, 2, rows), keep), rows)
    precedence = dense_weights(*top_entries(_random_distribution(g, 2, rows), keep), rows)
    write = _random_distribution(g, 2, rows)
    index, value = sparse_link_update(
        *top_entries(link, keep), write, *top_entries(precedence, keep)
    )
    expected = dense_weights(*top_entries(update_link(link, write, precedence), keep), rows)
    torch.testing.assert_close(dense_weights(index, value, rows), expected)


def test_sparse_links_follow_the_write_order():
    """Words written one at a time, 0 then 2 then 1: forward from 0 is 2, then 1."""
    rows, keep = 5, 2
    index, value = torch.zeros(1, rows, keep, dtype=torch.long), torch.zeros(1, rows, keep, dtype=D)
    p_index, p_value = torch.zeros(1, keep, dtype=torch.long), torch.zeros(1, keep, dtype=D)
    for word in (0, 2, 1):
        write = torch.nn.functional.one_hot(torch.tensor([word]), rows).to(D)
        index, value = sparse_link_update(index, value, write, p_index, p_value)
        p_index, p_value = sparse_precedence(p_index, p_value, write, keep)
    at = lambda w: torch.nn.functional.one_hot(torch.tensor([[w]]), rows).to(D)  # noqa: E731
    forward, backward = sparse_directional_weights(index, value, at(0))
    assert forward.argmax().item() == 2 and forward.max().item() == 1.0
    assert backward.sum().item() == 0  # nothing was written before word 0
    forward, backward = sparse_directional_weights(index, value, at(2))
    assert forward.argmax().item() == 1 and backward.argmax().item() == 0


def test_sparse_link_functions_gradcheck():
    g = torch.Generator().manual_seed(2)
    rows, keep = 6, 3
    # every entry positive: a perturbed zero would change which entries are kept
    link_index, link_value = top_entries(_random_link(g, 2, rows, density=1.1), keep)
    p_index, p_value = top_entries(_random_distribution(g, 2, rows, density=1.1), keep)
    link_value.requires_grad_()
    p_value.requires_grad_()
    write = _random_distribution(g, 2, rows).requires_grad_()
    read = torch.rand(2, 2, rows, generator=g, dtype=D, requires_grad=True)

    def step(link_value, p_value, write, read):
        index, value = sparse_link_update(link_index, link_value, write, p_index, p_value)
        forward, backward = sparse_directional_weights(index, value, read)
        return forward, backward, sparse_precedence(p_index, p_value, write, keep)[1]

    assert torch.autograd.gradcheck(step, (link_value, p_value, write, read))


def test_sparse_dnc_invariants_over_time():
    torch.manual_seed(3)
    model = SparseDNC(5, 3, hidden_size=16, memory_slots=10**5, memory_width=6, read_heads=2,
                      sparse_reads=3, link_entries=4)  # fmt: skip
    x = torch.randn(4, 25, 5)
    state = None
    for t in range(x.shape[1]):
        _, state = model(x[:, t : t + 1], state)
        link = state.link_weights
        assert (link >= 0).all() and (link.sum(-1) <= 1 + 1e-6).all()
        rows = torch.arange(link.shape[1]).view(1, -1, 1)
        assert (link[state.link_index == rows] == 0).all()  # no self-links
        assert (state.precedence >= 0).all() and (state.precedence.sum(-1) <= 1 + 1e-6).all()
        assert (state.read_weights >= 0).all()
        assert (state.read_weights.sum(-1) <= 1 + 1e-6).all()
        assert (state.write_weights.sum(-1) <= 1 + 1e-6).all()
