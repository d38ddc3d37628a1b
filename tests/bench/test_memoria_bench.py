"""The Memoria benchmark times the real step, checks identical outputs and reports right."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from torchmem.bench import memoria_bench as mb
from torchmem.cli import main as torchmem_main

# A few steps at a size where every path runs: short-term overflow, long-term walks.
TINY = mb.BenchSettings(steps=6, batch_size=2, new_engrams=8, width=16, stm_capacity=8,
                        num_reminded_stm=4, num_final_ltms=4, ltm_search_depth=2)  # fmt: skip


def test_worker_runs_a_few_tiny_steps():
    result = mb.worker("torchmem", TINY)
    assert result["impl"] == "torchmem" and result["settings"] == dataclasses.asdict(TINY)
    for key in ("cpu_ms", "slots", "live", "reminded", "step_digests"):
        assert len(result[key]) == TINY.steps, key
    assert all(t >= 0 for t in result["cpu_ms"]) and sum(result["cpu_ms"]) > 0
    assert result["slots"][0] == TINY.new_engrams  # N when remind runs, new engrams included
    assert all(live <= n for live, n in zip(result["live"], result["slots"]))
    assert result["reminded"][0] == 0 and max(result["reminded"]) > 0
    assert len(result["digest"]) == 64 and len(set(result["step_digests"])) == TINY.steps
    assert result["peak_mib"] >= 0 and result["warmup_cpu_s"] > 0
    json.dumps(result)  # travels from the worker process as JSON
    assert mb.worker("torchmem", TINY)["digest"] == result["digest"]  # deterministic
    other_seed = dataclasses.replace(TINY, seed=1)
    assert mb.worker("torchmem", other_seed)["digest"] != result["digest"]
    with pytest.raises(ValueError, match="unknown implementation"):
        mb.worker("nope", TINY)


def test_lifespan_deltas_follow_the_attention_rule():
    indices = torch.tensor([[3, 5, -1, -1], [-1, -1, -1, -1], [0, 1, 2, 7]])
    deltas = mb.lifespan_deltas(indices, TINY, step=4)
    assert deltas.dtype == torch.float32 and deltas.shape == indices.shape
    assert torch.all(deltas[indices < 0] == 0) and torch.all(deltas[indices >= 0] > 0)
    # attention sums to one over the real entries: each row with any gains R * scale in all
    expected = torch.tensor([4 * 8.0, 0.0, 4 * 8.0])
    torch.testing.assert_close(deltas.sum(dim=1), expected)
    assert torch.equal(deltas, mb.lifespan_deltas(indices, TINY, step=4))
    assert not torch.equal(deltas, mb.lifespan_deltas(indices, TINY, step=5))
    assert torch.equal(mb.step_data(TINY, 2), mb.step_data(TINY, 2))
    assert mb.step_data(TINY, 2).shape == (2, 8, 16)


def test_both_implementations_give_the_same_digest():
    pytest.importorskip("memoria")
    ours, theirs = mb.worker("torchmem", TINY), mb.worker("memoria-pytorch", TINY)
    assert ours["step_digests"] == theirs["step_digests"]
    assert ours["digest"] == theirs["digest"]
    assert ours["slots"] == theirs["slots"] and ours["live"] == theirs["live"]


def test_measure_runs_the_worker_in_a_subprocess():
    result = mb.measure("torchmem", dataclasses.replace(TINY, steps=2), malloc="default")
    assert result["impl"] == "torchmem" and len(result["cpu_ms"]) == 2
    assert result["digest"] == mb.worker("torchmem", dataclasses.replace(TINY, steps=2))["digest"]


def _fake_result(impl: str, cpu_ms: list[float], digest: str = "d" * 64) -> dict:
    steps = len(cpu_ms)
    return {
        "impl": impl,
        "settings": dataclasses.asdict(mb.BenchSettings(steps=steps)),
        "cpu_ms": cpu_ms,
        "slots": [64, 300, 600, 900][:steps],
        "live": [64.0, 290.0, 580.0, 870.5][:steps],
        "reminded": [0, 101, 101, 101][:steps],
        "peak_mib": 100.0 if impl == "torchmem" else 400.0,
        "peak_method": "VmHWM reset at the first step",
        "warmup_cpu_s": 0.5,
        "warmup_mib": 1.0,
        "digest": digest,
        "step_digests": [f"{digest[:15]}{s}" for s in range(steps)],
    }


def _fake_measure(times: dict[str, list[float]], digests: dict[str, str] | None = None):
    calls = []

    def measure(impl, settings, malloc):
        calls.append(impl)
        digest = (digests or {}).get(impl, "d" * 64)
        return _fake_result(impl, times[impl], digest)

    return measure, calls


def test_report_from_fake_runs():
    times = {"torchmem": [1.0, 10.0, 20.0, 40.0], "memoria-pytorch": [2.0, 80.0, 200.0, 400.0]}
    measure, calls = _fake_measure(times)
    report = mb.run(mb.BenchSettings(steps=4), rounds=2, measure=measure, progress=lambda m: None)
    assert calls == ["torchmem", "memoria-pytorch", "memoria-pytorch", "torchmem"]  # alternate
    assert report["ratios"]["mean_speedup"] == pytest.approx(682 / 71)
    assert report["ratios"]["memory_ratio"] == pytest.approx(4.0)
    assert [b["lo"] for b in report["buckets"]] == [0, 256, 512, 768]
    text = mb.format_report(report)
    assert "one thread" in text and text.startswith("Memoria step")
    assert "| CPU ms/step, mean of the 4 steps | 170.5 | 17.8 | 9.6x |" in text
    assert "| CPU ms/step, median step | 140.0 | 15.0 | 9.3x |" in text
    assert "| peak MiB added | 400 | 100 | 4.0x |" in text
    assert "| 256-511 | 1 | 80.0 | 10.0 | 8.0x |" in text
    assert "| 768-1023 | 1 | 400.0 | 40.0 | 10.0x |" in text
    # growth fitted from step 2 on: (600, 900) -> times double for torchmem, exponent log2/log1.5
    exponent = report["implementations"]["torchmem"]["growth_exponent"]
    assert exponent == pytest.approx(1.7095, abs=1e-3)
    assert "N^1.71" in text


def test_run_raises_on_a_digest_mismatch():
    times = {"torchmem": [1.0, 2.0, 3.0], "memoria-pytorch": [2.0, 4.0, 6.0]}
    wrong = "e" * 64
    measure, _ = _fake_measure(times, {"memoria-pytorch": wrong})
    with pytest.raises(mb.OutputMismatchError, match="outputs differ .* from step 0"):
        mb.run(mb.BenchSettings(steps=3), rounds=1, measure=measure, progress=lambda m: None)


def test_write_report(tmp_path):
    times = {"torchmem": [1.0, 10.0, 20.0], "memoria-pytorch": [2.0, 80.0, 200.0]}
    measure, _ = _fake_measure(times)
    report = mb.run(mb.BenchSettings(steps=3), rounds=1, measure=measure, progress=lambda m: None)
    written = mb.write_report(report, tmp_path / "memoria.md")
    assert (tmp_path / "memoria.md").read_text().startswith("Memoria step")
    assert json.loads((tmp_path / "memoria.json").read_text())["digest"] == "d" * 64
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert len(written) == 2
    else:
        assert (tmp_path / "memoria.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_dispatches_bench_memoria(monkeypatch, capsys):
    assert torchmem_main(["bench-memoria", "--help"]) == 0
    assert "usage: torchmem bench-memoria" in capsys.readouterr().out
    assert torchmem_main(["--help"]) == 0
    assert "bench-memoria" in capsys.readouterr().out
    seen = {}
    monkeypatch.setattr(mb, "run", lambda settings, rounds, **kw: seen.update(s=settings, r=rounds))
    monkeypatch.setattr(mb, "format_report", lambda report: "table")
    pytest.importorskip("memoria")  # main() checks for the benchmark-only extra first
    argv = ["bench-memoria", "--rounds", "1", "--steps", "5", "--width", "32"]
    assert torchmem_main(argv) == 0
    assert seen["r"] == 1 and seen["s"].steps == 5 and seen["s"].width == 32
    assert seen["s"].stm_capacity == 64  # the Memoria options are fixed
