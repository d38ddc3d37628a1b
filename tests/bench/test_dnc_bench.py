"""The benchmark's worker measures a real training step, and its report reads right."""

import pytest

from torchmem.bench import dnc_bench


def test_worker_measures_a_training_step():
    result = dnc_bench.worker("torchmem-dnc", slots=8, batch=2, steps=1)
    assert result["impl"] == "torchmem-dnc" and result["slots"] == 8
    assert result["cpu_s_per_step"] > 0
    with pytest.raises(ValueError, match="unknown implementation"):
        dnc_bench.worker("nope", slots=8, batch=2, steps=1)


def test_report_table():
    report = {
        "dnc": [{"slots": 32, "torchmem_ms": 50.0, "pytorch_dnc_ms": 200.0, "torchmem_speedup": 4.0,
                 "torchmem_peak_mib": 10.0, "pytorch_dnc_peak_mib": 30.0,
                 "torchmem_memory_ratio": 3.0}],
        "ntm": [{"batch": 1, "cpu_s_per_step": 0.05}],
        "torch": "x", "date": "2026-01-01", "machine": "m", "malloc": "tuned",
    }  # fmt: skip
    text = dnc_bench.format_report(report)
    assert "| 32 | 200.0 | 50.0 | 4.0x | 30 | 10 | 3.0x |" in text
    assert "batch 1: 50.0 ms" in text


def test_cli_options_parse(monkeypatch):
    pytest.importorskip("dnc")  # main() checks for the benchmark-only extra first
    seen = {}
    monkeypatch.setattr(dnc_bench, "run", lambda *a, **k: seen.setdefault("args", a) and None)
    monkeypatch.setattr(dnc_bench, "format_report", lambda report: "table")
    argv = ["--sizes", "8", "--rounds", "1", "--compiled", "--malloc", "default"]
    assert dnc_bench.main(argv) == 0
    assert seen["args"][:5] == ([8], 1, 4, "default", True)
