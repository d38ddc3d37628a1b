"""The ``torchmem`` command, driven through ``main([...])``."""

from __future__ import annotations

import json
import sys
import types

import pytest

from torchmem.cli import main
from torchmem.experiments import format_table, split_compare_overrides

TINY = [
    "--set", "hidden_size=16",
    "--set", "memory_slots=8",
    "--set", "memory_width=4",
    "--set", "task.max_length=3",
    "--set", "bits=4",
    "--set", "batch_size=4",
    "--set", "eval_batches=1",
    "--set", "eval_batch_size=4",
    "--set", "eval_every=2",
]  # fmt: skip

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "command, options",
    [
        ("train", ["--model", "--task", "--set", "--out", "--steps", "--seed", "--batch-size",
                   "--lr", "--resume", "--quiet"]),
        ("eval", ["--length", "--batches", "--batch-size", "--seed", "--best"]),
        ("plot", ["--out"]),
        ("list", []),
        ("compare", ["--models", "--task", "--steps", "--eval-length", "--out", "--seed", "--set"]),
    ],
)  # fmt: skip
def test_subcommand_help(command, options, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: torchmem {command}" in out
    for option in options:
        assert option in out, option


def test_top_level_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("train", "eval", "plot", "list", "compare", "bench"):
        assert command in out
    assert main([]) == 2  # a command is required
    assert "required" in capsys.readouterr().err


def test_list_shows_models_tasks_and_options(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "ntm",
        "dnc",
        "lstm",
        "copy",
        "repeat_copy",
        "associative_recall",
        "priority_sort",
        "sorting",
        "memoria-transformer",
        "segment-transformer",
        "transformer-xl",
    ):
        assert f"\n  {name} " in out, name
    assert "memory_slots=128" in out and "max_length=20" in out and "batch_size=16" in out
    assert "input_size" not in out  # decided by the task, not settable


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["train", "--model", "transformer"],
            "valid models: attention, dnc, fast-weights, hierarchical, hopfield, lstm, mann",
        ),
        (
            ["train", "--task", "sort"],
            "valid tasks: associative_recall, copy, gap_recall, one_shot, priority_sort, "
            "repeat_copy, sorting",
        ),
        (["train", "--model", "dnc", "--set", "slots=3"], "memory_slots"),
        (["train", "--set", "model.max_length=3"], "unknown model option 'max_length'"),
        (["train", "--set", "noequals"], "expected key=value"),
        (["eval", "no/such/run"], "no run folder at no/such/run"),
        (
            ["compare", "--models", "ntm,gru"],
            "valid models: attention, dnc, fast-weights, hierarchical, hopfield, lstm, mann",
        ),
        (["compare", "--set", "gru.hidden_size=3"], "unknown prefix 'gru'"),
    ],
)
def test_errors_exit_2_with_the_valid_names(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("torchmem: error: ")
    assert expected in err
    assert "Traceback" not in err


def test_unknown_set_key_lists_model_task_and_train_options(capsys):
    assert main(["train", "--model", "lstm", "--set", "colour=blue"]) == 2
    err = capsys.readouterr().err
    assert "unknown option 'colour'" in err
    for option in ("hidden_size", "num_layers", "max_length", "bits", "batch_size", "lr"):
        assert option in err


def test_corrupt_checkpoint_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "checkpoint.pt").write_bytes(b"junk")
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a valid torchmem checkpoint" in capsys.readouterr().err


def test_train_eval_plot_resume_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    argv = [
        "train",
        "--model",
        "ntm",
        "--task",
        "copy",
        *TINY,
        "--steps",
        "3",
        "--out",
        str(run),
        "--quiet",
    ]
    assert main(argv) == 0
    assert (run / "checkpoint.pt").exists() and (run / "config.json").exists()
    capsys.readouterr()

    assert main(["eval", str(run), "--length", "5", "--batches", "1", "--batch-size", "4"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["length"] == 5 and result["step"] == 3
    assert result["model"] == "ntm" and result["task"] == "copy"
    assert 0 <= result["bit_errors_per_sequence"] <= 5 * 4
    assert {"loss", "sequence_accuracy"} <= set(result)
    assert result["checkpoint"] == "latest"

    assert main(["eval", str(run), "--best", "--batches", "1", "--batch-size", "4"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["checkpoint"] == "best" and 1 <= best["step"] <= 3

    plots = tmp_path / "plots"
    assert main(["plot", str(run), "--out", str(plots)]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(p.rsplit("/", 1)[-1] for p in printed) == [
        "learning_curve.png",
        "memory_access.png",
    ]
    for path in printed:
        assert (plots / path.rsplit("/", 1)[-1]).read_bytes().startswith(PNG_MAGIC)

    # Same folder without --resume is refused; with --resume it continues from the saved config.
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--out", str(run), "--steps", "5", "--resume", "--quiet"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 3, 4, 5]
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["steps"] == 5 and saved["model"]["config"]["memory_slots"] == 8


def test_train_default_out_dir_and_messages(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--model", "lstm", "--set", "hidden_size=8", "--set", "max_length=2"]
    assert main([*argv, "--set", "eval_batch_size=2", "--steps", "1", "--seed", "7"]) == 0
    assert (tmp_path / "runs" / "lstm-copy-s7" / "metrics.jsonl").exists()
    captured = capsys.readouterr()
    assert "training: lstm" in captured.out and "held-out bit errors/sequence" in captured.out
    assert "lstm/copy" in captured.err  # the progress bar


def test_compare_writes_a_row_per_model(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = [
        "compare", "--models", "ntm,dnc,lstm", "--steps", "2", "--eval-length", "5",
        "--out", str(out), "--set", "model.hidden_size=8", "--set", "memory_slots=8",
        "--set", "memory_width=4", "--set", "max_length=3", "--set", "bits=4",
        "--set", "batch_size=4", "--set", "eval_batches=1", "--set", "eval_batch_size=4",
        "--quiet",
    ]  # fmt: skip
    assert main(argv) == 0
    table = (out / "comparison.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "model" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["ntm", "dnc", "lstm"]
    assert "length 5" in table
    summary = json.loads((out / "comparison.json").read_text())
    assert [r["model"] for r in summary["results"]] == ["ntm", "dnc", "lstm"]
    for result in summary["results"]:
        assert result["steps"] == 2 and result["parameters"] > 0 and result["cpu_seconds"] > 0
        assert 0 <= result["bit_errors_per_sequence_at_length"] <= 5 * 4
    assert summary["train_config"]["lstm"]["model_options"] == {"hidden_size": 8}
    assert summary["train_config"]["ntm"]["model_options"]["memory_slots"] == 8
    assert (out / "comparison.png").read_bytes().startswith(PNG_MAGIC)
    assert (out / "ntm" / "memory_access.png").exists()
    assert not (out / "lstm" / "memory_access.png").exists()  # no trace to draw


def test_split_compare_overrides():
    per_model, task_opts, train_opts = split_compare_overrides(
        ["ntm", "lstm"],
        "copy",
        {"hidden_size": "8", "ntm.memory_slots": "16", "bits": "3", "lr": "0.1"},
    )
    assert per_model == {"ntm": {"hidden_size": 8, "memory_slots": 16}, "lstm": {"hidden_size": 8}}
    assert task_opts == {"bits": 3} and train_opts == {"lr": 0.1}
    with pytest.raises(ValueError, match="unknown option 'num_layers' for model ntm"):
        split_compare_overrides(["ntm", "lstm"], "copy", {"ntm.num_layers": "2"})
    with pytest.raises(ValueError, match="unknown option 'colour'.*lstm: hidden_size, num_layers"):
        split_compare_overrides(["ntm", "lstm"], "copy", {"colour": "red"})


def test_format_table():
    results = [
        {"model": "ntm", "parameters": 12345, "steps": 10, "cpu_seconds": 1.3,
         "bit_errors_per_sequence": 0.5, "sequence_accuracy": 0.75, "eval_length": None},
        {"model": "lstm", "parameters": 99, "steps": 10, "cpu_seconds": 0.5,
         "bit_errors_per_sequence": 2.0, "sequence_accuracy": 0.0, "eval_length": None},
    ]  # fmt: skip
    lines = format_table(results).splitlines()
    assert len(lines) == 4 and "length" not in lines[0]
    assert [cell.strip() for cell in lines[2].split("|")[1:-1]] == [
        "ntm", "12,345", "10", "1.3", "0.500", "0.750"
    ]  # fmt: skip
    assert len({len(line) for line in lines}) == 1  # columns are aligned
    longer = [{**r, "eval_length": 40, "bit_errors_per_sequence_at_length": 3.0} for r in results]
    header = format_table(longer).splitlines()[0]
    assert "bit errors/seq (length 40)" in header


def test_bench_passes_its_arguments_through(monkeypatch, capsys):
    seen = []
    fake = types.ModuleType("torchmem.bench.dnc_bench")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "torchmem.bench.dnc_bench", fake)
    assert main(["bench", "--steps", "3", "--help"]) == 0
    assert seen == [["--steps", "3", "--help"]]

    def fail(argv):
        raise SystemExit(2)

    fake.main = fail
    assert main(["bench", "--bogus"]) == 2
