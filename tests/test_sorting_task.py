"""The Memoria paper's sorting task: layout, labels against a brute-force count, the drift
of the symbol distribution, scoring and errors."""

from collections import Counter

import pytest
import torch

from torchmem.tasks import TASKS, Batch, SortingConfig, SortingTask, Task, make_task, task_config
from torchmem.tasks.sorting import sort_by_frequency


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def perfect_logits(batch: Batch) -> torch.Tensor:
    return 10.0 * (2.0 * batch.targets - 1.0)


def brute_force_answer(sequence: list[int], symbols: int) -> list[int]:
    """The authors' rule: Counter.most_common (ties: first occurrence), then absent symbols."""
    answer = [symbol for symbol, _ in Counter(sequence).most_common()]
    return answer + [s for s in range(symbols) if s not in answer]


def test_registered_and_protocol():
    assert TASKS["sorting"] == (SortingTask, SortingConfig)
    task = make_task("sorting", symbols="5", min_length="30", max_length=40)
    assert isinstance(task, Task) and task.name == "sorting"
    assert (task.input_size, task.output_size) == (6, 5)
    assert make_task(task.name, **task_config(task)).config == task.config


@pytest.mark.parametrize("length", [1, 5, 37, 300])
def test_layout(length):
    task = SortingTask(SortingConfig(symbols=6))
    batch = task.sample(4, gen(1), length=length)
    v, total = 6, length + 6
    assert batch.inputs.shape == (4, total, 7)
    assert batch.targets.shape == (4, total, 6) and batch.mask.shape == (4, total)
    assert all(t.dtype == torch.float32 for t in batch)
    assert torch.equal(batch.inputs.sum(-1), torch.ones(4, total))  # one token per step
    assert torch.all(batch.inputs[:, :length, v] == 0)  # no separator in the sequence
    assert torch.all(batch.inputs[:, length, v] == 1)  # the separator
    assert torch.equal(batch.mask[:, length:], torch.ones(4, v))
    assert torch.equal(batch.mask[:, :length], torch.zeros(4, length))
    assert torch.all(batch.targets[batch.mask == 0] == 0)
    # teacher forcing: the answer so far is fed back, one step late
    answer = batch.targets[:, length:].argmax(-1)
    assert torch.equal(batch.inputs[:, length + 1 :, :v], batch.targets[:, length:-1])
    assert torch.equal(answer.sort(dim=1).values, torch.arange(v).expand(4, v))


@pytest.mark.parametrize("symbols, length", [(8, 5), (8, 24), (20, 200), (3, 1000)])
def test_labels_are_the_symbols_sorted_by_frequency(symbols, length):
    task = SortingTask(SortingConfig(symbols=symbols))
    batch = task.sample(16, gen(symbols + length), length=length)
    sequence, answer = task.decode(batch)
    for row in range(16):
        seq = sequence[row].tolist()
        assert answer[row].tolist() == brute_force_answer(seq, symbols)
        counts = [seq.count(s) for s in answer[row].tolist()]
        assert counts == sorted(counts, reverse=True)


def test_sort_by_frequency_ties_and_absent_symbols():
    sequence = torch.tensor([[3, 1, 1, 3, 0], [2, 2, 2, 2, 2]])
    assert sort_by_frequency(sequence, 5).tolist() == [[3, 1, 0, 2, 4], [2, 0, 1, 3, 4]]


def test_the_distribution_drifts_from_start_to_end():
    """Symbol j is drawn from (1 - r_j) p_start + r_j p_end with r_j = (j + 1) / L."""
    task = SortingTask(SortingConfig(symbols=2))
    length, rows = 8, 20_000
    start = torch.tensor([1.0, 0.0]).expand(rows, 2)
    end = torch.tensor([0.0, 1.0]).expand(rows, 2)
    sequence = task.mix(start, end, length, gen(3))
    share_of_end = sequence.double().mean(0)  # fraction of symbol 1 per position
    expected = torch.arange(1, length + 1, dtype=torch.float64) / length
    assert torch.allclose(share_of_end, expected, atol=0.015)


def test_weights_follow_max_weight():
    uniform = SortingTask(SortingConfig(symbols=4, max_weight=1))
    sequence, _ = uniform.decode(uniform.sample(64, gen(0), length=400))
    share = torch.bincount(sequence.flatten(), minlength=4) / sequence.numel()
    assert torch.allclose(share, torch.full((4,), 0.25, dtype=share.dtype), atol=0.01)


def test_same_seed_same_batch_and_length_range():
    task = make_task("sorting", min_length=10, max_length=12)
    a, b, c = task.sample(3, gen(7)), task.sample(3, gen(7)), task.sample(3, gen(8))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert a.inputs.shape != c.inputs.shape or not torch.equal(a.inputs, c.inputs)
    lengths = {task.sample(1, gen(s)).inputs.shape[1] - 20 for s in range(30)}
    assert lengths == {10, 11, 12}


def test_scoring():
    task = SortingTask(SortingConfig(symbols=5))
    batch = task.sample(4, gen(2), length=30)
    logits = perfect_logits(batch)
    logits[batch.mask == 0] = torch.randn_like(logits[batch.mask == 0])  # unscored: ignored
    m = task.metrics(logits, batch)
    assert m["accuracy"] == 1.0 and m["sequence_accuracy"] == 1.0
    assert m["bit_errors_per_sequence"] == 0.0 == m["token_errors_per_sequence"]
    assert m["loss"] < 1e-6 and task.loss(logits, batch).item() < 1e-6
    # swap the top two logits at 3 answer steps of sequence 1
    for step in (30, 31, 33):
        logits[1, step] = -logits[1, step]
    m = task.metrics(logits, batch)
    assert m["token_errors_per_sequence"] == pytest.approx(3 / 4)
    assert m["bit_errors_per_sequence"] == m["token_errors_per_sequence"]
    assert m["accuracy"] == pytest.approx(1 - 3 / 20)
    assert m["sequence_accuracy"] == pytest.approx(3 / 4)
    # uniform logits: loss log(V)
    uniform = torch.zeros_like(logits, requires_grad=True)
    loss = task.loss(uniform, batch)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(5.0)).item())
    loss.backward()
    assert torch.all(uniform.grad[batch.mask == 0] == 0)
    assert torch.isfinite(uniform.grad).all()


def test_render():
    task = SortingTask(SortingConfig(symbols=4))
    batch = task.sample(2, gen(4), length=100)
    text = task.render(batch, index=1)
    assert "L=100" in text and "..." in text and len(text.splitlines()) == 4
    logits = perfect_logits(batch)
    logits[1, 100] = -logits[1, 100]
    text = task.render(batch, logits, index=1)
    assert "(1 wrong)" in text and len(text.splitlines()) == 6


def test_errors():
    with pytest.raises(ValueError, match="symbols must be >= 2"):
        SortingConfig(symbols=1)
    with pytest.raises(ValueError, match="max_length"):
        SortingConfig(min_length=10, max_length=5)
    with pytest.raises(ValueError, match="max_weight"):
        make_task("sorting", max_weight=0)
    with pytest.raises(ValueError, match="unknown option"):
        make_task("sorting", length=5)
    task = SortingTask()
    with pytest.raises(ValueError, match="length must be >= 1"):
        task.sample(2, gen(0), length=0)
    with pytest.raises(ValueError, match="batch_size"):
        task.sample(0, gen(0))
    batch = task.sample(2, gen(0), length=10)
    with pytest.raises(ValueError, match=r"\(B, T, output_size\)"):
        task.loss(torch.zeros(2, 30, 21), batch)
    with pytest.raises(ValueError, match="out of range"):
        task.render(batch, index=5)


def test_compare_accepts_related_task_options_together():
    from torchmem.experiments import split_compare_overrides

    _, task_opts, _ = split_compare_overrides(
        ["segment-transformer"], "sorting", {"task.min_length": "40", "max_length": "40"}
    )
    assert task_opts == {"min_length": 40, "max_length": 40}
    with pytest.raises(ValueError, match="max_length"):
        split_compare_overrides(["segment-transformer"], "sorting", {"max_length": "40"})
