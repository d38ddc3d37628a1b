"""Tests for the NTM algorithmic tasks (torchmem.tasks)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from torchmem.tasks import (
    TASKS,
    AssociativeRecallConfig,
    AssociativeRecallTask,
    Batch,
    CopyConfig,
    CopyTask,
    PrioritySortConfig,
    PrioritySortTask,
    RepeatCopyConfig,
    RepeatCopyTask,
    Task,
    make_task,
    task_config,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def perfect_logits(batch: Batch) -> torch.Tensor:
    return 10.0 * (2.0 * batch.targets - 1.0)


ALL_NAMES = ["copy", "repeat_copy", "associative_recall", "priority_sort"]


# --------------------------------------------------------------------------
# Generic properties, every task
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_NAMES)
def test_batch_layout_and_protocol(name: str) -> None:
    task = make_task(name)
    assert isinstance(task, Task)
    assert task.name == name
    batch = task.sample(5, gen(1))
    b, t, i = batch.inputs.shape
    assert (b, i) == (5, task.input_size)
    assert batch.targets.shape == (5, t, task.output_size)
    assert batch.mask.shape == (5, t)
    for tensor in batch:
        assert tensor.dtype == torch.float32
        assert tensor.device.type == "cpu"
    # Targets are zero wherever the output is not scored.
    assert torch.all(batch.targets[batch.mask == 0] == 0)
    assert set(batch.mask.unique().tolist()) <= {0.0, 1.0}
    assert batch.mask.sum() > 0


@pytest.mark.parametrize("name", ALL_NAMES)
def test_same_seed_same_batch_different_seed_different(name: str) -> None:
    task = make_task(name)
    a, b, c = task.sample(4, gen(7)), task.sample(4, gen(7)), task.sample(4, gen(8))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert a.inputs.shape != c.inputs.shape or not torch.equal(a.inputs, c.inputs)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_perfect_logits_score_zero(name: str) -> None:
    task = make_task(name)
    batch = task.sample(6, gen(2))
    m = task.metrics(perfect_logits(batch), batch)
    assert m["bit_errors_per_sequence"] == 0.0
    assert m["sequence_accuracy"] == 1.0
    assert m["loss"] < 1e-3
    assert task.loss(perfect_logits(batch), batch).item() < 1e-3


@pytest.mark.parametrize("name", ALL_NAMES)
def test_flipping_k_bits_in_one_sequence(name: str) -> None:
    task = make_task(name)
    batch_size, k = 4, 3
    batch = task.sample(batch_size, gen(3))
    logits = perfect_logits(batch)
    # Flip k distinct scored bits of sequence 1.
    scored_steps = torch.nonzero(batch.mask[1]).flatten()
    for j in range(k):
        step, bit = scored_steps[j % len(scored_steps)], j // len(scored_steps)
        logits[1, step, bit] = -logits[1, step, bit]
    # Garbage at unscored positions must not count.
    logits[batch.mask == 0] = 5.0
    m = task.metrics(logits, batch)
    assert m["bit_errors_per_sequence"] == pytest.approx(k / batch_size)
    assert m["sequence_accuracy"] == pytest.approx((batch_size - 1) / batch_size)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_wrong_output_shape_raises(name: str) -> None:
    task = make_task(name)
    batch = task.sample(2, gen(0))
    b, t, o = batch.targets.shape
    for bad in [torch.zeros(b, t, o + 1), torch.zeros(b, t - 1, o), torch.zeros(b + 1, t, o)]:
        with pytest.raises(ValueError, match=r"\(B, T, output_size\)"):
            task.loss(bad, batch)
        with pytest.raises(
            ValueError, match=str(tuple(bad.shape)).replace("(", r"\(").replace(")", r"\)")
        ):
            task.metrics(bad, batch)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_render_rows(name: str) -> None:
    task = make_task(name)
    batch = task.sample(3, gen(4))
    time = batch.inputs.shape[1]
    text = task.render(batch, index=1)
    lines = text.splitlines()
    assert len(lines) == 1 + 1 + task.input_size + 1 + task.output_size
    grid = [line for line in lines if "|" in line]
    assert len(grid) == task.input_size + task.output_size
    assert all(len(line.split("|", 1)[1]) == time for line in grid)

    logits = perfect_logits(batch)
    logits[1, batch.mask[1].nonzero()[0, 0], 0] *= -1
    text = task.render(batch, logits, index=1)
    lines = text.splitlines()
    assert len(lines) == 1 + (1 + task.input_size) + (1 + task.output_size) * 2 + 1
    assert "1 bit errors" in text
    assert lines[-1].lstrip().startswith("errors")
    assert lines[-1].count("x") == 1


def test_render_copy_picture() -> None:
    task = CopyTask(CopyConfig(bits=2))
    batch = task.sample(1, length=3, generator=gen(0))
    lines = task.render(batch).splitlines()
    delim_row = next(line for line in lines if line.lstrip().startswith("delim"))
    assert delim_row.split("|")[1] == "...#..."
    target_row = lines[lines.index("targets:") + 1]
    assert target_row.split("|")[1][:4] == "    "  # unscored steps left blank


# --------------------------------------------------------------------------
# Copy
# --------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 7, 20, 40])
def test_copy_layout(length: int) -> None:
    task = CopyTask()
    batch = task.sample(3, gen(length), length=length)
    bits = task.config.bits
    assert batch.inputs.shape == (3, 2 * length + 1, bits + 1)
    seq = batch.inputs[:, :length, :bits]
    # The target is the input sequence shifted by length + 1 steps.
    assert torch.equal(batch.targets[:, length + 1 :], seq)
    assert torch.all(batch.targets[:, : length + 1] == 0)
    assert torch.equal(batch.mask.sum(1), torch.full((3,), float(length)))
    assert torch.all(batch.mask[:, length + 1 :] == 1)
    # Delimiter only at step `length`, with no data bits there; silence afterwards.
    delim = batch.inputs[:, :, bits]
    assert torch.equal(delim.nonzero()[:, 1], torch.full((3,), length))
    assert torch.all(batch.inputs[:, length, :bits] == 0)
    assert torch.all(batch.inputs[:, length + 1 :] == 0)
    assert set(seq.unique().tolist()) <= {0.0, 1.0}


def test_copy_sampled_length_in_range_and_varies() -> None:
    task = CopyTask()
    g = gen(5)
    lengths = set()
    for _ in range(40):
        t = task.sample(1, g).inputs.shape[1]
        assert t % 2 == 1
        length = (t - 1) // 2
        assert 1 <= length <= 20
        lengths.add(length)
    assert len(lengths) > 5


def test_copy_bits_are_balanced() -> None:
    batch = CopyTask().sample(64, gen(0), length=20)
    mean = batch.inputs[:, :20, :8].mean().item()
    assert 0.45 < mean < 0.55


def test_invalid_lengths() -> None:
    task = CopyTask()
    with pytest.raises(ValueError):
        task.sample(2, gen(0), length=0)
    with pytest.raises(ValueError):
        task.sample(0, gen(0))
    with pytest.raises(ValueError):
        CopyConfig(min_length=5, max_length=4)


# --------------------------------------------------------------------------
# Repeat copy
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "repeats"), [(1, 1), (3, 4), (10, 10), (5, 15)])
def test_repeat_copy_layout(length: int, repeats: int) -> None:
    task = RepeatCopyTask()
    bits = task.config.bits
    batch = task.sample(2, gen(0), length=length, repeats=repeats)
    total = length + 1 + repeats * length + 1
    assert batch.inputs.shape == (2, total, bits + 2)
    assert batch.targets.shape == (2, total, bits + 1)
    seq = batch.inputs[:, :length, :bits]
    out = batch.targets[:, length + 1 : total - 1, :bits]
    for r in range(repeats):
        assert torch.equal(out[:, r * length : (r + 1) * length], seq)
    # End marker exactly at the last step, nowhere else.
    end = batch.targets[:, :, bits]
    assert torch.equal(end.nonzero()[:, 1], torch.full((2,), total - 1))
    assert torch.all(batch.targets[:, -1, :bits] == 0)
    # Mask covers the whole output phase including the end marker.
    assert torch.all(batch.mask[:, length + 1 :] == 1)
    assert torch.equal(batch.mask.sum(1), torch.full((2,), float(repeats * length + 1)))
    # Delimiter and repeat count only at step `length`.
    assert torch.equal(batch.inputs[:, :, bits].nonzero()[:, 1], torch.full((2,), length))
    count = batch.inputs[:, :, bits + 1]
    assert torch.allclose(count[:, length], torch.full((2,), task.normalise_repeats(repeats)))
    count_elsewhere = torch.cat([count[:, :length], count[:, length + 1 :]], dim=1)
    assert torch.all(count_elsewhere == 0)
    assert task.decode_repeats(count[0, length].item()) == repeats


def test_repeat_count_normalisation() -> None:
    task = RepeatCopyTask()  # repeats 1..10
    values = torch.tensor([task.normalise_repeats(n) for n in range(1, 11)], dtype=torch.float64)
    assert values.mean().item() == pytest.approx(0.0, abs=1e-9)
    assert values.var(unbiased=False).item() == pytest.approx(1.0)
    single = RepeatCopyTask(RepeatCopyConfig(min_repeats=3, max_repeats=3))
    assert single.normalise_repeats(3) == 0.0
    assert single.normalise_repeats(5) == 2.0  # std of 1 for a single value


def test_repeat_copy_sampled_ranges() -> None:
    task = RepeatCopyTask(
        RepeatCopyConfig(min_length=2, max_length=4, min_repeats=2, max_repeats=3)
    )
    g = gen(9)
    seen = set()
    for _ in range(30):
        batch = task.sample(1, g)
        length = int(batch.inputs[0, :, task.config.bits].nonzero()[0, 0])
        reps = task.decode_repeats(batch.inputs[0, length, task.config.bits + 1].item())
        assert 2 <= length <= 4 and 2 <= reps <= 3
        assert batch.inputs.shape[1] == length + 2 + reps * length
        seen.add((length, reps))
    assert len(seen) == 6


# --------------------------------------------------------------------------
# Associative recall
# --------------------------------------------------------------------------


def _parse_recall(inputs: torch.Tensor, bits: int, item_length: int):
    """Recover (items, query) from one example's inputs (T, bits+2), independently of the task."""
    item_steps = inputs[:, bits].nonzero().flatten().tolist()
    items = [inputs[s + 1 : s + 1 + item_length, :bits] for s in item_steps]
    query_steps = inputs[:, bits + 1].nonzero().flatten().tolist()
    assert len(query_steps) == 2
    assert query_steps[1] - query_steps[0] == item_length + 1
    query = inputs[query_steps[0] + 1 : query_steps[1], :bits]
    return item_steps, items, query, query_steps


@pytest.mark.parametrize("num_items", [2, 4, 6, 12])
def test_associative_recall_target_is_next_item(num_items: int) -> None:
    cfg = AssociativeRecallConfig()
    task = AssociativeRecallTask(cfg)
    bits, size = cfg.bits, cfg.item_length
    batch = task.sample(16, gen(num_items), length=num_items)
    total = num_items * (size + 1) + 2 * size + 2
    assert batch.inputs.shape == (16, total, bits + 2)
    assert batch.targets.shape == (16, total, bits)
    assert torch.equal(batch.mask.sum(1), torch.full((16,), float(size)))
    assert torch.all(batch.mask[:, -size:] == 1)
    positions = set()
    for b in range(16):
        steps, items, query, query_steps = _parse_recall(batch.inputs[b], bits, size)
        assert steps == [k * (size + 1) for k in range(num_items)]
        assert query_steps[1] == total - size - 1
        matches = [k for k, item in enumerate(items) if torch.equal(item, query)]
        assert len(matches) == 1  # items are distinct, so the answer is unambiguous
        k = matches[0]
        assert k < num_items - 1  # never the last item
        positions.add(k)
        assert torch.equal(batch.targets[b, -size:], items[k + 1])
        assert torch.all(batch.inputs[b, -size:] == 0)
    if num_items > 2:
        assert len(positions) > 1  # the queried item varies across the batch


def test_associative_recall_items_distinct_when_space_is_tiny() -> None:
    # 2 bits x 1 vector = only 4 possible items: repeats would be frequent without redraws.
    task = AssociativeRecallTask(
        AssociativeRecallConfig(bits=2, item_length=1, min_items=4, max_items=4)
    )
    batch = task.sample(32, gen(0))
    for b in range(32):
        _, items, _, _ = _parse_recall(batch.inputs[b], 2, 1)
        assert len({tuple(i.flatten().tolist()) for i in items}) == 4
    with pytest.raises(ValueError, match="distinct"):
        task.sample(2, gen(0), length=5)
    with pytest.raises(ValueError):
        AssociativeRecallConfig(min_items=1)


# --------------------------------------------------------------------------
# Priority sort
# --------------------------------------------------------------------------


@pytest.mark.parametrize("length", [None, 5, 40])
def test_priority_sort_targets_are_sorted_top_k(length: int | None) -> None:
    task = PrioritySortTask()
    cfg = task.config
    batch = task.sample(8, gen(11), length=length)
    n = cfg.num_inputs if length is None else length
    m = task.num_outputs_for(n)
    assert batch.inputs.shape == (8, n + 1 + m, cfg.bits + 2)
    assert torch.equal(batch.mask.sum(1), torch.full((8,), float(m)))
    assert torch.equal(batch.inputs[:, :, cfg.bits + 1].nonzero()[:, 1], torch.full((8,), n))
    for b in range(8):
        vectors = batch.inputs[b, :n, : cfg.bits]
        priority = batch.inputs[b, :n, cfg.bits]
        assert torch.all((priority >= -1) & (priority <= 1))
        # Independent reference: greedily take the highest remaining priority.
        remaining = list(range(n))
        expected = []
        for _ in range(m):
            best = max(remaining, key=lambda i: priority[i].item())
            remaining.remove(best)
            expected.append(vectors[best])
        assert torch.equal(batch.targets[b, n + 1 :], torch.stack(expected))
        assert torch.all(batch.inputs[b, n:, : cfg.bits + 1] == 0)


def test_priority_sort_output_count_rule() -> None:
    task = PrioritySortTask()  # 20 -> 16
    assert task.num_outputs_for(20) == 16
    assert task.num_outputs_for(40) == 32
    assert task.num_outputs_for(10) == 8
    assert task.num_outputs_for(1) == 1
    with pytest.raises(ValueError):
        PrioritySortConfig(num_inputs=4, num_outputs=5)


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------


def test_registry_contents() -> None:
    # "sorting", "gap_recall" and "one_shot" have their own tests (test_sorting_task.py,
    # test_gap_recall_task.py, test_one_shot_task.py).
    assert set(TASKS) == set(ALL_NAMES) | {"sorting", "gap_recall", "one_shot"}
    for name, (task_cls, config_cls) in TASKS.items():
        task = task_cls(config_cls())
        assert task.name == name
        assert dataclasses.is_dataclass(config_cls)


def test_unknown_task_lists_valid_names() -> None:
    with pytest.raises(ValueError) as info:
        make_task("cpy")
    for name in ALL_NAMES:
        assert name in str(info.value)


def test_unknown_option_lists_valid_options() -> None:
    with pytest.raises(ValueError) as info:
        make_task("copy", max_len=5)
    message = str(info.value)
    assert "max_len" in message
    for option in ("bits", "min_length", "max_length"):
        assert option in message


def test_string_overrides_are_coerced() -> None:
    task = make_task("copy", bits="4", max_length="30", min_length=None)
    assert task.config == CopyConfig(bits=4, min_length=1, max_length=30)
    assert isinstance(task.config.bits, int)
    task = make_task("repeat-copy", **{"max-repeats": "20.0"})
    assert task.config.max_repeats == 20 and isinstance(task.config.max_repeats, int)
    with pytest.raises(ValueError, match="bits"):
        make_task("copy", bits="eight")
    with pytest.raises(ValueError):
        make_task("copy", bits="4.5")
    with pytest.raises(ValueError):
        make_task("copy", min_length="9", max_length="3")


def test_task_config_round_trip() -> None:
    task = make_task("priority_sort", num_inputs="10", num_outputs=4)
    saved = task_config(task)
    assert saved == {"bits": 8, "num_inputs": 10, "num_outputs": 4}
    rebuilt = make_task(task.name, **saved)
    assert rebuilt.config == task.config
    for x, y in zip(task.sample(2, gen(0)), rebuilt.sample(2, gen(0))):
        assert torch.equal(x, y)


def test_defaults_match_paper() -> None:
    assert CopyConfig() == CopyConfig(bits=8, min_length=1, max_length=20)
    assert RepeatCopyConfig() == RepeatCopyConfig(8, 1, 10, 1, 10)
    assert AssociativeRecallConfig() == AssociativeRecallConfig(6, 3, 2, 6)
    assert PrioritySortConfig() == PrioritySortConfig(8, 20, 16)
    with pytest.raises(dataclasses.FrozenInstanceError):
        CopyConfig().bits = 3  # type: ignore[misc]


def test_loss_is_differentiable_and_masked() -> None:
    task = CopyTask()
    batch = task.sample(3, gen(0), length=4)
    logits = torch.zeros_like(batch.targets, requires_grad=True)
    loss = task.loss(logits, batch)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-5)
    loss.backward()
    assert torch.all(logits.grad[batch.mask == 0] == 0)
    assert torch.all(logits.grad[batch.mask == 1] != 0)
