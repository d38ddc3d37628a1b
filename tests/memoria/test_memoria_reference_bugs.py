"""The memoria-pytorch 1.1.0 bugs, one small scenario each.

Every test builds a state by hand where the bug shows, checks that the default
(compatible) mode reproduces it, that ``fix_reference_bugs=True`` does not, and, when the
reference package is installed, that the reference itself behaves like the compatible
mode (so the scenario documents a real reference behaviour, not one of ours).
"""

from __future__ import annotations

import importlib.metadata

import torch

import torchmem.memoria as mine
from torchmem.memoria import functional as F

S, L, W, NULL = 2, 3, 1, 0  # type codes: short-term, long-term, working, padding


def _reference():
    """memoria-pytorch 1.1.0 if installed, else None (these tests run either way)."""
    try:
        import memoria

        if (
            getattr(memoria, "__file__", None)
            and importlib.metadata.version("memoria-pytorch") == "1.1.0"
        ):
            return memoria
    except (ImportError, importlib.metadata.PackageNotFoundError):
        pass
    return None


REF = _reference()


def build(lib, data, types, counts=None, lifespan=None, **options):
    """A Memoria of ``lib`` whose engrams are set by hand (the reference's attributes)."""
    data = torch.as_tensor(data, dtype=torch.float32)
    types = torch.as_tensor(types)
    batch, length = types.shape
    if counts is None:
        counts = torch.zeros(batch, length, length, dtype=torch.int32)
    null = types == NULL
    counts = counts.masked_fill(null.unsqueeze(1) | null.unsqueeze(2), -1)
    if lifespan is None:
        lifespan = torch.where(null, -1.0, 5.0)
    fix = options.pop("fix_reference_bugs", None)
    defaults = dict(
        num_reminded_stm=1, stm_capacity=8, ltm_search_depth=0, initial_lifespan=3, num_final_ltms=1
    )
    defaults.update(options)
    memoria = lib.Memoria(**defaults, **({} if fix is None else {"fix_reference_bugs": fix}))
    memoria.engrams = lib.Engrams(
        data, induce_counts=counts, engrams_types=types, lifespan=lifespan
    )
    memoria.device = memoria.ext_device = torch.device("cpu")
    return memoria


def variants(data, types, counts=None, **options):
    """(compatible, fixed, reference or None) Memoria objects on the same hand-made state."""
    compat = build(mine, data, types, counts, **options)
    fixed = build(mine, data, types, counts, fix_reference_bugs=True, **options)
    reference = build(REF, data, types, counts, **options) if REF else None
    return compat, fixed, reference


def reminded_set(memoria, row=0):
    torch.manual_seed(0)
    _, indices = memoria.remind()
    return set(indices[row].tolist()) - {-1}


def test_bug1_padding_slots_take_part_in_the_shortterm_topk():
    # Row 0 has 2 short-term engrams, row 1 has 4, so row 0's short-term list is padded
    # with two zero vectors. Row 0's cue sits at the origin: the padding is "nearest".
    types = [[NULL, NULL, S, S, W], [S, S, S, S, W]]
    data = [
        [[0, 0], [0, 0], [5, 5], [6, 6], [0, 0]],
        [[1, 1], [2, 2], [3, 3], [4, 4], [1, 1]],
    ]
    compat, fixed, reference = variants(data, types, num_reminded_stm=2, num_final_ltms=0)
    # Compatible: both places go to padding, no real short-term engram is reminded.
    assert reminded_set(compat) == set()
    # Fixed: the two short-term engrams that exist are reminded.
    assert reminded_set(fixed) == {2, 3}
    if reference:
        assert reminded_set(reference) == set()


def _uneven_longterm_state():
    # Row 0: [NULL, LTM x, STM s1, STM s2, WM]; row 1: [LTM, LTM, LTM, STM, WM].
    # Row 0's long-term list is [-1, -1, 1], so x sits at *position* 2 of that list, while
    # engram index 2 is the short-term s1.
    types = [[NULL, L, S, S, W], [L, L, L, S, W]]
    # Row 0's cue (3.5, 3.5) is nearest to s2 (3, 3), then s1 (5, 5); far from the origin,
    # so the padding of the found list loses the final top-1 (bug 1 stays out of the way).
    data = [
        [[0, 0], [9, 9], [5, 5], [3, 3], [3.5, 3.5]],
        [[7, 7], [8, 8], [9, 9], [2, 2], [2, 2]],
    ]
    counts = torch.zeros(2, 5, 5, dtype=torch.int32)
    counts[0, 3, 1] = counts[0, 1, 3] = 3  # s2 fired with x
    return data, types, counts


def test_bug2_longterm_positions_are_used_as_engram_indices():
    data, types, counts = _uneven_longterm_state()
    compat, fixed, reference = variants(data, types, counts)
    # The cue reminds s2 (index 3), which leads to x (index 1).
    assert reminded_set(fixed) == {3, 1}
    # Compatible: x's position (2) is taken for an engram index: s1 is reminded instead.
    assert reminded_set(compat) == {3, 2}
    if reference:
        assert reminded_set(reference) == {3, 2}


def test_bug2_padding_slots_are_revived_by_lifespan_gains():
    data, types, counts = _uneven_longterm_state()
    compat, fixed, reference = variants(data, types, counts)
    for memoria in filter(None, (compat, fixed, reference)):
        indices = torch.tensor([[0], [-1]])  # engram 0 of row 0 is padding
        memoria.adjust_lifespan_and_memories(indices, torch.tensor([[10.0], [0.0]]))
    # Compatible: the padding slot gets lifespan -1 + 10 - 1 = 8 and lives on as a NULL
    # "engram" (row 0 keeps 5 slots); fixed: it is dropped (row 0 has 4 engrams left).
    assert compat.engrams.memory_length == 5 and compat.engrams.lifespan[0, 0] == 8
    assert compat.engrams.engrams_types[0, 0] == NULL
    assert fixed.engrams.memory_length == 5  # row 1 still has 5 engrams ...
    assert fixed.engrams.engrams_types[0].tolist() == [NULL, L, S, S, S]  # ... row 0 re-padded
    assert fixed.engrams.lifespan[0, 0] == -1
    if reference:
        assert reference.engrams.lifespan[0, 0] == 8


def test_bug3_zeros_instead_of_minus_one_without_longterm_memory():
    # No long-term memory at all. The cue reminds short-term engram 2 only.
    types = [[S, S, S, W]]
    data = [[[0, 0], [1, 1], [5, 5], [5, 5]]]
    compat, fixed, reference = variants(data, types, num_final_ltms=3)
    assert reminded_set(fixed) == {2}
    # Compatible: the empty search returns zeros, so engram 0 is "reminded" and fired.
    assert reminded_set(compat) == {0, 2}
    assert compat.engrams.fire_count[0, 0] == 1 and fixed.engrams.fire_count[0, 0] == 0
    if reference:
        assert reminded_set(reference) == {0, 2}


def test_bug4_the_callers_index_tensor_is_changed_in_place():
    types = [[S, S, W]]
    data = [[[0, 0], [1, 1], [2, 2]]]
    compat, fixed, reference = variants(data, types)
    for memoria in filter(None, (compat, fixed, reference)):
        indices = torch.tensor([[1, -5, -2]])
        memoria.adjust_lifespan_and_memories(indices, torch.ones(1, 3))
        expected = [1, -5, -2] if memoria is fixed else [1, -1, -1]
        assert indices.tolist() == [expected]


def test_bug5_unreminded_slots_seed_random_longterm_memories():
    # Engrams: LTM a, LTM b, LTM c, STM s0, STM s1, WM (last, all-zero counts).
    # Only s0 is reminded; s0 fired with a only.
    types = torch.tensor([[L, L, L, S, S, W]])
    counts = torch.zeros(1, 6, 6, dtype=torch.int32)
    counts[0, 3, 0] = counts[0, 0, 3] = 2
    reminded = torch.tensor([[3, -1]])
    seen_compat = set()
    for seed in range(20):
        torch.manual_seed(seed)
        compat = F.initial_longterm_indices(counts, types, reminded, reference_bugs=True)
        torch.manual_seed(seed)
        fixed = F.initial_longterm_indices(counts, types, reminded, reference_bugs=False)
        assert set(fixed[0].tolist()) == {0, -1}  # a, and -1 for the unreminded slot
        seen_compat |= set(compat[0].tolist())
        if REF:
            memoria = build(REF, torch.zeros(1, 6, 1), types, counts)
            torch.manual_seed(seed)
            assert torch.equal(memoria._find_initial_longterm_memory(reminded), compat)
    # Compatible: the -1 slot reads row -1 (the working memory, all zeros): every long-term
    # engram ties, and a random one becomes an initial long-term memory.
    assert {1, 2} <= seen_compat


def test_bug5_minus_one_walks_restart_from_and_block_the_last_longterm_slot():
    # Two rows of 3 long-term engrams. In row 0, engram 0 is linked to 2 (9) and to 1 (4).
    # Row 0 starts one walk (from 0), row 1 two, so row 0's start list is padded: [-1, 0].
    counts = torch.zeros(2, 3, 3, dtype=torch.int32)
    counts[0, 0, 2] = counts[0, 2, 0] = 9
    counts[0, 0, 1] = counts[0, 1, 0] = 4
    longterm = torch.tensor([[0, 1, 2], [0, 1, 2]])
    starts = torch.tensor([[-1, 0], [0, 1]])
    fixed = F.search_longterm(counts, longterm, starts, 1, reference_bugs=False)
    compat = F.search_longterm(counts, longterm, starts, 1, reference_bugs=True)
    # Fixed: from 0 the walk follows the strongest link, to 2.
    assert set(fixed[0].tolist()) - {-1} == {0, 2}
    # Compatible: the -1 start marked slot -1 (= 2) visited, so it is never found, and
    # the -1 walk itself restarted from slot 2 and went on to 1.
    assert set(compat[0].tolist()) - {-1} == {0, 1}
    if REF:
        memoria = build(
            REF, torch.zeros(2, 3, 1), [[L, L, L], [L, L, L]], counts, ltm_search_depth=1
        )
        ltm, _ = memoria.engrams.get_longterm_memory()
        initial = torch.tensor([[0, -1], [0, 1]])  # engram indices; row 0 has one
        found = memoria._search_longterm_memories_with_initials(initial, ltm)
        assert torch.equal(found, compat)


def _seed_with_zero_draw(shape, position, known=5259):
    """A seed whose first float16 draw of ``shape`` is exactly 0.0 at ``position``."""

    def zero_at(seed):
        torch.manual_seed(seed)
        return bool(torch.rand(shape, dtype=torch.float16)[position] == 0)

    if zero_at(known):  # found once by the search below (torch 2.13's generator)
        return known
    return next(seed for seed in range(1_000_000) if zero_at(seed))


def test_bug6_a_zero_tie_break_draw_picks_engram_zero():
    # s (index 3) fired most with long-term engram 1: 1 is the unique best candidate.
    types = torch.tensor([[L, L, L, S, W]])
    counts = torch.zeros(1, 5, 5, dtype=torch.int32)
    counts[0, 3, 1] = counts[0, 1, 3] = 4
    reminded = torch.tensor([[3]])
    seed = _seed_with_zero_draw((1, 1, 5), (0, 0, 1))  # the draw for candidate 1 is 0.0
    torch.manual_seed(seed)
    compat = F.initial_longterm_indices(counts, types, reminded, reference_bugs=True)
    torch.manual_seed(seed)
    fixed = F.initial_longterm_indices(counts, types, reminded, reference_bugs=False)
    assert fixed.tolist() == [[1]]
    assert compat.tolist() == [[0]]  # argmax of an all-zero row: engram 0, not a maximum
    if REF:
        memoria = build(REF, torch.zeros(1, 5, 1), types, counts)
        torch.manual_seed(seed)
        assert memoria._find_initial_longterm_memory(reminded).tolist() == [[0]]


def test_bug7_repeated_indices_lose_lifespan_deltas():
    types = [[S, S, W]]
    data = [[[0, 0], [1, 1], [2, 2]]]
    compat, fixed, reference = variants(data, types)
    for memoria in filter(None, (compat, fixed, reference)):
        memoria.adjust_lifespan_and_memories(torch.tensor([[1, 1]]), torch.tensor([[2.0, 7.0]]))
    # Start 5, minus the step's decay of 1.
    assert fixed.engrams.lifespan[0, 1] == 5 + 2 + 7 - 1
    assert compat.engrams.lifespan[0, 1] in (5 + 2 - 1, 5 + 7 - 1)  # one delta is lost
    if reference:
        assert reference.engrams.lifespan[0, 1] == compat.engrams.lifespan[0, 1]


def test_modes_agree_when_no_bug_is_triggered():
    # One row (no padding), every short-term engram reminded, long-term memory present and
    # reached: none of the seven cases occurs, so both modes give the same results.
    torch.manual_seed(0)
    options = dict(
        num_reminded_stm=50,
        stm_capacity=3,
        ltm_search_depth=2,
        initial_lifespan=50,
        num_final_ltms=50,
    )
    results = []
    for fix in (False, True):
        torch.manual_seed(1)
        memoria = mine.Memoria(**options, fix_reference_bugs=fix)
        trace = []
        for _ in range(6):
            memoria.add_working_memory(torch.rand(1, 2, 4))
            memories, indices = memoria.remind()
            memoria.adjust_lifespan_and_memories(indices, torch.ones_like(indices))
            trace.append(indices)
        results.append((trace, memoria.engrams))
    (trace_a, engrams_a), (trace_b, engrams_b) = results
    assert all(torch.equal(a, b) for a, b in zip(trace_a, trace_b))
    assert engrams_a == engrams_b
    assert (engrams_a.engrams_types == L).sum() >= 3
