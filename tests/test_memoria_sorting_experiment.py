"""The sorting-vs-length experiment: a two-step smoke run in CI, the real curve by hand."""

import json

import pytest

from torchmem.experiments.memoria_sorting import (
    MODELS,
    RESULTS_JSON,
    RESULTS_MD,
    default_lengths,
    main,
    run_sorting_experiment,
)


def test_default_lengths_end_the_answer_on_a_segment_boundary():
    assert default_lengths(32, 8, (1, 2, 4)) == [24, 56, 120]
    with pytest.raises(ValueError, match="must exceed symbols"):
        default_lengths(8, 8, (1,))


def test_smoke_two_steps(tmp_path):
    result = run_sorting_experiment(
        tmp_path,
        lengths=[5, 20],
        steps=2,
        symbols=3,
        segment_length=8,
        batch_size=2,
        eval_batches=1,
        eval_batch_size=2,
        model_options={name: {"hidden_size": 8, "num_heads": 2, "ff_size": 8} for name in MODELS},
        quiet=True,
        plots=False,
    )
    records = result["results"]
    assert {(r["model"], r["length"]) for r in records} == {(m, n) for m in MODELS for n in (5, 20)}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in records)
    assert [r["segments"] for r in records if r["model"] == MODELS[0]] == [1, 3]
    saved = json.loads((tmp_path / RESULTS_JSON).read_text())
    assert saved["settings"]["grad_segments"] == 2 and len(saved["results"]) == 6
    table = (tmp_path / RESULTS_MD).read_text()
    assert "| memoria-transformer |" in table and "L=20" in table
    with pytest.raises(ValueError, match="not compared"):
        run_sorting_experiment(tmp_path, models=["transformer-xl"], model_options={"lstm": {}})


@pytest.mark.slow
def test_memoria_beats_the_plain_transformer_on_long_sequences(tmp_path):
    """The CPU-scale curve (about 10 minutes on one thread): at 8 segments, Memoria should
    beat the segment transformer that cannot see the early symbols."""
    assert main(["--out", str(tmp_path), "--quiet", "--lengths", "24,248"]) == 0
    records = json.loads((tmp_path / RESULTS_JSON).read_text())["results"]
    score = {(r["model"], r["length"]): r["accuracy"] for r in records}
    assert score["memoria-transformer", 248] > score["segment-transformer", 248] + 0.05
