"""MemNet experiment 3 (forgetting dynamics): statistics by hand and a smoke run."""

import importlib.util
import json

import pytest
import torch

from torchmem.experiments.memnet_dynamics import (
    HEATMAPS_PNG,
    RESULTS_JSON,
    RESULTS_MD,
    RUN_DIR,
    SURVIVAL_PNG,
    TRAINING_PNG,
    content_lifetimes,
    dynamics_stats,
    main,
    median_lifetime,
    overwrite_weights,
    run_dynamics_experiment,
    slot_lifetimes,
    soft_survival_curve,
    survival_curve,
)
from torchmem.train import load_run, saved_train_config, train


def _hand_made_writes() -> torch.Tensor:
    """One example, T = 8, N = 2, one write head: slot 0 overwritten at t = 0, 2, 7 (and a
    partial 0.4 write at t = 4, below the threshold); slot 1 at t = 1."""
    writes = torch.zeros(1, 8, 2)
    writes[0, [0, 2, 7], 0] = 1.0
    writes[0, 4, 0] = 0.4
    writes[0, 1, 1] = 1.0
    return writes


def test_overwrite_weights_combine_heads():
    writes = torch.tensor([0.5, 0.5]).view(1, 1, 2, 1)  # (B, T, V, N)
    assert overwrite_weights(writes).item() == pytest.approx(0.75)
    single = torch.rand(2, 3, 4)
    assert torch.allclose(overwrite_weights(single), single)


def test_lifetimes_by_hand():
    events = overwrite_weights(_hand_made_writes()) > 0.5
    ended, censored = content_lifetimes(events)
    # slot 0: contents of t=0 (ended at 2: 2 steps), t=2 (ended at 7: 5), t=7 (seen 0 steps);
    # slot 1: content of t=1, seen intact to t=7 (6 steps).
    assert sorted(ended) == [2, 5]
    assert sorted(censored) == [0, 6]
    assert slot_lifetimes(events) == [3.5, None]


def test_survival_curve_by_hand():
    # Kaplan-Meier on ended [2, 5], censored [0, 6]:
    # d=1: 3 at risk, none end -> 1; d=2: 3 at risk, 1 ends -> 2/3; d=3, 4: 2 at risk -> 2/3;
    # d=5: 2 at risk, 1 ends -> 1/3; d=6: 1 at risk -> 1/3; d=7: none at risk -> None.
    curve = survival_curve([2, 5], [0, 6], 7)
    expected = [1.0, 1.0, 2 / 3, 2 / 3, 2 / 3, 1 / 3, 1 / 3, None]
    assert curve[-1] is None
    assert curve[:-1] == pytest.approx(expected[:-1])
    assert median_lifetime(curve) == 5
    # Without censoring S(d) is the plain fraction of lifetimes above d.
    assert survival_curve([1, 2, 2, 4], [], 4) == pytest.approx([1.0, 0.75, 0.25, 0.25, 0.0])
    assert median_lifetime([1.0, 0.9, None]) is None
    assert survival_curve([], [], 2) == [1.0, None, None]


def test_soft_survival_by_hand():
    # One slot, o = [1, 0.5, 0, 0.5]. d=1: writes at t=0..2 keep 1*0.5 + 0.5*1 + 0 of 1.5;
    # d=2: t=0..1 keep 1*0.5*1 + 0.5*1*0.5 of 1.5; d=3: t=0 keeps 1*0.5*1*0.5 of 1.
    overwrite = torch.tensor([1.0, 0.5, 0.0, 0.5]).view(1, 4, 1)
    assert soft_survival_curve(overwrite) == pytest.approx([1.0, 2 / 3, 0.5, 0.25])
    assert soft_survival_curve(torch.zeros(2, 3, 4)) == [None, None, None]


def test_dynamics_stats_by_hand():
    writes = _hand_made_writes()
    n = writes.shape[-1]
    uniform_reads = torch.full((1, 8, 2, n), 1.0 / n)
    stats = dynamics_stats({"write_weights": writes, "read_weights": uniform_reads})
    assert stats["write_frequency"] == pytest.approx([3.4 / 8, 1 / 8])
    assert stats["write_frequency_max"] == pytest.approx(3.4 / 8)
    assert stats["events_per_example"] == 4 and stats["slots_overwritten"] == 2
    assert stats["contents_ended"] == 2 and stats["contents_censored"] == 2
    assert stats["lifetime_mean"] == pytest.approx(3.5)
    assert stats["median_lifetime"] == 5
    assert stats["soft_survival"] == pytest.approx(soft_survival_curve(writes))
    assert stats["soft_survival"][0] == pytest.approx(1.0)
    assert stats["read_entropy"] == pytest.approx(1.0)
    share = torch.tensor([3.4, 1.0]) / 4.4
    assert stats["write_concentration"] == pytest.approx(
        float(-(share * share.log()).sum() / torch.log(torch.tensor(2.0)))
    )
    one_hot = torch.zeros(1, 8, 1, n)
    one_hot[..., 0] = 1.0
    assert dynamics_stats({"write_weights": writes, "read_weights": one_hot})[
        "read_entropy"
    ] == pytest.approx(0.0, abs=1e-6)
    # Writes of at most 0.5 are no overwrite events (the threshold is strict).
    quiet = dynamics_stats({"write_weights": writes * 0.5, "read_weights": one_hot})
    assert quiet["events_per_example"] == 0 and quiet["lifetime_mean"] is None


def test_smoke_two_steps(tmp_path):
    args = [
        "--out", str(tmp_path), "--steps", "2", "--every", "1", "--bits", "3",
        "--max-gap", "6", "--batch-size", "2", "--probe-size", "8", "--slots", "6",
        "--hidden-size", "8", "--quiet",
    ]  # fmt: skip
    assert main(args) == 0
    saved = json.loads((tmp_path / RESULTS_JSON).read_text())
    assert [c["step"] for c in saved["checkpoints"]] == [0, 1, 2]
    t_len, slots = 6 + 2, 6
    for record in saved["checkpoints"]:
        assert 0.0 <= record["accuracy"] <= 1.0
        assert 0.0 <= record["read_entropy"] <= 1.0
        assert len(record["write_frequency"]) == slots
        assert len(record["survival"]) == t_len and record["survival"][0] == 1.0
        assert len(record["soft_survival"]) == t_len
        assert "slots_written" in record["memory"]
    for key in ("first", "last"):
        for kind in ("reads", "writes"):
            matrix = torch.tensor(saved["heatmaps"][key][kind])
            assert matrix.shape == (t_len, slots)
    assert saved["heatmaps"]["last"]["step"] == 2
    assert "| 2 |" in (tmp_path / RESULTS_MD).read_text()
    if importlib.util.find_spec("matplotlib") is not None:
        for name in (SURVIVAL_PNG, HEATMAPS_PNG, TRAINING_PNG):
            assert (tmp_path / name).stat().st_size > 0

    # Training in resumed chunks gives the weights of one uninterrupted run.
    config = saved_train_config(tmp_path / RUN_DIR)
    train(config, tmp_path / "whole", quiet=True)
    chunked, _, _, _ = load_run(tmp_path / RUN_DIR)
    whole, _, _, _ = load_run(tmp_path / "whole")
    for (name, a), (_, b) in zip(chunked.state_dict().items(), whole.state_dict().items()):
        assert torch.equal(a, b), name

    with pytest.raises(ValueError, match="already holds a run"):
        run_dynamics_experiment(tmp_path, steps=1, quiet=True, plots=False)
    with pytest.raises(ValueError, match="threshold"):
        run_dynamics_experiment(tmp_path, threshold=1.5)
