"""MemNet's pure maths: Hebbian graph, read policies, ages, noise, merging, regularisers.

Values recomputed by hand, invariants over many steps, float64 gradcheck.
"""

import math

import pytest
import torch

from torchmem.core import consolidation as C
from torchmem.core import hebbian as H
from torchmem.core import policies as P
from torchmem.core import regularizers as R

F64 = torch.float64


def t(values):
    return torch.tensor(values, dtype=F64)


def onehot(i, n=3):
    v = torch.zeros(1, n, dtype=F64)
    v[0, i] = 1
    return v


# -- Hebbian update and spreading activation ---------------------------------------------


def test_hebbian_update_by_hand():
    a = torch.zeros(1, 3, 3, dtype=F64)
    a = H.hebbian_update(a, onehot(0), onehot(1), rate=0.5, decay=0.1)
    assert torch.equal(a, t([[[0, 0.5, 0], [0, 0, 0], [0, 0, 0]]]))
    a = H.hebbian_update(a, onehot(0), onehot(1), rate=0.5, decay=0.1)
    assert torch.allclose(a[0, 0, 1], t(0.9 * 0.5 + 0.5))  # 0.95
    a = H.hebbian_update(a, onehot(0), onehot(1), rate=0.5, decay=0.1)
    assert torch.allclose(a[0, 0, 1], t(1.0))  # 0.9 * 0.95 + 0.5 = 1.355 > 1: row rescaled
    # soft activity: dA_ij = eta pre_i post_j off the diagonal, on top of the decayed A
    pre, post = t([[0.5, 0.5, 0.0]]), t([[0.0, 0.5, 0.5]])
    start = t([[[0, 0.2, 0], [0.4, 0, 0], [0, 0, 0]]])
    out = H.hebbian_update(start, pre, post, rate=1.0, decay=0.5, max_row_sum=None)
    expected = t([[[0, 0.1 + 0.25, 0.25], [0.2, 0, 0.25], [0, 0, 0]]])  # (1,1) dropped
    assert torch.allclose(out, expected)


def test_bound_rows_rescales_only_rows_above_the_bound():
    a = t([[[0, 1.5, 0.5], [0, 0, 0.2], [0.3, 0.3, 0]]])
    out = H.bound_rows(a)
    assert torch.allclose(out[0, 0], t([0, 0.75, 0.25]))
    assert torch.equal(out[0, 1:], a[0, 1:])
    assert torch.allclose(H.bound_rows(a, 0.5)[0, 2], t([0.25, 0.25, 0]))


def test_spread_activation_by_hand():
    w = t([[[1.0, 0.0, 0.0]]])
    a = t([[[0, 0.95, 0], [0, 0, 0.5], [0, 0, 0]]])
    assert torch.allclose(H.spread_activation(w, a, 0.2), t([[[0.8, 0.19, 0.0]]]))
    assert torch.equal(H.spread_activation(w, a, 0.0), w)
    # alpha may be a tensor per example and head
    w2 = t([[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]])
    out = H.spread_activation(w2, a, t([[[1.0], [0.0]]]))
    assert torch.allclose(out, t([[[0.0, 0.475, 0.25], [1.0, 0.0, 0.0]]]))


def _random_distributions(generator, steps, n, sharpness=5.0):
    return torch.softmax(sharpness * torch.randn(steps, 2, n, generator=generator, dtype=F64), -1)


def test_the_bare_additive_rule_saturates_and_the_bounds_hold():
    g = torch.Generator().manual_seed(0)
    n, steps, rate = 8, 2000, 0.5
    acts = _random_distributions(g, steps, n)
    bare = decayed = bounded = torch.zeros(2, n, n, dtype=F64)
    for s in range(1, steps):
        pre, post = acts[s - 1], acts[s]
        bare = H.hebbian_update(bare, pre, post, rate, decay=0.0, max_row_sum=None)
        decayed = H.hebbian_update(decayed, pre, post, rate, decay=0.05, max_row_sum=None)
        bounded = H.hebbian_update(bounded, pre, post, rate, decay=0.0, max_row_sum=1.0)
    assert bare.sum(dim=(1, 2)).min() > 0.3 * rate * steps  # grows linearly, without bound
    assert decayed.max() <= rate / 0.05 and decayed.sum(dim=(1, 2)).max() <= rate / 0.05 + 1e-9
    for a in (decayed, bounded):
        assert torch.isfinite(a).all() and (a >= 0).all()
        assert torch.equal(torch.diagonal(a, dim1=1, dim2=2), torch.zeros(2, n, dtype=F64))
    assert (bounded.sum(-1) <= 1 + 1e-12).all()
    # with rows bounded by 1, spreading keeps a read a distribution's sub-distribution
    w = _random_distributions(g, 1, n)[0].unsqueeze(1)  # (2, 1, N)
    spread = H.spread_activation(w, bounded, 0.7)
    assert (spread >= 0).all() and (spread.sum(-1) <= 1 + 1e-12).all()
    assert (bounded.sum(-1) > 0.99).all()  # the rows did fill up: the bound was needed


def test_hebbian_gradcheck():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(1, 4, 4, generator=g, dtype=F64) * 0.1
    pre, post = (torch.softmax(torch.randn(1, 4, generator=g, dtype=F64), -1) for _ in "ab")
    w = torch.softmax(torch.randn(1, 2, 4, generator=g, dtype=F64), -1)
    inputs = tuple(x.requires_grad_() for x in (a, pre, post, w))
    assert torch.autograd.gradcheck(
        lambda a, p, q, w: H.spread_activation(w, H.hebbian_update(a, p, q, 0.7, 0.1), 0.3),
        inputs,
    )


# -- read policies -----------------------------------------------------------------------


def test_top_k_selects_the_best_slots():
    scores = t([[[0.1, 2.0, -1.0, 1.5, 0.3]]])
    w = P.top_k_weights(scores, 2)
    e = torch.softmax(t([2.0, 1.5]), -1)
    assert torch.allclose(w, t([[[0.0, e[0], 0.0, e[1], 0.0]]]))
    assert torch.allclose(P.top_k_weights(scores, 5), torch.softmax(scores, -1))
    assert torch.allclose(P.top_k_weights(scores, 9), torch.softmax(scores, -1))
    with pytest.raises(ValueError, match="k >= 1"):
        P.top_k_weights(scores, 0)
    scores = scores.clone().requires_grad_()
    P.top_k_weights(scores, 2)[0, 0, 1].backward()
    assert scores.grad[0, 0, [0, 2, 4]].abs().sum() == 0 and scores.grad[0, 0, 1] > 0


def test_policy_mixture_rows_are_distributions():
    g = torch.Generator().manual_seed(2)
    scores = 3 * torch.randn(4, 3, 10, generator=g, dtype=F64)
    gumbel = P.gumbel_from_uniform(torch.rand(4, 3, 10, generator=g, dtype=F64))
    candidates = P.policy_candidates(scores, P.POLICIES, 3, 0.5, gumbel)
    assert candidates.shape == (4, 3, 3, 10)
    gates = torch.softmax(torch.randn(4, 3, 3, generator=g, dtype=F64), -1)
    mixed = P.mix_policies(candidates, gates)
    for w in (candidates, mixed):
        assert (w >= 0).all() and torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)))
    assert torch.allclose(mixed, (gates.unsqueeze(-1) * candidates).sum(-2))
    assert torch.allclose(candidates[:, :, 1], torch.full_like(mixed, 0.1))  # uniform
    assert torch.allclose(candidates[:, :, 2], torch.softmax((scores + gumbel) / 0.5, -1))
    assert torch.allclose(P.random_weights(scores, None, 2.0), torch.softmax(scores / 2, -1))
    with pytest.raises(ValueError, match="unknown read policy 'greedy'"):
        P.policy_candidates(scores, ("topk", "greedy"), 3, 1.0)


def test_counter_noise_is_deterministic_uniform_and_samples_the_softmax():
    key, counter = torch.tensor([7, 7, 8]), torch.tensor([0, 1, 0])
    u = P.counter_uniform(key, counter, (2, 5), F64)
    assert u.shape == (3, 2, 5) and (u > 0).all() and (u < 1).all()
    assert torch.equal(u, P.counter_uniform(key, counter, (2, 5), F64))
    assert torch.equal(u[0], P.counter_uniform(key[:1], counter[:1], (2, 5), F64)[0])
    assert not torch.equal(u[0], u[1]) and not torch.equal(u[0], u[2])
    with pytest.raises(TypeError, match="int64"):
        P.counter_uniform(key.int(), counter, (2,), F64)
    # Gumbel-max: argmax(s + g) is a sample of softmax(s); the hashed noise must get that right
    draws = 20000
    u = P.counter_uniform(torch.full((draws,), 3), torch.arange(draws), (4,), F64)
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.005
    scores = t([1.0, 0.0, -1.0, 0.5])
    picks = torch.argmax(scores + P.gumbel_from_uniform(u), -1)
    freq = torch.bincount(picks, minlength=4).to(F64) / draws
    assert torch.allclose(freq, torch.softmax(scores, -1), atol=0.015)


def test_ages_and_age_based_allocation_by_hand():
    ages = t([[3.0, 1.0, 0.0]])
    full = t([[[0.0, 1.0, 0.0]]])
    assert torch.equal(P.update_ages(ages, full), t([[4.0, 0.0, 1.0]]))
    two_heads = t([[[0.5, 0.0, 0.0], [0.5, 0.0, 0.0]]])
    assert torch.allclose(P.update_ages(ages, two_heads), t([[1.0, 2.0, 1.0]]))
    w = P.age_weights(ages, t([[2.0]]))
    e = torch.exp(t([6.0, 2.0, 0.0]))
    assert torch.allclose(w, (e / e.sum()).view(1, 1, 3))


# -- merging redundant slots (dreaming) --------------------------------------------------


def _orthogonal_memory(n=5, w=6, seed=3):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(w, w, generator=g, dtype=F64))
    return q[:n].clone().unsqueeze(0) * 2.0  # (1, n, w), orthogonal rows of norm 2


def test_merge_two_identical_slots():
    memory = _orthogonal_memory()
    memory[0, 3] = memory[0, 1]  # slot 3 duplicates slot 1
    memory[0, 4] = 0.0  # an empty slot: never merged
    ages = t([[5.0, 2.0, 7.0, 1.0, 9.0]])
    adj = torch.zeros(1, 5, 5, dtype=F64)
    adj[0, 0, 3] = 0.4  # 0 -> 3
    adj[0, 3, 2] = 0.6  # 3 -> 2
    adj[0, 1, 3] = 0.5  # 1 -> 3 becomes a self-loop, dropped
    adj[0, 2, 0] = 0.3
    out = C.merge_redundant_slots(memory, ages, adj, threshold=0.9)
    assert torch.allclose(out.freed, t([[0, 0, 0, 1, 0]]))
    expected_memory = memory.clone()
    expected_memory[0, 3] = 0.0
    assert torch.allclose(out.memory, expected_memory, atol=1e-12)
    assert torch.allclose(out.ages, t([[5.0, 2.0, 7.0, 10.0, 9.0]]))  # freed slot: the oldest
    expected_adj = torch.zeros(1, 5, 5, dtype=F64)
    expected_adj[0, 0, 1] = 0.4  # 0 -> 3 now 0 -> 1
    expected_adj[0, 1, 2] = 0.6  # 3 -> 2 now 1 -> 2
    expected_adj[0, 2, 0] = 0.3
    assert torch.allclose(out.adjacency, expected_adj, atol=1e-12)


def test_merge_chains_ramp_and_mass():
    memory = _orthogonal_memory()
    memory[0, 2] = memory[0, 0]
    memory[0, 4] = memory[0, 0]  # three copies of slot 0: both later ones go to slot 0
    merge, freed = C.merge_matrix(C.duplicate_scores(memory, 0.9))
    assert torch.allclose(freed, t([[0, 0, 1, 0, 1]]))
    assert torch.allclose(merge.sum(-2), torch.ones(1, 5, dtype=F64))  # column-stochastic
    assert merge[0, 0, 2] == 1 and merge[0, 0, 4] == 1 and merge[0, 2, 4] == 0
    # the ramp: m = clip(2 (cos - theta) / (1 - theta), 0, 1)
    angle = math.acos(0.93)
    pair = t([[[1.0, 0.0], [math.cos(angle), math.sin(angle)]]])
    assert torch.allclose(C.duplicate_scores(pair, 0.9)[0, 0, 1], t(0.6), atol=1e-9)
    with pytest.raises(ValueError, match="threshold must be < 1"):
        C.duplicate_scores(pair, 1.0)


def test_merge_gradcheck_between_the_kinks():
    angle = math.acos(0.93)  # inside the ramp: partly merged
    memory = t([[[1.0, 0.0, 0.2], [math.cos(angle), math.sin(angle), 0.2], [0.0, 0.3, 1.0]]])
    ages = t([[1.0, 2.0, 3.0]])
    adj = t([[[0, 0.2, 0.1], [0.3, 0, 0.1], [0.1, 0.2, 0]]])
    inputs = tuple(x.requires_grad_() for x in (memory, ages, adj))
    assert torch.autograd.gradcheck(
        lambda m, a, g: C.merge_redundant_slots(m, a, g, 0.9)[:3], inputs
    )


# -- regularisers ------------------------------------------------------------------------


def test_regularizers_by_hand():
    assert torch.allclose(R.entropy(t([0.5, 0.5, 0.0])), t(math.log(2)))
    assert torch.allclose(R.normalized_entropy(t([0.25] * 4)), t(1.0))
    assert R.normalized_entropy(t([[1.0]])).item() == 0.0
    onehots = torch.eye(4, dtype=F64).view(1, 4, 1, 4)  # (B, T, H, N): slot t at step t
    assert torch.allclose(R.utilization_loss(onehots), t(0.0))  # all slots used equally
    assert torch.allclose(R.sparsity_loss(onehots), t(0.0))  # every read sharp
    collapsed = onehots[:, :, :, :1].expand(1, 4, 1, 4) * t([1.0, 0, 0, 0])
    assert torch.allclose(R.utilization_loss(collapsed), t(1.0))
    uniform = torch.full((2, 3, 2, 4), 0.25, dtype=F64)
    assert torch.allclose(R.sparsity_loss(uniform), t(1.0))
    assert torch.allclose(R.reconstruction_loss(t([[[1.0, 2.0]]]), t([[[0.0, 0.0]]])), t(2.5))
    w = onehots.clone().requires_grad_()  # exact zeros: finite gradients
    (R.utilization_loss(w) + R.sparsity_loss(w)).backward()
    assert torch.isfinite(w.grad).all()
