"""DNC allocation and linkage maths: hand-computed values, invariants, gradcheck."""

import pytest
import torch

from torchmem.core import allocation as M
from torchmem.core import linkage as L


def test_retention_and_usage_by_hand():
    free = torch.tensor([[1.0, 0.5]])
    read = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    psi = M.retention(free, read)
    assert torch.allclose(psi, torch.tensor([[0.0, 0.5, 1.0]]))
    usage = M.update_usage(torch.tensor([[0.5, 0.5, 0.5]]), torch.tensor([[0.0, 1.0, 0.5]]), psi)
    # u + w - u*w = [0.5, 1.0, 0.75], then times psi.
    assert torch.allclose(usage, torch.tensor([[0.0, 0.5, 0.75]]))


def test_allocation_by_hand():
    usage = torch.tensor([[0.4, 0.1, 0.8]])
    a = M.allocation_weights(usage)
    # sorted: 0.1 (slot 1), 0.4 (slot 0), 0.8 (slot 2)
    u = M.EPS + (1 - M.EPS) * usage[0]
    expected = torch.tensor([(1 - u[0]) * u[1], 1 - u[1], (1 - u[2]) * u[1] * u[0]])
    assert torch.allclose(a[0], expected)


def test_allocation_invariants_and_empty_memory():
    g = torch.Generator().manual_seed(0)
    usage = torch.rand(5, 9, generator=g)
    a = M.allocation_weights(usage)
    assert (a >= 0).all() and (a.sum(-1) <= 1 + 1e-12).all()
    # Fully free memory: all mass on the first slot in sort order (stable sort -> slot 0).
    a0 = M.allocation_weights(torch.zeros(2, 4))
    assert torch.allclose(a0[:, 0], torch.full((2,), 1 - M.EPS))
    # A full memory has nothing to allocate.
    assert M.allocation_weights(torch.ones(1, 4)).sum() < 1e-5


def test_write_weights_by_hand():
    a = torch.tensor([[1.0, 0.0]])
    c = torch.tensor([[0.0, 1.0]])
    w = M.write_weights(a, c, torch.tensor([0.25]), torch.tensor([0.5]))
    assert torch.allclose(w, torch.tensor([[0.125, 0.375]]))


def test_precedence_by_hand():
    p = L.update_precedence(torch.tensor([[0.5, 0.5, 0.0]]), torch.tensor([[0.0, 0.0, 0.8]]))
    assert torch.allclose(p, torch.tensor([[0.1, 0.1, 0.8]]))


def _loop_link(link, w, p):
    out = torch.zeros_like(link)
    b, n, _ = link.shape
    for k in range(b):
        for i in range(n):
            for j in range(n):
                if i != j:
                    out[k, i, j] = (1 - w[k, i] - w[k, j]) * link[k, i, j] + w[k, i] * p[k, j]
    return out


def _random_distributions(g, *shape):
    x = torch.rand(*shape, generator=g)
    return x / x.sum(-1, keepdim=True) * torch.rand(*shape[:-1], 1, generator=g)


def test_link_matches_loop_and_invariants():
    g = torch.Generator().manual_seed(1)
    b, n = 3, 6
    link = torch.zeros(b, n, n)
    p = torch.zeros(b, n)
    for _ in range(5):
        w = _random_distributions(g, b, n)
        new = L.update_link(link, w, p)
        assert torch.allclose(new, _loop_link(link, w, p))
        link, p = new, L.update_precedence(p, w)
        assert torch.equal(torch.diagonal(link, dim1=1, dim2=2), torch.zeros(b, n))
        assert (link >= 0).all()
        assert (link.sum(-1) <= 1 + 1e-12).all() and (link.sum(-2) <= 1 + 1e-12).all()
        assert (p >= 0).all() and (p.sum(-1) <= 1 + 1e-12).all()


def test_link_records_write_order():
    # Write slot 0, then slot 2: L[2, 0] = 1 means "slot 2 was written after slot 0".
    link, p = torch.zeros(1, 3, 3), torch.zeros(1, 3)
    for slot in (0, 2):
        w = torch.zeros(1, 3)
        w[0, slot] = 1
        link, p = L.update_link(link, w, p), L.update_precedence(p, w)
    assert link[0, 2, 0] == 1 and link.sum() == 1
    forward, backward = L.directional_weights(link, torch.tensor([[[1.0, 0.0, 0.0]]]))
    assert torch.equal(forward, torch.tensor([[[0.0, 0.0, 1.0]]]))
    assert torch.equal(backward, torch.zeros(1, 1, 3))


def test_sharpen_distribution_keeps_mass_and_sharpens():
    d = torch.tensor([[[0.6, 0.2, 0.0]]])
    s = L.sharpen_distribution(d, torch.tensor([[3.0]]))
    assert torch.allclose(s.sum(-1), d.sum(-1))
    assert s[0, 0, 0] / s.sum() > d[0, 0, 0] / d.sum()  # the largest entry gains mass
    assert torch.allclose(L.sharpen_distribution(d, torch.tensor([[1.0]]), eps=0.0), d)


def test_read_mode_mix():
    b, c, f = (torch.eye(3)[i].view(1, 1, 3) for i in range(3))
    modes = torch.tensor([[[0.2, 0.3, 0.5]]])
    assert torch.allclose(L.read_mode_mix(b, c, f, modes), torch.tensor([[[0.2, 0.3, 0.5]]]))


@pytest.mark.parametrize(
    "fn, make",
    [
        (
            L.update_link,
            lambda g: (
                torch.rand(2, 4, 4, generator=g),
                _random_distributions(g, 2, 4),
                _random_distributions(g, 2, 4),
            ),
        ),
        (
            L.directional_weights,
            lambda g: (torch.rand(2, 4, 4, generator=g), _random_distributions(g, 2, 3, 4)),
        ),
        (M.allocation_weights, lambda g: (torch.rand(2, 5, generator=g),)),
        (M.retention, lambda g: (torch.rand(2, 3, generator=g), _random_distributions(g, 2, 3, 4))),
    ],
)
def test_gradcheck(fn, make):
    inputs = tuple(t.requires_grad_() for t in make(torch.Generator().manual_seed(4)))
    assert torch.autograd.gradcheck(fn, inputs)
