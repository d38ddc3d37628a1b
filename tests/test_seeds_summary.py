"""The seeds summary: means and spreads by hand, and the checks that keep runs apart."""

import json
import math

import pytest

from torchmem.experiments.seeds import format_summary, main, mean_sd, summarise


def write_gap_run(folder, seed, accuracies, max_gap=4):
    folder.mkdir(parents=True)
    results = [
        {"variant": name, "accuracy": acc, "bit_accuracy": acc / 2 + 0.5,
         "by_gap": [{"gap_low": 1, "gap_high": 2, "accuracy": acc},
                    {"gap_low": 3, "gap_high": 4, "accuracy": acc / 2}]}
        for name, acc in accuracies.items()
    ]  # fmt: skip
    settings = {"steps": 10, "task": {"max_gap": max_gap}, "seed": seed, "eval_seed": seed + 1}
    (folder / "results.json").write_text(json.dumps({"settings": settings, "results": results}))


def test_mean_sd_by_hand():
    assert mean_sd([2.0]) == (2.0, 0.0)
    mean, sd = mean_sd([1.0, 2.0, 3.0])
    assert mean == 2.0 and sd == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mean_sd([])


def test_gap_runs_summarised(tmp_path):
    write_gap_run(tmp_path / "a", 0, {"memnet": 0.2, "lstm": 0.1})
    write_gap_run(tmp_path / "b", 1, {"memnet": 0.4, "lstm": 0.1})
    summary = summarise([tmp_path / "a", tmp_path / "b"])
    assert summary["seeds"] == [0, 1] and summary["key"] == "variant"
    memnet = summary["rows"][0]
    assert memnet["variant"] == "memnet"
    assert memnet["accuracy"]["values"] == [0.2, 0.4]
    assert memnet["accuracy"]["mean"] == pytest.approx(0.3)
    assert memnet["accuracy"]["sd"] == pytest.approx(math.sqrt(0.02))
    assert memnet["by_gap"][1][:3] == [3, 4, pytest.approx(0.15)]
    text = format_summary(summary)
    assert "| memnet | 0.300 ± 0.141 | 0.200, 0.400 |" in text and "gap 3-4" in text


def test_continual_runs_and_missing_joint(tmp_path):
    for seed, acc in ((0, 0.5), (1, 0.7)):
        folder = tmp_path / f"s{seed}"
        folder.mkdir()
        record = {"model": "lstm", "matrix": [[acc]], "acc": acc, "bwt": None, "fwt": None}
        data = {"settings": {"tasks": 1, "seed": seed}, "results": [record]}
        (folder / "results.json").write_text(json.dumps(data))
    summary = summarise([tmp_path / "s0", tmp_path / "s1"])
    row = summary["rows"][0]
    assert row["acc"]["mean"] == pytest.approx(0.6)
    assert "bwt" not in row and "joint_acc" not in row  # absent or None: not summarised
    assert "| lstm | 0.600 ± 0.141 | 0.500, 0.700 |" in format_summary(summary)


def test_runs_that_cannot_be_mixed(tmp_path):
    write_gap_run(tmp_path / "a", 0, {"memnet": 0.2})
    write_gap_run(tmp_path / "b", 0, {"memnet": 0.3})
    write_gap_run(tmp_path / "c", 1, {"memnet": 0.3}, max_gap=6)
    write_gap_run(tmp_path / "d", 2, {"lstm": 0.3})
    with pytest.raises(ValueError, match="repeat a seed"):
        summarise([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match=r"other settings .*\(task\)"):
        summarise([tmp_path / "a", tmp_path / "c"])
    with pytest.raises(ValueError, match="no result for variant 'memnet'"):
        summarise([tmp_path / "a", tmp_path / "d"])
    with pytest.raises(FileNotFoundError, match="results.json not found"):
        summarise([tmp_path / "nowhere"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        summarise([tmp_path / "bad"])


def test_main_writes_markdown_and_json(tmp_path, capsys):
    write_gap_run(tmp_path / "a", 0, {"memnet": 0.2})
    write_gap_run(tmp_path / "b", 1, {"memnet": 0.4})
    out = tmp_path / "docs" / "seeds.md"
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    assert "0.300 ± 0.141" in capsys.readouterr().out
    assert out.read_text().startswith("2 seeds (0, 1)")
    assert json.loads(out.with_suffix(".json").read_text())["seeds"] == [0, 1]
