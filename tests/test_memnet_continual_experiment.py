"""Experiment 2 (continual learning under distribution shift): the metrics by hand, the
shifted task, and a smoke run of main() with two steps per task."""

import json

import pytest
import torch

from torchmem.experiments.memnet_continual import (
    MODELS,
    RESULTS_JSON,
    RESULTS_MD,
    RESULTS_PNG,
    ShiftedGapRecallTask,
    average_accuracy,
    backward_transfer,
    forgetting,
    forgetting_curves,
    forward_transfer,
    main,
    run_continual_experiment,
    task_shifts,
)
from torchmem.tasks import GapRecallConfig, GapRecallTask
from torchmem.tasks.gap_recall import gaps_of

# R[i][j]: accuracy on task j after training on task i.
MATRIX = [
    [0.9, 0.1, 0.2],
    [0.5, 0.8, 0.3],
    [0.4, 0.6, 0.7],
]


def test_acc_bwt_fwt_forgetting_by_hand():
    assert average_accuracy(MATRIX) == pytest.approx((0.4 + 0.6 + 0.7) / 3)
    assert backward_transfer(MATRIX) == pytest.approx(((0.4 - 0.9) + (0.6 - 0.8)) / 2)
    assert forward_transfer(MATRIX, [0.1, 0.0, 0.1]) == pytest.approx(
        ((0.1 - 0.0) + (0.3 - 0.1)) / 2
    )
    lost = forgetting(MATRIX)
    assert lost[0] == pytest.approx(0.5) and lost[1] == pytest.approx(0.2) and lost[2] is None
    assert forgetting_curves(MATRIX) == [[0.9, 0.5, 0.4], [0.1, 0.8, 0.6], [0.2, 0.3, 0.7]]
    assert forgetting_curves(MATRIX, [0.0, 0.1, 0.2])[1] == [0.1, 0.1, 0.8, 0.6]
    assert average_accuracy([[0.5]]) == 0.5 and backward_transfer([[0.5]]) is None
    with pytest.raises(ValueError, match="K x K"):
        backward_transfer([[0.1, 0.2]])


def test_task_shifts_are_deterministic_distinct_and_deal_out_disjoint_keys():
    shifts = task_shifts(4, 3, seed=5, facts=2)
    assert shifts == task_shifts(4, 3, seed=5, facts=2)
    assert {k: shifts[0][k] for k in ("permutation", "mask")} == {
        "permutation": [0, 1, 2], "mask": [0, 0, 0]
    }  # fmt: skip
    answers = {json.dumps([s["permutation"], s["mask"]]) for s in shifts}
    assert len(answers) == 4
    for s in shifts:
        assert sorted(s["permutation"]) == [0, 1, 2] and set(s["mask"]) <= {0, 1}
        assert len(s["keys"]) == 2 and s["keys"] == sorted(s["keys"])
    dealt = [k for s in shifts for k in s["keys"]]
    assert sorted(dealt) == list(range(8))  # disjoint, and together every key
    assert task_shifts(4, 3, seed=6, facts=2) != shifts
    with pytest.raises(ValueError, match="impossible"):
        task_shifts(3, 1, seed=0)  # 1 bit: only identity and flip
    with pytest.raises(ValueError, match="distinct keys each"):
        task_shifts(3, 3, seed=0, facts=3)  # 8 keys cannot give 3 tasks 3 each
    with pytest.raises(ValueError, match="bits must be in"):
        task_shifts(2, 17, seed=0)


def test_shifted_task_draws_its_own_keys_and_transforms_answers():
    config = GapRecallConfig(bits=3, facts=2, max_gap=6)
    shifts = task_shifts(3, 3, seed=0, facts=2)
    tasks = [ShiftedGapRecallTask(config, **s) for s in shifts]
    powers = torch.tensor([1, 2, 4])

    def draw(task):
        return task.sample_with_gaps(64, torch.Generator().manual_seed(11))

    for task, shift in zip(tasks, shifts):
        batch, gaps = draw(task)
        again, _ = draw(task)
        assert torch.equal(batch.inputs, again.inputs)  # deterministic
        assert torch.equal(batch.targets, again.targets)
        assert torch.equal(gaps_of(batch, 3), gaps)
        assert batch.inputs.shape[-1] == task.input_size == 2 * 3 + 2
        # Fact keys and the query key come from the task's slice.
        facts = batch.inputs[..., 6] > 0.5
        fact_codes = (batch.inputs[..., :3][facts].long() * powers).sum(-1)
        assert set(fact_codes.tolist()) <= set(shift["keys"])
        step = batch.mask[0].argmax()
        query = (batch.inputs[:, step - 1, :3].long() * powers).sum(-1)
        assert set(query.tolist()) <= set(shift["keys"])
        # The answer: the queried fact's value, transformed.
        rows = torch.arange(64)
        fact_step = step - 1 - gaps
        value = batch.inputs[rows, fact_step, 3:6]
        expected = (value[:, shift["permutation"]] - torch.tensor(shift["mask"]).float()).abs()
        assert torch.equal(batch.targets[:, step], expected)
        assert torch.equal(task.sample(64, torch.Generator().manual_seed(11)).targets,
                           batch.targets)  # fmt: skip
    # Without keys or transformation it is the plain task, draw for draw.
    plain, _ = GapRecallTask(config).sample_with_gaps(8, torch.Generator().manual_seed(2))
    same, _ = ShiftedGapRecallTask(config).sample_with_gaps(8, torch.Generator().manual_seed(2))
    assert torch.equal(plain.inputs, same.inputs) and torch.equal(plain.targets, same.targets)
    with pytest.raises(ValueError, match="permutation"):
        ShiftedGapRecallTask(config, permutation=[0, 0, 1])
    with pytest.raises(ValueError, match="mask"):
        ShiftedGapRecallTask(config, mask=[0, 2, 1])
    with pytest.raises(ValueError, match="distinct codes"):
        ShiftedGapRecallTask(config, keys=[1, 1, 2])
    with pytest.raises(ValueError, match="at least 2 keys"):
        ShiftedGapRecallTask(config, keys=[8 - 1])


def test_run_with_tiny_models(tmp_path):
    tiny = {
        "memnet": {"hidden_size": 8, "controller_heads": 2, "memory_slots": 6},
        "lstm": {"hidden_size": 8},
        "segment-transformer": {"hidden_size": 8, "num_heads": 2, "ff_size": 8},
    }
    result = run_continual_experiment(
        tmp_path, models=list(tiny), tasks=3, steps_per_task=2, bits=3, facts=2, max_gap=6,
        segment_length=4, batch_size=2, eval_batches=1, eval_batch_size=8,
        model_options=tiny, quiet=True, plots=False,
    )  # fmt: skip
    assert [r["model"] for r in result["results"]] == list(tiny)
    for r in result["results"]:
        assert len(r["matrix"]) == 3 and all(len(row) == 3 for row in r["matrix"])
        assert all(0.0 <= a <= 1.0 for row in r["matrix"] for a in row)
        assert r["acc"] == pytest.approx(average_accuracy(r["matrix"]))
        assert r["bwt"] == pytest.approx(backward_transfer(r["matrix"]))
        assert len(r["curves"]) == 3 and len(r["curves"][0]) == 4
    with pytest.raises(ValueError, match="valid: memnet"):
        run_continual_experiment(tmp_path, models=["nope"], quiet=True)
    with pytest.raises(ValueError, match="not compared"):
        run_continual_experiment(tmp_path, models=["lstm"], model_options=tiny, quiet=True)


def test_main_smoke(tmp_path):
    out = tmp_path / "continual"
    code = main(
        ["--out", str(out), "--steps-per-task", "2", "--tasks", "2", "--models", ",".join(MODELS),
         "--seed", "3", "--bits", "3", "--max-gap", "6", "--segment-length", "4",
         "--batch-size", "2", "--eval-batches", "1", "--eval-batch-size", "8", "--quiet",
         "--joint"]
    )  # fmt: skip
    assert code == 0
    saved = json.loads((out / RESULTS_JSON).read_text())
    assert saved["settings"]["tasks"] == 2 and saved["settings"]["seed"] == 3
    assert [r["model"] for r in saved["results"]] == ["memnet", "segment-transformer", "lstm"]
    assert len(saved["shifts"]) == 2
    for r in saved["results"]:
        assert len(r["matrix"]) == 2 and r["bwt"] is not None
        assert len(r["joint"]) == 2 and r["joint_acc"] == pytest.approx(sum(r["joint"]) / 2)
    table = (out / RESULTS_MD).read_text()
    assert "| memnet |" in table and "BWT" in table and "| all, jointly |" in table
    pytest.importorskip("matplotlib")
    assert (out / RESULTS_PNG).stat().st_size > 0
