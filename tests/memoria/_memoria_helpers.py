"""Shared helpers of the torchmem.memoria tests: the reference loader, state comparison,
random scenario drivers and a bug-patched reference (the oracle for ``fix_reference_bugs``).

Not a test module (no ``test_`` prefix); the test modules import it by name because pytest
puts this folder on ``sys.path``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata

import pytest
import torch

REFERENCE_VERSION = "1.1.0"


def load_reference():
    """The installed memoria-pytorch 1.1.0 package, or skip the calling test.

    A bare ``import memoria`` could also find this test folder as a namespace package when
    the extra is missing, so the module must have a file and the distribution must be there.
    """
    module = pytest.importorskip("memoria")
    if getattr(module, "__file__", None) is None or not hasattr(module, "Memoria"):
        pytest.skip(
            "memoria-pytorch is not installed (the test-only extra)", allow_module_level=True
        )
    try:
        version = importlib.metadata.version("memoria-pytorch")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("memoria-pytorch is not installed", allow_module_level=True)
    if version != REFERENCE_VERSION:
        pytest.skip(
            f"differential tests target memoria-pytorch {REFERENCE_VERSION}, got {version}",
            allow_module_level=True,
        )
    return module


ENGRAM_FIELDS = ("data", "induce_counts", "engrams_types", "lifespan", "age", "engram_ids")


def assert_same_tensor(mine, theirs, what: str) -> None:
    """Equal values, dtype and shape (None only matches None)."""
    if mine is None or theirs is None:
        assert mine is None and theirs is None, f"{what}: {mine!r} vs {theirs!r}"
        return
    assert mine.dtype == theirs.dtype, f"{what}: dtype {mine.dtype} vs {theirs.dtype}"
    assert mine.shape == theirs.shape, f"{what}: shape {tuple(mine.shape)} vs {tuple(theirs.shape)}"
    assert torch.equal(mine, theirs), f"{what}: values differ\n{mine}\n{theirs}"


def assert_same_engrams(mine, theirs, what: str = "engrams") -> None:
    """Every tensor field and flag of two Engrams objects (either implementation) agree."""
    for name in ENGRAM_FIELDS:
        assert_same_tensor(getattr(mine, name), getattr(theirs, name), f"{what}.{name}")
    for name in ("batch_size", "memory_length", "hidden_dim", "track_age", "track_engram_id"):
        assert getattr(mine, name) == getattr(theirs, name), f"{what}.{name}"
    assert len(mine) == len(theirs)


def assert_same_memoria(mine, theirs, what: str = "memoria") -> None:
    """Engram state and bookkeeping attributes of two Memoria objects agree."""
    assert_same_engrams(mine.engrams, theirs.engrams, f"{what}.engrams")
    for name in ("next_engram_id", "timestep", "track_age", "track_id", "keep_history"):
        assert getattr(mine, name) == getattr(theirs, name), f"{what}.{name}"
    assert mine.device == theirs.device and mine.ext_device == theirs.ext_device
    if theirs.history is None:
        assert mine.history is None
    else:
        assert len(mine.history) == len(theirs.history)
        for a, b in zip(mine.history, theirs.history):
            assert_same_history(a, b)


def as_plain(value):
    """Dataclass records (either package's) as plain dicts/tuples, for comparison."""
    if dataclasses.is_dataclass(value):
        return {f.name: as_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: as_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(as_plain(v) for v in value)
    return value


def assert_same_history(mine, theirs) -> None:
    """Two HistoryManager objects recorded the same thing."""
    for name in (
        "summaries",
        "engram_creation_times",
        "engram_deletion_times",
        "engram_durations",
        "engram_firing_times",
        "engram_firings",
        "firings_per_time",
        "alive_engram_ids",
        "deleted_engram_ids",
    ):
        assert as_plain(getattr(mine, name)) == as_plain(getattr(theirs, name)), name
    assert mine.timestep == theirs.timestep and mine.engram_ids == theirs.engram_ids
    assert mine.engram_fire_counts == theirs.engram_fire_counts
    assert mine.engram_lastest_alive_timestep == theirs.engram_lastest_alive_timestep
    assert as_plain(mine.latest_engram_infos) == as_plain(theirs.latest_engram_infos)


# ------------------------------------------------------------------------------------------
# Random scenarios
# ------------------------------------------------------------------------------------------


def random_config(g: torch.Generator) -> dict:
    """Random small Memoria options (uniform in small ranges, zeros included)."""

    def pick(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=g))

    return dict(
        num_reminded_stm=pick(0, 6),
        stm_capacity=pick(0, 10),
        ltm_search_depth=pick(0, 4),
        initial_lifespan=pick(1, 4),
        num_final_ltms=pick(0, 6),
        track_age=bool(pick(0, 1)),
        track_id=bool(pick(0, 1)),
    )


def make_data(kind: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Working-memory data drawn from the global RNG (so both libraries see the same)."""
    if kind == "uniform":
        return torch.rand(shape)
    if kind == "normal":
        return torch.randn(shape)
    if kind == "ties":  # few distinct small integers: exact distance ties everywhere
        return torch.randint(0, 2, shape).float()
    if kind == "float64":
        return torch.rand(shape, dtype=torch.float64)
    if kind == "int":
        return torch.randint(-3, 4, shape)
    if kind == "zeros":
        return torch.zeros(shape)
    raise ValueError(kind)


def make_delta(kind: str, indices: torch.Tensor) -> torch.Tensor:
    if kind == "int":
        return torch.randint_like(indices, 0, 6).float()
    if kind == "long":
        return torch.randint_like(indices, -2, 6)
    if kind == "fractional":
        return torch.rand(indices.shape) * 4 - 1
    raise ValueError(kind)


def drive(
    lib,
    seed: int,
    config: dict,
    batch: int,
    width: int,
    dim: int,
    steps: int,
    data_kind: str = "uniform",
    delta_kind: str = "int",
    pattern: str = "standard",
    **extra,
):
    """Run one scenario from ``seed`` and record everything observable after each call.

    ``pattern`` varies the call order: "standard" (add, remind, adjust), "double_remind"
    (remind twice), "double_add" (add twice), "no_add" (every third step skips the add, so
    remind runs without working memory), "skip_remind" (every other step adjusts with no
    index), "user_indices" (adjust with hand-made indices: duplicates, -1 and < -1).
    """
    torch.manual_seed(seed)
    memoria = lib.Memoria(**config, **extra)
    trace = []
    for step in range(steps):
        if not (pattern == "no_add" and step % 3 == 2):
            memoria.add_working_memory(make_data(data_kind, (batch, width, dim)))
            if pattern == "double_add":
                memoria.add_working_memory(make_data(data_kind, (batch, width, dim)))
        if (pattern == "skip_remind" and step % 2) or memoria.engrams.memory_length == 0:
            # (remind on an empty store raises in both packages: tested separately)
            indices = torch.zeros(batch, 0, dtype=torch.long)
        else:
            memories, indices = memoria.remind()
            if pattern == "double_remind":
                memories, indices = memoria.remind()
            trace.append(("remind", memories.clone(), indices.clone()))
        if pattern == "user_indices" and memoria.engrams.memory_length:
            length = memoria.engrams.memory_length
            indices = torch.randint(-3, length, (batch, 5))
            indices[:, 1] = indices[:, 0]  # a duplicate in every row
        delta = make_delta(delta_kind, indices)
        memoria.adjust_lifespan_and_memories(indices, delta)
        trace.append(("indices after adjust", indices.clone()))
        trace.append(("state", snapshot(memoria)))
    # The global RNG must have advanced identically (remind's tie-breaking draws).
    trace.append(("rng probe", torch.rand(3)))
    return memoria, trace


def snapshot(memoria) -> dict:
    engrams = memoria.engrams
    state = {name: getattr(engrams, name) for name in ENGRAM_FIELDS}
    state = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}
    state["next_engram_id"] = memoria.next_engram_id
    state["timestep"] = memoria.timestep
    return state


def assert_same_trace(mine, theirs) -> None:
    assert len(mine) == len(theirs)
    for step, (a, b) in enumerate(zip(mine, theirs)):
        assert a[0] == b[0]
        if a[0] == "state":
            for key in a[1]:
                if isinstance(a[1][key], torch.Tensor) or a[1][key] is None:
                    assert_same_tensor(a[1][key], b[1][key], f"entry {step} {key}")
                else:
                    assert a[1][key] == b[1][key], f"entry {step} {key}"
        else:
            for x, y in zip(a[1:], b[1:]):
                assert_same_tensor(x, y, f"entry {step} {a[0]}")


# ------------------------------------------------------------------------------------------
# The reference with its bugs patched: the oracle for fix_reference_bugs=True
# ------------------------------------------------------------------------------------------


def patched_reference_class(ref):
    """A subclass of the reference Memoria with the seven fixes, each a minimal change.

    Everything else (kernels, RNG use, layouts) is the reference's own code, so comparing
    ``Memoria(..., fix_reference_bugs=True)`` with it checks that the fixed mode changes
    exactly what it says and nothing more.
    """
    EngramType = ref.EngramType
    super_unique = ref.utils.super_unique

    class PatchedMemoria(ref.Memoria):
        @torch.no_grad()
        def _remind_shortterm_memory(self, weight, shortterm_memory_indices):
            # Fix 1: padding slots score -inf in the short-term top-k.
            stm_weight = weight.mean(dim=1).masked_fill(shortterm_memory_indices < 0, float("-inf"))
            take = min(self.num_reminded_stm, stm_weight.size(1))
            chosen = stm_weight.topk(take, dim=1).indices
            picked = torch.zeros_like(shortterm_memory_indices, dtype=torch.bool)
            picked.scatter_(1, chosen, True)
            return shortterm_memory_indices.masked_fill(~picked, -1)

        @torch.no_grad()
        def _find_initial_longterm_memory(self, nearest):
            # Fixes 5 and 6: -1 slots give -1; only maximal candidates can be drawn.
            rows = torch.arange(nearest.size(0)).unsqueeze(1)
            counts = self.engrams.induce_counts[rows, nearest.clamp(min=0)]
            counts.masked_fill_(~self.engrams.longterm_memory_mask.unsqueeze(1), -1)
            best = counts == counts.max(dim=2).values.unsqueeze(2)
            draw = torch.rand_like(best.type(torch.float16))
            chosen = torch.where(best, draw, -1.0).argmax(dim=2)
            chosen.masked_fill_(
                self.engrams.select(chosen).engrams_types != EngramType.LONGTERM.value, -1
            )
            chosen.masked_fill_(nearest < 0, -1)
            return super_unique(chosen, dim=1)

        @torch.no_grad()
        def _search_longterm_memories_with_initials(self, initial, longterm_memory):
            # Fix 3: nothing found when there is nothing to search.
            batch = initial.size(0)
            local = self.engrams.get_local_indices_from_global_indices(
                self.engrams.longterm_memory_mask, initial
            )
            if initial.numel() == 0 or len(longterm_memory) == 0 or local.size(1) == 0:
                return torch.zeros(batch, 0, dtype=torch.long)
            # Fix 5: -1 walks stay -1 and mark nothing.
            unreachable = ~longterm_memory.longterm_memory_mask
            num_ltm = unreachable.size(1)
            spare = torch.cat([unreachable, torch.ones(batch, 1, dtype=torch.bool)], dim=1)
            rows = torch.arange(batch).unsqueeze(1)
            found = [local]
            spare[rows, torch.where(local < 0, num_ltm, local)] = True
            current = local
            for _ in range(self.ltm_search_depth):
                counts = longterm_memory.induce_counts.masked_fill(spare[:, None, :num_ltm], -1)
                step = counts[rows, current.clamp(min=0)].argmax(dim=2)
                step.masked_fill_(spare[rows, step], -1)
                step.masked_fill_(current < 0, -1)
                found.append(step)
                spare[rows, torch.where(step < 0, num_ltm, step)] = True
                current = step
            found = super_unique(torch.stack(found, dim=1).view(batch, -1), dim=1)
            # Fix 2: positions within long-term memory -> engram indices.
            _, ltm_indices = self.engrams.get_longterm_memory()
            glob = ltm_indices.gather(1, found.clamp(min=0))
            return glob.masked_fill(found < 0, -1)

        @torch.no_grad()
        def _select_final_ltms(self, working_memory, found):
            if found.size(1) == 0:
                return found
            # Fix 1: -1 entries score -inf in the final top-k.
            found_ltms = self.engrams.select(found)
            weight = self._calculate_memory_weight(working_memory, found_ltms).sum(dim=1)
            weight = weight.masked_fill(found < 0, float("-inf"))
            chosen = weight.topk(min(self.num_final_ltms, weight.size(1)), dim=1).indices
            return found.gather(1, chosen)

        @torch.no_grad()
        def adjust_lifespan_and_memories(self, indices, lifespan_delta):
            # Fixes 4 and 7 (and 2's "no revival"): the caller's tensor is copied, repeated
            # indices add up, padding slots gain nothing.
            indices = indices.clone()
            engrams = self.engrams
            length = engrams.memory_length
            spare = torch.where(indices < 0, length, indices)
            gain = torch.zeros(engrams.batch_size, length + 1)
            rows = torch.arange(engrams.batch_size).unsqueeze(1).expand_as(spare)
            delta = torch.broadcast_to(lifespan_delta, spare.shape).float()
            gain.index_put_((rows, spare), delta, accumulate=True)
            gain = gain[:, :length].masked_fill(engrams.engrams_types == EngramType.NULL.value, 0)
            engrams.lifespan += gain
            # The rest of the reference's adjust, with no index left to apply.
            nothing = torch.zeros(engrams.batch_size, 0, dtype=torch.long)
            super().adjust_lifespan_and_memories(nothing, torch.zeros(engrams.batch_size, 0))

    return PatchedMemoria
