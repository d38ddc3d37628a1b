"""torchmem.memoria's maths by hand, its invariants and its input checks (no reference needed)."""

from __future__ import annotations

import pytest
import torch

import torchmem.memoria as memoria_pkg
from torchmem.memoria import Abstractor, Engrams, HistoryManager, Memoria
from torchmem.memoria import functional as F
from torchmem.memoria.memoria import EmptyMemoryError
from torchmem.memoria.utils import super_unique

# ------------------------------------------------------------------------------------------
# Index bookkeeping
# ------------------------------------------------------------------------------------------


def test_indices_with_mask_right_aligns_with_minus_one_padding():
    mask = torch.tensor([[True, False, True, True], [False, True, False, False]])
    assert F.indices_with_mask(mask).tolist() == [[0, 2, 3], [-1, -1, 1]]
    assert F.indices_with_mask(torch.zeros(2, 3, dtype=torch.bool)).shape == (2, 0)
    assert F.indices_with_mask(torch.ones(2, 3, dtype=torch.bool)).tolist() == [[0, 1, 2]] * 2


def test_mask_with_indices_ignores_negatives_and_repeats():
    indices = torch.tensor([[2, -1, 2, -7], [0, 3, -1, 1]])
    assert F.mask_with_indices(indices, 4).tolist() == [
        [False, False, True, False],
        [True, True, False, True],
    ]


def test_gather_padded_and_square():
    values = torch.arange(6.0).view(1, 6)
    assert F.gather_padded(values, torch.tensor([[-1, 4, 0]]), -1.0).tolist() == [[-1, 4, 0]]
    data = torch.arange(12.0).view(1, 3, 4)
    out = F.gather_padded(data, torch.tensor([[2, -1]]), 0.0)
    assert out.tolist() == [[[8, 9, 10, 11], [0, 0, 0, 0]]]
    counts = torch.arange(16, dtype=torch.int32).view(1, 4, 4)
    square = F.gather_padded_square(counts, torch.tensor([[-1, 3, 1]]))
    assert square.tolist() == [[[-1, -1, -1], [-1, 15, 13], [-1, 7, 5]]]


def test_first_argmax_takes_the_first_maximum_on_both_paths():
    small = torch.tensor([[1, 3, 3, 0]])
    big = torch.zeros(2, 1 << 15, dtype=torch.int32)
    big[0, [5, 9]] = 4
    assert F.first_argmax(small, 1).tolist() == [1]
    assert F.first_argmax(big, 1).tolist() == [5, 0]


def test_super_unique_by_hand():
    t = torch.tensor([[3, 1, 3, -1], [2, 2, 2, 2]])
    out = super_unique(t, dim=1)
    assert out.dtype == torch.int64 and out.shape == (2, 3)
    assert sorted(out[0].tolist()) == [-1, 1, 3]
    assert sorted(out[1].tolist()) == [-1, -1, 2]  # one value, padded with -1


# ------------------------------------------------------------------------------------------
# Hebbian update, lifespans, memory levels
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("contiguous", [True, False])
def test_hebbian_update_is_the_outer_product_of_the_fired_mask(contiguous):
    g = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 5, (3, 7, 7), generator=g, dtype=torch.int32)
    if not contiguous:
        counts = counts.transpose(1, 2)
    fired = torch.rand(3, 7, generator=g) > 0.5
    fired[2] = False
    expected = counts + (fired.unsqueeze(2) & fired.unsqueeze(1)).int()
    assert F.hebbian_update_(counts, fired) is counts
    assert torch.equal(counts, expected)


def test_lifespan_increments_duplicates():
    indices = torch.tensor([[1, 1, -1, 0]])
    delta = torch.tensor([[2.0, 7.0, 100.0, 1.0]])
    fixed = F.lifespan_increments(indices, delta, 3, reference_bugs=False)
    assert fixed.tolist() == [[1.0, 9.0, 0.0]]
    compat = F.lifespan_increments(indices, delta, 3, reference_bugs=True)
    assert compat[0, 0] == 1.0 and compat[0, 1] in (2.0, 7.0) and compat[0, 2] == 0.0


def test_overflow_moves_the_oldest_shortterm_engrams_per_row():
    S, L, W = F.SHORTTERM, F.LONGTERM, F.WORKING
    types = torch.tensor([[L, S, S, S, W], [0, 0, S, W, W]], dtype=torch.uint8)
    assert F.overflow_to_longterm(types, 1).tolist() == [
        [False, True, True, False, False],
        [False, False, False, False, False],
    ]
    assert not F.overflow_to_longterm(types, 3).any()


# ------------------------------------------------------------------------------------------
# Retrieval
# ------------------------------------------------------------------------------------------


def _exact_ids(query, keys, k, reduce, ids, exclude=None):
    scores = F.reduce_cue_scores(F.negative_squared_distances(query, keys), reduce)
    if exclude is not None:
        scores = scores.masked_fill(exclude, float("-inf"))
    return ids.gather(1, scores.topk(k, dim=1).indices)


@pytest.mark.parametrize("reduce", ["mean", "sum"])
@pytest.mark.parametrize("kind", ["normal", "ties", "duplicates"])
def test_topk_by_distance_picks_the_reference_set(reduce, kind):
    g = torch.Generator().manual_seed(1)
    for trial in range(20):
        b, w, k_all, d = 3, int(torch.randint(1, 6, (1,), generator=g)), 9, 5
        if kind == "normal":
            query, keys = torch.randn(b, w, d, generator=g), torch.randn(b, k_all, d, generator=g)
        else:
            query = torch.randint(0, 2, (b, w, d), generator=g).float()
            keys = torch.randint(0, 2, (b, k_all, d), generator=g).float()
        ids = torch.arange(k_all).repeat(b, 1)
        if kind == "duplicates":  # padding: identical zero keys sharing id -1
            keys[:, :3] = 0
            ids[:, :3] = -1
        k = int(torch.randint(0, k_all + 1, (1,), generator=g))
        exclude = (ids < 0) if trial % 2 else None
        got = F.topk_by_distance(query, keys, k, reduce=reduce, key_ids=ids, exclude=exclude)
        got_ids = ids.gather(1, got)
        want = _exact_ids(query, keys, k, reduce, ids, exclude)
        for row in range(b):
            assert sorted(got_ids[row].tolist()) == sorted(want[row].tolist())


def test_topk_by_distance_certifies_separated_keys_without_the_big_kernel():
    torch.manual_seed(0)
    query = torch.rand(4, 16, 32)
    keys = torch.rand(4, 40, 32) + torch.arange(40.0).view(1, 40, 1)  # well separated
    stats = {}
    got = F.topk_by_distance(
        query, keys, 10, reduce="sum", key_ids=torch.arange(40).repeat(4, 1), stats=stats
    )
    assert stats.get("exact_rows", 0) == 0
    assert got.sort(dim=1).values.tolist() == [list(range(10))] * 4
    stats = {}
    F.topk_by_distance(
        torch.zeros(4, 0, 32),
        keys,
        3,
        reduce="mean",
        key_ids=torch.arange(40).repeat(4, 1),
        stats=stats,
    )
    assert stats["exact_rows"] == 4  # no cue: the reference's own (NaN) arithmetic decides


def test_search_walks_the_strongest_unvisited_links():
    # One row, long-term engrams at indices 1, 2, 3, 4 (index 0 is short-term).
    counts = torch.zeros(1, 5, 5, dtype=torch.int32)
    for a, b, c in [(1, 2, 5), (2, 3, 7), (1, 3, 1), (3, 4, 2)]:
        counts[0, a, b] = counts[0, b, a] = c
    longterm = torch.tensor([[1, 2, 3, 4]])
    # From position 0 (engram 1): -> 2 (5) -> 3 (7) -> 4 (2): positions 0, 1, 2, 3.
    found = F.search_longterm(counts, longterm, torch.tensor([[0]]), 3, reference_bugs=False)
    assert sorted(found[0].tolist()) == [0, 1, 2, 3]
    found = F.search_longterm(counts, longterm, torch.tensor([[0]]), 1, reference_bugs=False)
    assert sorted(found[0].tolist()) == [0, 1]
    # Every engram visited: the walk ends with -1.
    found = F.search_longterm(counts, longterm[:, :2], torch.tensor([[0]]), 3, reference_bugs=False)
    assert sorted(found[0].tolist()) == [-1, 0, 1]


def test_initial_longterm_is_the_strongest_partner():
    S, L, W = F.SHORTTERM, F.LONGTERM, F.WORKING
    types = torch.tensor([[L, L, S, S, W]], dtype=torch.uint8)
    counts = torch.zeros(1, 5, 5, dtype=torch.int32)
    counts[0, 2, 1] = counts[0, 1, 2] = 3
    counts[0, 3, 0] = counts[0, 0, 3] = 1
    for bugs in (True, False):
        out = F.initial_longterm_indices(counts, types, torch.tensor([[2, 3]]), reference_bugs=bugs)
        assert sorted(out[0].tolist()) == [0, 1]
    none = torch.tensor([[S, S, W]], dtype=torch.uint8)
    out = F.initial_longterm_indices(counts[:, :3, :3], none, torch.tensor([[0, 1]]))
    assert out.tolist() == [[-1]]


# ------------------------------------------------------------------------------------------
# Invariants of a long run, in both modes
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fix", [False, True])
def test_engram_state_invariants_over_a_run(fix):
    torch.manual_seed(5)
    memoria = Memoria(4, 6, 3, 3, 5, track_age=True, track_id=True, fix_reference_bugs=fix)
    for step in range(25):
        memoria.add_working_memory(torch.rand(3, 4, 8))
        memories, indices = memoria.remind()
        assert memories.shape == (*indices.shape, 8) and indices.dtype == torch.int64
        assert torch.equal(memories[indices < 0], torch.zeros_like(memories[indices < 0]))
        memoria.adjust_lifespan_and_memories(indices, torch.randint(0, 4, indices.shape).float())
        e = memoria.engrams
        live = e.engrams_types != F.NULL
        counts = e.induce_counts
        assert torch.equal(counts, counts.transpose(1, 2))  # co-firing is symmetric
        both = live.unsqueeze(1) & live.unsqueeze(2)
        assert (counts[both] >= 0).all()
        # An engram fired at least as often as with any partner.
        assert (counts <= e.fire_count.unsqueeze(2)).logical_or(~both).all()
        assert not (e.engrams_types == F.WORKING).any()  # all working memory memorized
        assert ((e.engrams_types == F.SHORTTERM).sum(1) <= 6).all()  # capacity
        if fix:
            assert (e.lifespan[live] > 0).all() and (e.lifespan[~live] == -1).all()
            # Padding only at the front of a row.
            assert (live.int().diff(dim=1) >= 0).all()
        for row in range(3):
            ids = e.engram_ids[row][live[row]]
            assert ids.unique().numel() == ids.numel()
            assert (e.age[row][live[row]] <= step + 1).all()
    assert memoria.timestep == 25 and memoria.next_engram_id == 100


def test_reset_memory_starts_over_and_allows_a_new_batch_size():
    memoria = Memoria(2, 2, 1, 2, 2, track_id=True)
    memoria.add_working_memory(torch.rand(2, 3, 4))
    memoria.remind()
    memoria.reset_memory()
    assert len(memoria.engrams) == 0 and memoria.timestep == 0 and memoria.next_engram_id == 0
    memoria.add_working_memory(torch.rand(5, 1, 7))
    assert memoria.engrams.data.shape == (5, 1, 7)


def test_results_follow_the_devices():
    memoria = Memoria(2, 2, 1, 2, 2, device="cpu")
    memoria.add_working_memory(torch.rand(1, 2, 3, dtype=torch.float64))
    memories, indices = memoria.remind()
    assert memoria.engrams.data.dtype == torch.float32 and memories.device.type == "cpu"


# ------------------------------------------------------------------------------------------
# Clear errors for bad input
# ------------------------------------------------------------------------------------------


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="num_reminded_stm"):
        Memoria(-1, 2, 1, 2, 2)
    with pytest.raises(ValueError, match="stm_capacity"):
        Memoria(1, 2.5, 1, 2, 2)
    with pytest.raises(ValueError, match="initial_lifespan"):
        Memoria(1, 2, 1, float("nan"), 2)
    assert Memoria(4.0, 2, 1, 2, 2).num_reminded_stm == 4  # integral floats are fine


def test_bad_data_is_rejected():
    memoria = Memoria(2, 2, 1, 2, 2)
    with pytest.raises(ValueError, match=r"\(B, W, D\)"):
        memoria.add_working_memory(torch.rand(3, 4))
    with pytest.raises(ValueError, match="NaN"):
        memoria.add_working_memory(torch.tensor([[[1.0, float("nan")]]]))
    with pytest.raises(TypeError):
        memoria.add_working_memory([[[1.0]]])
    memoria.add_working_memory(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="B=2"):
        memoria.add_working_memory(torch.rand(3, 3, 4))
    with pytest.raises(ValueError, match="D=4"):
        memoria.add_working_memory(torch.rand(2, 3, 5))


def test_bad_adjustments_are_rejected():
    memoria = Memoria(2, 2, 1, 2, 2)
    memoria.add_working_memory(torch.rand(2, 3, 4))
    memoria.remind()
    indices = torch.tensor([[0], [1]])
    with pytest.raises(ValueError, match="shape"):
        memoria.adjust_lifespan_and_memories(indices[0], torch.ones(3))
    with pytest.raises(ValueError, match="integer"):
        memoria.adjust_lifespan_and_memories(indices.float(), torch.ones_like(indices))
    with pytest.raises(ValueError, match="slots"):
        memoria.adjust_lifespan_and_memories(torch.tensor([[3], [0]]), torch.ones(2, 1))
    with pytest.raises(ValueError, match="NaN"):
        memoria.adjust_lifespan_and_memories(indices, torch.full(indices.shape, float("nan")))
    with pytest.raises(ValueError, match="does not match"):
        memoria.adjust_lifespan_and_memories(indices, torch.ones(5, 7))


def test_remind_on_an_empty_memory_says_so():
    memoria = Memoria(2, 2, 1, 1, 2)
    with pytest.raises(EmptyMemoryError, match="add_working_memory"):
        memoria.remind()
    memoria.add_working_memory(torch.rand(1, 2, 3))
    memoria.adjust_lifespan_and_memories(torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 0))
    assert memoria.engrams.memory_length == 0  # lifespan 1: all forgotten
    # memoria-pytorch raises RuntimeError before any add and IndexError here: both work.
    with pytest.raises(IndexError):
        memoria.remind()
    with pytest.raises(RuntimeError):
        memoria.remind()


# ------------------------------------------------------------------------------------------
# Engram analysis, the abstractor, the package
# ------------------------------------------------------------------------------------------


def test_status_summary_weights_by_hand():
    counts = torch.tensor([[[4, 2, 0], [2, 2, 1], [0, 1, -1]]])
    engrams = Engrams(
        torch.zeros(1, 3, 1),
        induce_counts=counts,
        engrams_types=torch.tensor([[3, 2, 0]]),
        lifespan=torch.tensor([[5.0, 1.5, -1.0]]),
        engram_ids=torch.tensor([[10, 11, -1]]),
        track_engram_id=True,
    )
    (info,) = engrams.status_summary()
    assert info.longterm == (10,) and info.shortterm == (11,) and info.working == ()
    a, b = info.engrams[10], info.engrams[11]
    assert a.fire_count == 4 and a.lifespan == 5.0 and a.age is None
    assert [(e.target_id, e.weight, e.cofire_count) for e in a.outgoings] == [(11, 0.5, 2)]
    assert [(e.target_id, e.weight) for e in b.outgoings] == [(10, 1.0)]  # 2 / 2
    assert a.cofire_counts == {11: 2}
    assert set(info.edges) == {(10, 11), (11, 10)}
    with pytest.raises(ValueError, match="track_engram_id"):
        Engrams(torch.zeros(1, 2, 1)).status_summary()


def test_history_manager_records_and_round_trips(tmp_path):
    torch.manual_seed(0)
    memoria = Memoria(2, 2, 2, 2, 2, keep_history=True)
    for _ in range(6):
        memoria.add_working_memory(torch.rand(1, 3, 4))
        _, indices = memoria.remind()
        memoria.adjust_lifespan_and_memories(indices, torch.full(indices.shape, 2.0))
    (history,) = memoria.history
    assert len(history) == history.timestep == 6
    assert history.engram_ids[:3] == [0, 1, 2]
    first = history.inspect(0)
    assert first.creation_timestep == 0 and first.summaries[0] is history[0]
    assert all(f.engram_id == 0 for f in first.firings)
    path = tmp_path / "history.pkl.gz"
    history.save(str(path))
    loaded = HistoryManager.load(str(path))
    assert loaded.summaries == history.summaries and loaded.engram_firings == history.engram_firings


def test_abstractor_shapes_and_checks():
    torch.manual_seed(0)
    abstractor = Abstractor(num_memories=3, hidden_dim=8, feedforward_dim=5)
    out = abstractor(torch.randn(2, 7, 8))
    assert out.shape == (2, 3, 8)
    out.sum().backward()
    assert abstractor.query_embeddings.grad is not None
    with pytest.raises(ValueError, match="hidden states"):
        abstractor(torch.randn(2, 7, 9))
    with pytest.raises(ValueError, match="num_memories"):
        Abstractor(0, 8, 5)


def test_package_layout():
    for name in (
        "memoria",
        "engram",
        "functional",
        "history_manager",
        "types",
        "utils",
        "abstractor",
    ):
        __import__(f"torchmem.memoria.{name}")
    assert memoria_pkg.REFERENCE_VERSION == "1.1.0"
    assert memoria_pkg.utils.super_unique is super_unique
