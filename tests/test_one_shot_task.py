"""The Omniglot-style one-shot episodes from scikit-learn's digits, and the MANN's LRUA maths."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("sklearn")

from torchmem import MANN  # noqa: E402
from torchmem.models.mann import least_used, lrua_write  # noqa: E402
from torchmem.tasks import make_task  # noqa: E402
from torchmem.tasks.one_shot import PIXELS, digit_classes  # noqa: E402


def test_episodes_show_each_label_k_times_and_the_previous_label_one_step_late():
    task = make_task("one_shot", classes=3, instances=4)
    batch = task.sample(5, torch.Generator().manual_seed(0))
    assert batch.inputs.shape == (5, 12, PIXELS + 3) and batch.targets.shape == (5, 12, 3)
    assert batch.mask.eq(1).all()
    assert torch.equal(batch.inputs[:, 1:, PIXELS:], batch.targets[:, :-1])
    assert not batch.inputs[:, 0, PIXELS:].any()
    assert batch.targets.sum(1).eq(4).all()  # every label 4 times
    assert (batch.inputs[..., :PIXELS] >= 0).all() and (batch.inputs[..., :PIXELS] <= 1).all()
    instance = task.instance_numbers(batch)
    assert sorted(instance[0].tolist()) == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    # All images of one label come from one class (one digit at one rotation).
    pools = digit_classes("train")
    for b in range(5):
        labels = batch.targets[b].argmax(-1)
        for label in range(3):
            images = batch.inputs[b, labels == label, :PIXELS]
            homes = {
                c for c, pool in enumerate(pools) for img in images if (pool == img).all(-1).any()
            }
            assert len(homes) == 1
    # the same generator seed gives the same episodes
    again = task.sample(5, torch.Generator().manual_seed(0))
    assert torch.equal(again.inputs, batch.inputs)


def test_the_two_image_splits_share_no_image_and_have_twenty_classes():
    train, test = digit_classes("train"), digit_classes("test")
    assert len(train) == len(test) == 20
    a = torch.cat(train).unique(dim=0)
    b = torch.cat(test)
    overlap = (b[:, None] == a[None]).all(-1).any(-1).float().mean()
    assert overlap < 0.02  # distinct scans; a handful of identical 8 x 8 images may exist
    with pytest.raises(ValueError, match="images must be one of train, test"):
        make_task("one_shot", images="val")
    with pytest.raises(ValueError, match="classes must be in 2..20"):
        make_task("one_shot", classes=30)


def test_metrics_by_instance():
    task = make_task("one_shot", classes=2, instances=3)
    batch = task.sample(4, torch.Generator().manual_seed(1))
    perfect = batch.targets * 10
    m = task.metrics(perfect, batch)
    assert (
        m["accuracy"] == 1 and m["accuracy_instance_1"] == 1 and m["bit_errors_per_sequence"] == 0
    )
    # wrong on every first instance, right afterwards
    first = task.instance_numbers(batch) == 1
    guessed = torch.where(first[..., None], 10 * (1 - batch.targets), perfect)
    m = task.metrics(guessed, batch)
    assert m["accuracy_instance_1"] == 0 and m["accuracy_instance_2"] == 1
    assert m["bit_errors_per_sequence"] == 2 and m["sequence_accuracy"] == 0
    assert "accuracy_instance_5" not in m
    assert "x" in task.render(batch, guessed)


def test_least_used_and_lrua_write_by_hand():
    usage = torch.tensor([[0.5, 0.1, 0.9, 0.1, 0.3]])
    assert least_used(usage, 2).tolist() == [[0.0, 1.0, 0.0, 1.0, 0.0]]
    assert least_used(usage, 3).tolist() == [[0.0, 1.0, 0.0, 1.0, 1.0]]
    memory = torch.arange(10.0).reshape(1, 5, 2)
    prev_read = torch.tensor([[[1.0, 0, 0, 0, 0]]])
    prev_least = torch.tensor([[0.0, 1, 0, 0, 0]])
    key = torch.tensor([[[1.0, -1.0]]])
    new, write = lrua_write(memory, usage, prev_read, prev_least, key, torch.tensor([[0.25]]))
    assert write.tolist() == [[[0.25, 0.75, 0.0, 0.0, 0.0]]]
    expected = memory.clone()
    expected[0, 1] = 0.0  # the least used slot (first of the ties) is emptied first
    expected[0] += write[0].T @ key[0]
    assert torch.allclose(new, expected)


def test_mann_step_follows_the_equations():
    torch.manual_seed(0)
    model = MANN(6, 3, hidden_size=8, memory_slots=5, memory_width=4, read_heads=2).double()
    x = torch.randn(2, 4, 6, dtype=torch.float64)
    _, before = model(x[:, :3])
    _, after = model(x[:, 3:], before)
    assert torch.allclose(
        after.usage,
        0.95 * before.usage + (after.read_weights + after.write_weights).sum(1),
    )
    assert torch.equal(after.least_used, least_used(after.usage, 2))
    assert torch.allclose(after.read_weights.sum(-1), torch.ones(2, 2, dtype=torch.float64))
    assert torch.allclose(after.read_vectors, after.read_weights @ after.memory)


def test_mann_read_strength_option_sharpens_reads():
    from torchmem.core.addressing import cosine_similarity, oneplus

    torch.manual_seed(0)
    plain = MANN(6, 3, hidden_size=8, memory_slots=5, memory_width=4, read_heads=2).double()
    torch.manual_seed(0)
    strong = MANN(
        6, 3, hidden_size=8, memory_slots=5, memory_width=4, read_heads=2, read_strength=True
    ).double()
    assert strong.interface.out_features == plain.interface.out_features + 2
    x = torch.randn(2, 4, 6, dtype=torch.float64)
    _, before = strong(x[:, :3])
    _, after = strong(x[:, 3:], before)
    _, _, interface = strong._control(x[:, 3], before)
    key, _, strength = interface.unflatten(-1, (2, 6)).split([4, 1, 1], dim=-1)
    beta = oneplus(strength)
    assert (beta >= 1).all()
    expected = torch.softmax(beta * cosine_similarity(after.memory, key), dim=-1)
    assert torch.allclose(after.read_weights, expected)
