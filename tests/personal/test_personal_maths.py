"""The personal memory's maths: decay, retrieval scores, gate and its REINFORCE step,
encoders and signals."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest
import torch

from torchmem.personal.encoders import HashEncoder, make_encoder
from torchmem.personal.functional import (
    bounded_top,
    decayed_strength,
    gate_probability,
    quantize_keys,
    reinforce_gate,
    retrieval_scores,
    scan_similarity,
)
from torchmem.personal.signals import SIGNAL_NAMES, message_signals

DAY = 86400.0


def test_decay_is_lambda_per_unit_of_time():
    strength = torch.tensor([1.0, 0.5, 0.8])
    updated = torch.tensor([0.0, 0.0, 10 * DAY], dtype=torch.float64)
    now = 30 * DAY
    out = decayed_strength(strength, updated, now, 30 * DAY)
    # one half-life for the first two, 20 days for the third: S * 0.5 ** (20 / 30)
    expected = [0.5, 0.25, 0.8 * 0.5 ** (20 / 30)]
    assert out.tolist() == pytest.approx(expected, rel=1e-6)
    # S(t + 1) = S(t) * lambda with lambda = 0.5 ** (1 / half_life), step by step
    lam = 0.5 ** (1 / 30)
    stepwise = [0.8]
    for _ in range(20):
        stepwise.append(stepwise[-1] * lam)
    assert float(out[2]) == pytest.approx(stepwise[-1], rel=1e-6)
    # no decay backwards in time; per-memory half-lives
    assert decayed_strength(strength, updated, -5.0, 1.0).tolist() == strength.tolist()
    per = decayed_strength(strength[:2], updated[:2], 10.0, torch.tensor([10.0, 20.0]))
    assert per.tolist() == pytest.approx([0.5, 0.5 * 0.5**0.5])


def test_retrieval_scores_weight_cosine_by_strength_and_threshold():
    keys = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), dim=1)
    query = torch.tensor([1.0, 0.0])
    score, similarity = retrieval_scores(query, keys, torch.tensor([0.5, 1.0, 0.01]), 0.05)
    assert similarity.tolist() == pytest.approx([1.0, math.sqrt(0.5), 0.0], abs=1e-6)
    assert score[:2].tolist() == pytest.approx([0.5, math.sqrt(0.5)], abs=1e-6)
    assert score[2] == float("-inf")  # below the retrieval threshold
    softer, _ = retrieval_scores(query, keys, torch.tensor([0.25, 1.0, 0.01]), 0.05, 0.5)
    assert float(softer[0]) == pytest.approx(0.5)  # 1.0 * 0.25 ** 0.5


def _clustered_keys(n: int, d: int, seed: int) -> torch.Tensor:
    """Unit rows around a few centres (many near-ties, cosines up to ~1), a zero row, and
    rows of other norms."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(8, d, generator=g)
    keys = centres[torch.randint(0, 8, (n,), generator=g)] + 0.2 * torch.randn(n, d, generator=g)
    keys = torch.nn.functional.normalize(keys, dim=1)
    keys[0] = 0.0
    keys[1] *= 3.0
    keys[2] *= 0.01
    return keys


@pytest.mark.parametrize("d", [384, 37])
def test_scan_similarity_error_stays_within_its_bound(d):
    keys = _clustered_keys(4000, d, seed=d)
    low, norm = quantize_keys(keys)
    assert low.dtype == torch.bfloat16 and torch.allclose(norm, keys.norm(dim=1))
    # the rounding bound the margin rests on: |k - k~| <= u |k|, u = 2^-8
    assert ((keys - low.float()).norm(dim=1) <= 2**-8 * norm).all()
    g = torch.Generator().manual_seed(1)
    worst = {"rows": 0.0, "all": 0.0}
    for i in range(40):
        query = keys[i + 3] + 0.05 * torch.randn(d, generator=g)
        if i % 2:
            query = torch.nn.functional.normalize(query, dim=0)
        exact = keys.double() @ query.double()
        # per row, and one margin for all rows from the largest norm
        for name, bound in (("rows", norm), ("all", float(norm.max()))):
            approx, margin = scan_similarity(query, low, bound)
            assert margin.shape == ((4000,) if name == "rows" else ())
            off = (exact - approx.double()).abs()
            assert (off <= margin.double()).all()
            worst[name] = max(worst[name], float((off / margin.double()).max()))
    # The bounds are not vacuous: the errors come within a few times of them.
    assert min(worst.values()) > 0.05, worst


def test_scan_similarity_in_float32_is_the_exact_product():
    keys = _clustered_keys(100, 16, seed=0)
    low, norm = quantize_keys(keys, torch.float32)
    approx, margin = scan_similarity(keys[5], low, norm)
    assert torch.equal(approx, keys @ keys[5]) and float(margin) == 0.0


def test_bounded_top_keeps_every_row_that_can_be_in_the_top_m():
    g = torch.Generator().manual_seed(0)
    for trial in range(300):
        n = int(torch.randint(1, 60, (1,), generator=g))
        value = torch.randn(n, generator=g)
        if trial % 2:
            margin = torch.rand(n, generator=g) * 0.3 * (trial % 3)  # 0: exact values
        else:
            margin = torch.tensor(0.3 * float(torch.rand(1, generator=g)) * (trial % 3))
        estimate = value + margin * (2 * torch.rand(n, generator=g) - 1)
        out = torch.rand(n, generator=g) < 0.2  # rows taking no part
        estimate = estimate.masked_fill(out, float("-inf"))
        m = int(torch.randint(1, 10, (1,), generator=g))
        kept = bounded_top(estimate, margin, m)
        part = (~out).nonzero().flatten()
        true_top = part[torch.topk(value[part], min(m, len(part))).indices]
        assert set(true_top.tolist()) <= set(kept.tolist())
        assert not out[kept].any()
        assert kept.tolist() == sorted(kept.tolist())
        if m >= len(part):
            assert kept.tolist() == part.tolist()
        elif trial % 3 == 0:  # exact values: only ties beyond m
            assert len(kept) == m


def test_gate_probability_and_reinforce_step_by_hand():
    x = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    w, b = torch.tensor([0.3, -0.2]), torch.tensor(0.1)
    p = gate_probability(x, w, b)
    assert p.tolist() == pytest.approx(
        [1 / (1 + math.exp(-(0.3 - 0.4 + 0.1))), 1 / (1 + math.exp(-(0.15 + 0.2 + 0.1)))]
    )
    action, reward = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0])
    new_w, new_b = reinforce_gate(x, action, reward, w, b, lr=0.5)
    advantage = reward * (action - p)
    assert new_w.tolist() == pytest.approx((w + 0.5 * (advantage[:, None] * x).mean(0)).tolist())
    assert float(new_b) == pytest.approx(float(b + 0.5 * advantage.mean()))
    # It is the gradient of mean(r * log pi(a | x)).
    wg, bg = w.clone().requires_grad_(), b.clone().requires_grad_()
    pg = gate_probability(x, wg, bg)
    log_pi = action * pg.log() + (1 - action) * (1 - pg).log()
    (reward * log_pi).mean().backward()
    assert (new_w - w).tolist() == pytest.approx((0.5 * wg.grad).tolist(), rel=1e-5)
    # A negative reward on a stored message lowers p of the same message.
    lower_w, lower_b = reinforce_gate(x[:1], torch.ones(1), -torch.ones(1), w, b, lr=1.0)
    assert gate_probability(x[:1], lower_w, lower_b) < p[:1]


def test_hash_encoder_is_deterministic_unit_and_lexical():
    enc = HashEncoder()
    a = enc.encode(["I prefer visual explanations", "i PREFER visual explanations!", "zzz"])
    assert a.shape == (3, 384) and a.dtype == torch.float32
    assert torch.linalg.vector_norm(a, dim=1).tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert float(a[0] @ a[1]) == pytest.approx(1.0)  # case and punctuation do not matter
    assert torch.equal(HashEncoder().encode(["zzz"]), a[2:])  # same on every run
    assert torch.equal(enc.encode(["..."]), torch.zeros(1, 384))  # no features: zeros
    b = enc.encode(["I like visuals", "I like visual", "The weather is nice"])
    assert float(b[0] @ b[1]) > float(b[0] @ b[2])  # character trigrams link inflections
    with pytest.raises(ValueError, match="unknown encoder 'bert'; valid encoders: hash, minilm"):
        make_encoder("bert")
    with pytest.raises(TypeError, match="encoder must be a name"):
        make_encoder(42)


def test_signals_are_their_own_vector():
    monday_9am = datetime(2023, 11, 13, 9, tzinfo=timezone.utc).timestamp()
    s = message_signals("PLEASE show me a diagram!!", monday_9am)
    named = dict(zip(SIGNAL_NAMES, s.tolist()))
    assert named["hour_sin"] == pytest.approx(math.sin(9 / 24 * 2 * math.pi), abs=1e-6)
    assert named["weekday_sin"] == pytest.approx(0.0, abs=1e-6)  # Monday = 0
    assert named["request"] == 1.0 and named["question"] == 0.0
    assert named["exclamation"] == 1.0 and named["uppercase"] > 0.2
    q = dict(zip(SIGNAL_NAMES, message_signals("what is TCP?", monday_9am).tolist()))
    assert q["question"] == 1.0 and q["first_person"] == 0.0
    shifted = message_signals("hi", monday_9am, utc_offset_hours=3.0)
    assert float(shifted[0]) == pytest.approx(math.sin(12 / 24 * 2 * math.pi), abs=1e-6)
