"""The gap recall task: labels, gaps and layout recomputed from the inputs by hand."""

import pytest
import torch

from torchmem.tasks import TASKS, GapRecallConfig, GapRecallTask, gaps_of, make_task


def _draw(task, batch_size=64, seed=0, length=None):
    return task.sample_with_gaps(batch_size, torch.Generator().manual_seed(seed), length)


def test_registered_with_its_config():
    assert TASKS["gap_recall"] == (GapRecallTask, GapRecallConfig)
    task = make_task("gap_recall", bits="3", facts="5", max_gap="9")
    assert (task.input_size, task.output_size) == (8, 3)
    assert task.config == GapRecallConfig(bits=3, facts=5, min_gap=1, max_gap=9)


@pytest.mark.parametrize("facts, min_gap, max_gap", [(1, 1, 1), (4, 1, 16), (6, 5, 12), (3, 2, 2)])
def test_layout_labels_and_gaps_by_hand(facts, min_gap, max_gap):
    bits = 3
    task = GapRecallTask(GapRecallConfig(bits=bits, facts=facts, min_gap=min_gap, max_gap=max_gap))
    batch, gaps = _draw(task)
    stream = max(max_gap, facts)
    assert batch.inputs.shape == (64, stream + 2, 2 * bits + 2)
    assert batch.targets.shape == (64, stream + 2, bits)
    assert ((gaps >= min_gap) & (gaps <= max_gap)).all()
    assert torch.equal(gaps, gaps_of(batch, bits))
    # Only the answer step is scored; the query step is flagged and the answer step is blank.
    expected_mask = torch.zeros(64, stream + 2)
    expected_mask[:, -1] = 1.0
    assert torch.equal(batch.mask, expected_mask)
    assert (batch.inputs[:, stream, 2 * bits + 1] == 1).all()
    assert (batch.inputs[:, :stream, 2 * bits + 1] == 0).all()
    assert (batch.inputs[:, -1] == 0).all()
    assert (batch.inputs[:, stream, bits : 2 * bits + 1] == 0).all()
    for b in range(64):
        x = batch.inputs[b]
        fact_steps = torch.nonzero(x[:stream, 2 * bits]).flatten().tolist()
        assert len(fact_steps) == facts
        fact_keys = {tuple(x[t, :bits].tolist()) for t in fact_steps}
        assert len(fact_keys) == facts  # distinct keys: the answer is unambiguous
        query = x[stream, :bits]
        matches = [t for t in fact_steps if torch.equal(x[t, :bits], query)]
        assert len(matches) == 1
        assert stream - matches[0] == int(gaps[b])
        assert torch.equal(batch.targets[b, -1], x[matches[0], bits : 2 * bits])
        assert (batch.targets[b, :-1] == 0).all()


def test_gaps_cover_the_range_and_forced_gaps_extend_the_stream():
    task = GapRecallTask(GapRecallConfig(bits=4, facts=3, min_gap=2, max_gap=6))
    _, gaps = _draw(task, batch_size=500)
    assert set(gaps.tolist()) == {2, 3, 4, 5, 6}
    batch, gaps = _draw(task, batch_size=8, length=10)  # beyond max_gap: longer stream
    assert batch.inputs.shape[1] == 12 and (gaps == 10).all()
    assert torch.equal(gaps_of(batch, 4), gaps)
    batch, gaps = _draw(task, batch_size=8, length=1)
    assert batch.inputs.shape[1] == 8 and (gaps == 1).all()
    with pytest.raises(ValueError, match="forced gap"):
        task.sample(2, length=0)


def test_same_seed_same_batch_and_sample_matches_sample_with_gaps():
    task = GapRecallTask()
    a, gaps = _draw(task, seed=3)
    b = task.sample(64, torch.Generator().manual_seed(3))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, _draw(task, seed=4)[0].inputs)


def test_bad_configs_fail_clearly():
    with pytest.raises(ValueError, match="distinct keys"):
        GapRecallConfig(bits=2, facts=5)
    with pytest.raises(ValueError, match="max_gap"):
        GapRecallConfig(min_gap=4, max_gap=3)
    with pytest.raises(ValueError, match="min_gap"):
        GapRecallConfig(min_gap=0)


def test_scoring_and_render():
    task = GapRecallTask(GapRecallConfig(bits=4, facts=2, max_gap=5))
    batch, gaps = _draw(task, batch_size=4)
    perfect = (batch.targets * 2 - 1) * 10
    assert task.metrics(perfect, batch)["sequence_accuracy"] == 1.0
    text = task.render(batch, perfect, index=1)
    assert f"gap {int(gaps[1])}" in text.splitlines()[0]
