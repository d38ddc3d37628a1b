"""Differential tests: torchmem.memoria against memoria-pytorch 1.1.0 (the test-only extra).

Every test runs the same scenario, from the same seed, through both packages and demands
identical outputs (values, dtypes, shapes, -1 padding) and identical engram state after
every call. Scenarios are many small random configurations (batch 1-4, widths 1-8, up to
14 steps, all option ranges including zeros), several data distributions (continuous,
integer-valued with exact distance ties, all-zero, float64 and integer input), lifespan
deltas (integer, int64, fractional and negative) and call orders.
"""

from __future__ import annotations

import pytest
import torch
from _memoria_helpers import (
    assert_same_engrams,
    assert_same_history,
    assert_same_memoria,
    assert_same_trace,
    drive,
    load_reference,
    patched_reference_class,
    random_config,
)

import torchmem.memoria as mine
from torchmem.memoria import functional

ref = load_reference()


def scenario(seed: int) -> dict:
    g = torch.Generator().manual_seed(10_000 + seed)

    def pick(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=g))

    return dict(
        config=random_config(g),
        batch=pick(1, 4),
        width=pick(1, 6),
        dim=pick(1, 8),
        steps=pick(1, 14),
    )


@pytest.mark.parametrize("seed", range(60))
def test_random_configurations_match(seed):
    s = scenario(seed)
    args = (seed, s["config"], s["batch"], s["width"], s["dim"], s["steps"])
    m_mine, t_mine = drive(mine, *args)
    m_ref, t_ref = drive(ref, *args)
    assert_same_trace(t_mine, t_ref)
    assert_same_memoria(m_mine, m_ref)


@pytest.mark.parametrize("data_kind", ["normal", "ties", "zeros", "float64", "int"])
@pytest.mark.parametrize("seed", range(4))
def test_data_distributions_match(seed, data_kind):
    s = scenario(100 + seed)
    args = (seed, s["config"], s["batch"], s["width"], s["dim"], s["steps"])
    _, t_mine = drive(mine, *args, data_kind=data_kind)
    _, t_ref = drive(ref, *args, data_kind=data_kind)
    assert_same_trace(t_mine, t_ref)


@pytest.mark.parametrize("delta_kind", ["long", "fractional"])
@pytest.mark.parametrize(
    "pattern", ["standard", "double_remind", "double_add", "no_add", "skip_remind", "user_indices"]
)
@pytest.mark.parametrize("seed", range(3))
def test_call_patterns_and_deltas_match(seed, pattern, delta_kind):
    s = scenario(200 + seed)
    args = (seed, s["config"], s["batch"], s["width"], s["dim"], s["steps"])
    kwargs = dict(delta_kind=delta_kind, pattern=pattern)
    _, t_mine = drive(mine, *args, **kwargs)
    _, t_ref = drive(ref, *args, **kwargs)
    # "user_indices" also checks that the caller's index tensor is rewritten the same way.
    assert_same_trace(t_mine, t_ref)


@pytest.mark.parametrize(
    "config, shape, steps",
    [
        (
            dict(
                num_reminded_stm=4,
                stm_capacity=16,
                ltm_search_depth=5,
                initial_lifespan=3,
                num_final_ltms=4,
            ),
            (2, 8, 64),
            14,
        ),
        (
            dict(
                num_reminded_stm=10,
                stm_capacity=12,
                ltm_search_depth=6,
                initial_lifespan=5,
                num_final_ltms=12,
                track_age=True,
                track_id=True,
            ),
            (3, 6, 24),
            30,
        ),
        (
            dict(
                num_reminded_stm=3,
                stm_capacity=2,
                ltm_search_depth=8,
                initial_lifespan=9,
                num_final_ltms=30,
            ),
            (2, 3, 5),
            40,
        ),
    ],
)
def test_longer_runs_with_large_long_term_memory_match(config, shape, steps):
    args = (7, config, *shape, steps)
    m_mine, t_mine = drive(mine, *args)
    m_ref, t_ref = drive(ref, *args)
    assert_same_trace(t_mine, t_ref)
    assert (m_ref.engrams.engrams_types == 3).any(), "scenario should reach long-term memory"


@pytest.mark.slow
def test_issue_benchmark_configuration_matches():
    """Issue 3's benchmark setting (batch 8, 64 engrams of width 256 per step), 25 steps."""
    config = dict(
        num_reminded_stm=50,
        stm_capacity=64,
        ltm_search_depth=10,
        initial_lifespan=9,
        num_final_ltms=50,
    )
    args = (0, config, 8, 64, 256, 25)
    _, t_mine = drive(mine, *args)
    _, t_ref = drive(ref, *args)
    assert_same_trace(t_mine, t_ref)


@pytest.mark.parametrize("seed", range(8))
def test_exact_kernel_fallback_matches(seed, monkeypatch):
    """With the float64 certificate disabled every top-k goes through the reference kernel."""
    original = functional.topk_by_distance

    def exact_only(*args, **kwargs):
        return original(*args, **{**kwargs, "force_exact": True})

    monkeypatch.setattr(functional, "topk_by_distance", exact_only)
    s = scenario(300 + seed)
    args = (seed, s["config"], s["batch"], s["width"], s["dim"], s["steps"])
    _, t_mine = drive(mine, *args, data_kind="ties" if seed % 2 else "uniform")
    _, t_ref = drive(ref, *args, data_kind="ties" if seed % 2 else "uniform")
    assert_same_trace(t_mine, t_ref)


@pytest.mark.parametrize("seed", range(4))
def test_history_matches(seed, capsys):
    s = scenario(400 + seed)
    # The reference's status_summary is a Python loop over all N^2 pairs: keep N small.
    config = {**s["config"], "keep_history": True, "track_id": bool(seed % 2)}
    args = (seed, config, min(s["batch"], 2), min(s["width"], 3), s["dim"], 8)
    m_mine, _ = drive(mine, *args)
    mine_warnings = capsys.readouterr().err
    m_ref, _ = drive(ref, *args)
    assert mine_warnings == capsys.readouterr().err  # the same two stderr warnings (or none)
    assert_same_memoria(m_mine, m_ref)
    for a, b in zip(m_mine.history, m_ref.history):
        assert_same_history(a, b)
        for engram_id in b.engram_ids[:: max(1, len(b.engram_ids) // 4)]:  # a few of them
            assert _plain(a.inspect(engram_id)) == _plain(b.inspect(engram_id))


def _plain(record):
    from _memoria_helpers import as_plain

    return as_plain(record)


@pytest.mark.parametrize("seed", range(24))
def test_fixed_mode_matches_the_patched_reference(seed):
    """fix_reference_bugs=True == the reference with the seven fixes patched in (helpers)."""
    patched = patched_reference_class(ref)

    class PatchedLib:
        Memoria = patched

    class FixedLib:
        @staticmethod
        def Memoria(*args, **kwargs):
            return mine.Memoria(*args, **kwargs, fix_reference_bugs=True)

    s = scenario(500 + seed)
    pattern = ["standard", "user_indices", "no_add"][seed % 3]
    data_kind = ["uniform", "ties"][seed % 2]
    args = (seed, s["config"], s["batch"], s["width"], s["dim"], s["steps"] + 4)
    _, t_fixed = drive(FixedLib, *args, pattern=pattern, data_kind=data_kind)
    _, t_patched = drive(PatchedLib, *args, pattern=pattern, data_kind=data_kind)
    assert_same_trace(t_fixed, t_patched)


# ------------------------------------------------------------------------------------------
# The rest of the public API
# ------------------------------------------------------------------------------------------


def _random_engrams(lib, g, batch, length, dim, track_age=True, track_id=True):
    types = torch.randint(0, 4, (batch, length), generator=g)
    counts = torch.randint(-1, 5, (batch, length, length), generator=g)
    return lib.Engrams(
        torch.randn(batch, length, dim, generator=g),
        induce_counts=counts + counts.transpose(1, 2),
        engrams_types=types,
        lifespan=torch.randint(-1, 6, (batch, length), generator=g).float(),
        age=torch.randint(0, 9, (batch, length), generator=g),
        engram_ids=torch.randint(0, 99, (batch, length), generator=g),
        track_age=track_age,
        track_engram_id=track_id,
    )


def _pair(seed, batch=3, length=7, dim=4, **kwargs):
    a = _random_engrams(mine, torch.Generator().manual_seed(seed), batch, length, dim, **kwargs)
    b = _random_engrams(ref, torch.Generator().manual_seed(seed), batch, length, dim, **kwargs)
    return a, b


@pytest.mark.parametrize("seed", range(10))
def test_engrams_methods_match(seed):
    g = torch.Generator().manual_seed(seed)
    a, b = _pair(seed)
    assert_same_engrams(a, b)
    for name in (
        "working_memory_mask",
        "shortterm_memory_mask",
        "longterm_memory_mask",
        "fire_count",
    ):
        assert_same_tensor_pair(getattr(a, name), getattr(b, name))

    for getter in ("get_working_memory", "get_shortterm_memory", "get_longterm_memory"):
        (ea, ia), (eb, ib) = getattr(a, getter)(), getattr(b, getter)()
        assert_same_engrams(ea, eb, getter)
        assert_same_tensor_pair(ia, ib)

    mask = torch.rand(3, 7, generator=g) > 0.5
    assert_same_tensor_pair(a.get_indices_with_mask(mask), b.get_indices_with_mask(mask))
    assert_same_engrams(a.mask_select(mask), b.mask_select(mask), "mask_select")

    indices = torch.randint(-3, 7, (3, 5), generator=g)
    ia, ib = indices.clone(), indices.clone()
    assert_same_tensor_pair(a.get_mask_with_indices(ia), b.get_mask_with_indices(ib))
    assert_same_tensor_pair(ia, ib)  # both rewrite < -1 to -1 in place

    two_d = torch.randint(-1, 7, (3, 6), generator=g)
    assert_same_engrams(a.select(two_d), b.select(two_d), "select 2d")
    one_d = torch.randint(-7, 7, (5,), generator=g)
    assert_same_engrams(a.select(one_d), b.select(one_d), "select 1d")

    partial = torch.rand(3, 7, generator=g) > 0.4
    globals_ = torch.randint(-1, 7, (3, 4), generator=g)
    assert_same_tensor_pair(
        a.get_local_indices_from_global_indices(partial, globals_),
        b.get_local_indices_from_global_indices(partial, globals_),
    )

    fire = torch.randint(-2, 7, (3, 6), generator=g)
    a.fire_together_wire_together(fire.clone())
    b.fire_together_wire_together(fire.clone())
    assert_same_engrams(a, b, "after fire")

    extend, delta = torch.randint(-3, 7, (3, 4), generator=g), torch.rand(3, 4, generator=g) * 3
    ea, eb = extend.clone(), extend.clone()
    a.extend_lifespan(ea, delta)
    b.extend_lifespan(eb, delta)
    assert_same_tensor_pair(ea, eb)
    a.decrease_lifespan(), b.decrease_lifespan()
    a.increase_age(), b.increase_age()
    assert_same_engrams(a, b, "after lifespan and age")

    new_counts = torch.randint(0, 9, (3, 7), generator=g, dtype=torch.int32)
    a.fire_count, b.fire_count = new_counts, new_counts
    assert_same_engrams(a, b, "after fire_count setter")

    doomed = torch.randint(-1, 7, (3, 2), generator=g)
    a.delete(doomed.clone())
    b.delete(doomed.clone())
    assert_same_engrams(a, b, "after delete")

    for ra, rb in zip(a, b):
        assert_same_engrams(ra, rb, "row")
    assert len(list(a)) == len(list(b))
    assert bool(a == a.select(torch.arange(a.memory_length))) == bool(
        b == b.select(torch.arange(b.memory_length))
    )


def assert_same_tensor_pair(x, y):
    from _memoria_helpers import assert_same_tensor

    assert_same_tensor(x, y, "tensor")


@pytest.mark.parametrize("track", [(False, False), (True, True), (True, False)])
def test_engrams_construction_and_concatenation_match(track, capsys):
    track_age, track_id = track
    data = torch.randint(0, 5, (2, 3, 4))  # integer data is converted to float32 by both
    for kwargs in (
        dict(),
        dict(engrams_types=mine.EngramType.LONGTERM, lifespan=4, engram_ids=5),
        dict(lifespan=2.5, age=3),
    ):
        ref_kwargs = {
            k: (ref.EngramType[v.name] if isinstance(v, mine.EngramType) else v)
            for k, v in kwargs.items()
        }
        a = mine.Engrams(data, track_age=track_age, track_engram_id=track_id, **kwargs)
        b = ref.Engrams(data, track_age=track_age, track_engram_id=track_id, **ref_kwargs)
        assert_same_engrams(a, b)
        a2 = a + mine.Engrams(data * 2, lifespan=1, track_age=track_age, track_engram_id=False)
        b2 = b + ref.Engrams(data * 2, lifespan=1, track_age=track_age, track_engram_id=False)
        assert_same_engrams(a2, b2, "sum")
        assert capsys.readouterr().out.count("Warning") == 2 * int(track_id)
    assert_same_engrams(
        mine.Engrams.empty(track_age, track_id), ref.Engrams.empty(track_age, track_id)
    )


@pytest.mark.parametrize("seed", range(6))
def test_status_summary_matches(seed):
    a, b = _pair(seed, batch=2, length=6, dim=2)
    counts = torch.randint(0, 4, (2, 6, 6), generator=torch.Generator().manual_seed(seed))
    a.induce_counts = counts.clone().int()
    b.induce_counts = counts.clone().int()  # asymmetric on purpose: checks which entry is read
    a.engram_ids = torch.arange(12, dtype=torch.int32).view(2, 6)
    b.engram_ids = torch.arange(12, dtype=torch.int32).view(2, 6)
    from _memoria_helpers import as_plain

    assert as_plain(a.status_summary()) == as_plain(b.status_summary())


@pytest.mark.parametrize("seed", range(12))
def test_super_unique_matches(seed):
    g = torch.Generator().manual_seed(seed)
    ndim = 1 + seed % 3
    shape = tuple(int(x) for x in torch.randint(1, 6, (ndim,), generator=g))
    t = torch.randint(-2, 6, shape, generator=g)
    for dim in range(ndim):
        assert_same_tensor_pair(mine.utils.super_unique(t, dim), ref.utils.super_unique(t, dim))
    empty = torch.zeros(2, 0, dtype=torch.long)
    assert_same_tensor_pair(mine.utils.super_unique(empty, 1), ref.utils.super_unique(empty, 1))


def test_abstractor_matches():
    torch.manual_seed(3)
    a = mine.Abstractor(num_memories=4, hidden_dim=8, feedforward_dim=16)
    torch.manual_seed(3)
    b = ref.Abstractor(num_memories=4, hidden_dim=8, feedforward_dim=16)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    x = torch.randn(3, 5, 8)
    assert torch.equal(a(x), b(x))
    b.load_state_dict(sa)  # checkpoints move between the two


def test_public_names_match():
    wanted = {"utils", "Abstractor", "Engrams", "EngramType", "HistoryManager", "Memoria"}
    assert wanted <= set(mine.__all__)
    assert [t.name for t in mine.EngramType] == [t.name for t in ref.EngramType]
    assert [t.value for t in mine.EngramType] == [t.value for t in ref.EngramType]
    import dataclasses

    import memoria.types as ref_types

    for name in ("EngramConnection", "EngramInfo", "EngramsInfo", "Firing", "EngramHistory"):
        fields_mine = [f.name for f in dataclasses.fields(getattr(mine.types, name))]
        fields_ref = [f.name for f in dataclasses.fields(getattr(ref_types, name))]
        assert fields_mine == fields_ref, name
    import inspect

    params = list(inspect.signature(mine.Memoria).parameters)
    assert params[: len(inspect.signature(ref.Memoria).parameters)] == list(
        inspect.signature(ref.Memoria).parameters
    )
    for cls in ("Memoria", "Engrams", "HistoryManager"):
        public_ref = {n for n in dir(getattr(ref, cls)) if not n.startswith("_")}
        public_mine = {n for n in dir(getattr(mine, cls)) if not n.startswith("_")}
        assert public_ref <= public_mine, public_ref - public_mine
