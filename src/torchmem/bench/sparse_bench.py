"""Scaling benchmark: SAM and sparse DNC training steps from 1e3 to 1e6 slots, beside the DNC.

The configuration of the DNC benchmark (:mod:`torchmem.bench.dnc_bench`: LSTM controller 64,
W = 16, R = 1, batch 16, 41-step copy episodes; SAM reads K = 4 words): every measurement is
one full training step (forward, loss, backward, Adam update) in a fresh subprocess pinned
to one thread, so its CPU time and its peak resident memory are its own. The dense DNC runs
only at the sizes given by ``--dense-sizes`` (its N x N link makes 1e4 slots need gigabytes
per step). pytorch-dnc's SAM is tried as well and its failure, if it fails, is reported.

    python -m torchmem.bench.sparse_bench --out docs/bench/sparse-scaling.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from .dnc_bench import BATCH, HIDDEN, LENGTH, READS, WIDTH, _machine, measure

#: The sparse models measured at every size: worker name -> name in the report.
SPARSE = {"torchmem-sam": "SAM", "torchmem-sparse-dnc": "sparse DNC"}


def _median_of(impl: str, slots: int, rounds: int, steps: int, progress) -> dict:
    runs = []
    for r in range(rounds):
        result = measure(impl, slots, BATCH, steps)
        ms, mib = result["cpu_s_per_step"] * 1e3, result["peak_mib"]
        progress(f"round {r + 1}/{rounds} {impl} N={slots}: {ms:.1f} ms/step, peak +{mib:.0f} MiB")
        runs.append(result)
    return {
        "impl": impl,
        "slots": slots,
        "cpu_ms_per_step": statistics.median(x["cpu_s_per_step"] for x in runs) * 1e3,
        "peak_mib": statistics.median(x["peak_mib"] for x in runs),
    }


def public_sam_status() -> str:
    """'runs' or why pytorch-dnc's SAM cannot run here (one CPU step at N = 1000)."""
    try:
        measure("pytorch-dnc-sam", 1000, BATCH, 1)
    except RuntimeError as error:
        last = [line for line in str(error).splitlines() if line.strip()][-1]
        return f"fails: {last.strip()}"
    return "runs"


def run(sizes, dense_sizes, rounds: int, steps: int, progress=print) -> dict:
    rows = [_median_of(impl, n, rounds, steps, progress) for impl in SPARSE for n in sizes]
    rows += [_median_of("torchmem-dnc", n, rounds, steps, progress) for n in dense_sizes]
    return {
        "rows": rows,
        "public_sam": public_sam_status(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "machine": _machine(),
    }


def format_report(report: dict) -> str:
    lines = [
        f"Training step (forward + backward + Adam), batch {BATCH}, LSTM controller {HIDDEN}, "
        f"W={WIDTH}, R={READS}, K=4, K_L=8, {2 * LENGTH + 1}-step copy episodes, one thread; "
        f"{report['date']}, {report['machine']}, torch {report['torch']}. CPU ms per step and "
        "peak resident memory added, medians of the rounds.",
        "",
        "| model | N slots | CPU ms / step | peak MiB |",
        "|---|---|---|---|",
    ]
    for row in report["rows"]:
        name = {**SPARSE, "torchmem-dnc": "DNC (dense)"}[row["impl"]]
        lines.append(
            f"| {name} | {row['slots']:,} | {row['cpu_ms_per_step']:.1f} | {row['peak_mib']:.0f} |"
        )
    lines += ["", f"pytorch-dnc 1.1.0 SAM on this machine: {report['public_sam']}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchmem.bench.sparse_bench",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--dense-sizes", type=int, nargs="*", default=[1000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per measurement")
    parser.add_argument("--out", type=Path, default=None, help="write markdown (+ .json) here")
    args = parser.parse_args(argv)
    report = run(args.sizes, args.dense_sizes, args.rounds, args.steps,
                 progress=lambda m: print(m, file=sys.stderr))  # fmt: skip
    text = format_report(report)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
