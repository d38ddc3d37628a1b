"""Plots: learning curves, memory access heatmaps, comparisons, and plot_run on run folders."""

from __future__ import annotations

import math
import sys

import pytest
import torch

pytest.importorskip("matplotlib")

from torchmem.tasks import make_task  # noqa: E402
from torchmem.train import TrainConfig, train  # noqa: E402
from torchmem.viz import (  # noqa: E402
    plot_comparison,
    plot_learning_curves,
    plot_run,
    plot_trace,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) in pixels, read from the PNG header."""
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def records(n: int = 20) -> list[dict]:
    out = []
    for i in range(1, n + 1):
        record = {
            "step": 10 * i,
            "loss": 0.7 * math.exp(-i / 4),
            "bit_errors_per_sequence": max(0.0, 30 - 2 * i),
        }
        if i % 5 == 0:
            record.update(
                eval_loss=0.8 * math.exp(-i / 4), eval_bit_errors_per_sequence=max(0.0, 32 - 2 * i)
            )
        out.append(record)
    return out


def test_learning_curves_png(tmp_path):
    path = plot_learning_curves(records(), tmp_path / "sub" / "curve.png", title="synthetic")
    assert path == tmp_path / "sub" / "curve.png"
    width, height = png_size(path)
    assert width > 500 and height > 200
    with pytest.raises(ValueError, match="no metrics records"):
        plot_learning_curves([], tmp_path / "empty.png")


def test_trace_png_with_every_kind_of_entry(tmp_path):
    task = make_task("copy", bits=4, max_length=3)
    batch = task.sample(2, torch.Generator().manual_seed(0), length=3)
    steps = batch.inputs.shape[1]
    generator = torch.Generator().manual_seed(1)
    trace = {
        "read_weights": torch.rand(2, steps, 2, 8, generator=generator).softmax(-1),  # (B, T, R, N)
        "write_weights": torch.rand(2, steps, 8, generator=generator).softmax(-1),  # (B, T, N)
        "usage": torch.rand(2, steps, 8, generator=generator),  # (B, T, N)
        "link": torch.rand(2, steps, 8, 8, generator=generator),  # (B, T, N, N): skipped
        "gate": torch.rand(2, steps, generator=generator),  # (B, T): skipped
    }
    outputs = torch.randn(2, steps, 4, generator=generator)
    one = plot_trace(trace, batch, tmp_path / "trace.png", "trace", outputs=outputs, index=1)
    _, height_all = png_size(one)
    fewer = plot_trace({"usage": trace["usage"]}, batch, tmp_path / "usage.png")
    _, height_usage = png_size(fewer)
    # input, target, output, write, read x2, usage panels against input, target, usage.
    assert height_all > height_usage


def test_plot_run_memory_and_lstm_models(tmp_path):
    common = dict(
        task="copy", steps=2, batch_size=2, eval_every=1, eval_batches=1, eval_batch_size=2,
        task_options={"bits": 3, "max_length": 2},
    )  # fmt: skip
    memory = {"hidden_size": 8, "memory_slots": 6, "memory_width": 3}
    train(TrainConfig(model="dnc", model_options=memory, **common), tmp_path / "dnc", quiet=True)
    train(
        TrainConfig(model="lstm", model_options={"hidden_size": 8}, **common),
        tmp_path / "lstm",
        quiet=True,
    )

    paths = plot_run(tmp_path / "dnc", tmp_path / "plots")
    assert [p.name for p in paths] == ["learning_curve.png", "memory_access.png"]
    for path in paths:
        assert path.parent == tmp_path / "plots" and png_size(path)[0] > 100

    paths = plot_run(tmp_path / "lstm")  # no trace: only the learning curve, in the run folder
    assert [p.name for p in paths] == ["learning_curve.png"]
    assert png_size(tmp_path / "lstm" / "learning_curve.png")[0] > 100

    with pytest.raises(FileNotFoundError, match="no run folder"):
        plot_run(tmp_path / "missing")


def test_comparison_png(tmp_path):
    results = [
        {"model": "ntm", "bit_errors_per_sequence": 0.5, "bit_errors_per_sequence_at_length": 4.0,
         "eval_length": 30, "records": records()},
        {"model": "lstm", "bit_errors_per_sequence": 3.0, "bit_errors_per_sequence_at_length": 20.0,
         "eval_length": 30, "records": records(10)},
    ]  # fmt: skip
    width, _ = png_size(plot_comparison(results, tmp_path / "cmp.png", title="copy"))
    assert width > 500
    with pytest.raises(ValueError, match="no results"):
        plot_comparison([], tmp_path / "none.png")


def test_missing_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"pip install torchmem\[viz\]"):
        plot_learning_curves(records(), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
