"""Training-step benchmark: torchmem's DNC and NTM against pytorch-dnc (PyPI ``dnc==1.1.0``).

Each measurement runs in a fresh subprocess pinned to one thread, so its CPU time and its
peak resident memory belong to that implementation alone; implementations alternate within
each round, and the ratios of the per-round medians are what we report.

    python -m torchmem.bench.dnc_bench --sizes 32 128 256 1024 --out bench.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

# The configuration of the issue: LSTM controller 64, W=16, R=1, batch 16, copy episodes of
# length 20 (41 time steps with the delimiter and the recall phase).
HIDDEN, WIDTH, READS, BATCH, LENGTH = 64, 16, 1, 16, 20

# glibc hands blocks above its mmap threshold straight back to the kernel on free, so a model
# that makes a fresh N x N tensor every time step pays a page fault per 4 KiB, every step.
# "tuned" raises the threshold (both implementations get the same setting); "default" leaves
# glibc alone.
MALLOC = {
    "default": None,
    "tuned": "glibc.malloc.trim_threshold=4294967296:glibc.malloc.mmap_threshold=33554432",
}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _make_step(impl: str, slots: int, batch: int):
    """A closure doing one full training step (forward, loss, backward, Adam update)."""
    from torchmem.tasks import make_task

    task = make_task("copy", min_length=LENGTH, max_length=LENGTH)
    data = task.sample(batch, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    if impl in ("torchmem-dnc", "torchmem-dnc-compiled"):
        from torchmem import DNC

        model = DNC(
            task.input_size,
            task.output_size,
            hidden_size=HIDDEN,
            memory_slots=slots,
            memory_width=WIDTH,
            read_heads=READS,
            compile=impl == "torchmem-dnc-compiled",
        )

        def forward():
            return model(data.inputs)[0]
    elif impl == "pytorch-dnc":
        import dnc  # the public implementation, installed with torchmem[bench]

        model = dnc.DNC(
            task.input_size,
            HIDDEN,
            rnn_type="lstm",
            num_hidden_layers=1,
            nr_cells=slots,
            cell_size=WIDTH,
            read_heads=READS,
            batch_first=True,
        )

        def forward():
            # pytorch-dnc's read-out is as wide as its input: score the bit channels only.
            outputs = model(data.inputs, (None, None, None), reset_experience=True)[0]
            return outputs[..., : task.output_size]

    elif impl in ("torchmem-sam", "torchmem-sparse-dnc"):
        from torchmem import SAM, SparseDNC

        model_class = SAM if impl == "torchmem-sam" else SparseDNC
        model = model_class(task.input_size, task.output_size, hidden_size=HIDDEN,
                            memory_slots=slots, memory_width=WIDTH, read_heads=READS)  # fmt: skip
        forward = lambda: model(data.inputs)[0]  # noqa: E731
    elif impl == "pytorch-dnc-sam":
        import dnc

        # Needs FAISS with GPU resources or a compiled FLANN library: see sparse_bench.
        model = dnc.SAM(task.input_size, HIDDEN, rnn_type="lstm", num_hidden_layers=1,
                        nr_cells=slots, cell_size=WIDTH, read_heads=READS, sparse_reads=4,
                        batch_first=True)  # fmt: skip

        def forward():
            outputs = model(data.inputs, (None, None, None), reset_experience=True)[0]
            return outputs[..., : task.output_size]

    elif impl == "torchmem-ntm":
        from torchmem import NTM

        # The NTM paper's copy configuration: LSTM controller 100, N=128, M=20, 1+1 heads.
        model = NTM(task.input_size, task.output_size, hidden_size=100, memory_slots=slots,
                    memory_width=20, read_heads=1, write_heads=1)  # fmt: skip
        forward = lambda: model(data.inputs)[0]  # noqa: E731
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        loss = task.loss(forward(), data)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return step


def worker(impl: str, slots: int, batch: int, steps: int) -> dict:
    torch.set_num_threads(1)
    step = _make_step(impl, slots, batch)
    baseline = _rss_bytes()
    first = time.perf_counter()
    step()  # warm-up: allocator pools, lazy init, the C++ link kernel's load, torch.compile
    first = time.perf_counter() - first
    times = []
    for _ in range(steps):
        start = time.process_time()
        step()
        times.append(time.process_time() - start)
    return {
        "impl": impl,
        "slots": slots,
        "batch": batch,
        "cpu_s_per_step": statistics.median(times),
        "peak_mib": (_peak_rss_bytes() - baseline) / 2**20,
        "first_step_s": first,
    }


def measure(impl: str, slots: int, batch: int, steps: int, malloc: str = "tuned") -> dict:
    cmd = [sys.executable, "-m", "torchmem.bench.dnc_bench", "--worker", impl,
           str(slots), str(batch), str(steps)]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("GLIBC_TUNABLES", None)
    if MALLOC[malloc]:
        env["GLIBC_TUNABLES"] = MALLOC[malloc]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {impl} N={slots} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(
    sizes, rounds: int, steps: int, malloc: str = "tuned", compiled: bool = False, progress=print
) -> dict:
    impls = ["torchmem-dnc", "pytorch-dnc"] + (["torchmem-dnc-compiled"] if compiled else [])
    rows = []
    for slots in sizes:
        per: dict[str, list[dict]] = {impl: [] for impl in impls}
        for r in range(rounds):
            for impl in impls:
                timed = steps if slots < 1024 else max(1, steps // 2)
                result = measure(impl, slots, BATCH, timed, malloc)
                per[impl].append(result)
                progress(
                    f"round {r + 1}/{rounds} N={slots} {impl}: "
                    f"{result['cpu_s_per_step'] * 1e3:.1f} ms/step, "
                    f"peak +{result['peak_mib']:.0f} MiB, first step {result['first_step_s']:.1f} s"
                )

        def median(impl: str, key: str, per=per) -> float:
            return statistics.median(x[key] for x in per[impl])

        theirs = median("pytorch-dnc", "cpu_s_per_step")
        row = {"slots": slots, "pytorch_dnc_ms": theirs * 1e3,
               "pytorch_dnc_peak_mib": median("pytorch-dnc", "peak_mib")}  # fmt: skip
        for impl, key in (("torchmem-dnc", "torchmem"), ("torchmem-dnc-compiled", "compiled")):
            if impl in per:
                ours = median(impl, "cpu_s_per_step")
                row[f"{key}_ms"] = ours * 1e3
                row[f"{key}_speedup"] = theirs / ours
                row[f"{key}_peak_mib"] = median(impl, "peak_mib")
                row[f"{key}_memory_ratio"] = row["pytorch_dnc_peak_mib"] / max(
                    row[f"{key}_peak_mib"], 1e-9
                )
                row[f"{key}_first_step_s"] = median(impl, "first_step_s")
        rows.append(row)
    ntm = [measure("torchmem-ntm", 128, b, steps, malloc) for b in (1, 16)]
    return {"dnc": rows, "ntm": ntm, "torch": torch.__version__, "threads": 1, "malloc": malloc,
            "date": time.strftime("%Y-%m-%d"), "machine": _machine()}  # fmt: skip


def _machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{model}, {os.cpu_count()} cores"


def format_report(report: dict) -> str:
    compiled = any("compiled_ms" in r for r in report["dnc"])
    lines = [
        f"DNC training step (forward + backward + Adam), batch {BATCH}, LSTM controller {HIDDEN}, "
        f"W={WIDTH}, R={READS}, {2 * LENGTH + 1}-step copy episodes, one thread; "
        f"{report['date']}, {report['machine']}, torch {report['torch']}, "
        f"glibc malloc {report['malloc']} for both. CPU ms per step (median of rounds); "
        "peak = resident memory added during the steps.",
        "",
        "| N | pytorch-dnc ms | torchmem ms | speed-up | pytorch-dnc peak MiB "
        "| torchmem peak MiB | memory ratio |"
        + (" compiled ms | compiled speed-up |" if compiled else ""),
        "|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if compiled else ""),
    ]
    for r in report["dnc"]:
        line = (
            f"| {r['slots']} | {r['pytorch_dnc_ms']:.1f} | {r['torchmem_ms']:.1f} "
            f"| {r['torchmem_speedup']:.1f}x | {r['pytorch_dnc_peak_mib']:.0f} "
            f"| {r['torchmem_peak_mib']:.0f} | {r['torchmem_memory_ratio']:.1f}x |"
        )
        if compiled:
            line += f" {r['compiled_ms']:.1f} | {r['compiled_speedup']:.1f}x |"
        lines.append(line)
    if compiled:
        firsts = ", ".join(
            f"N={r['slots']}: {r['compiled_first_step_s']:.0f} s" for r in report["dnc"]
        )
        lines += ["", f"First (compiling) step of the compiled DNC, wall time: {firsts}."]
    lines += [
        "",
        "NTM (LSTM controller 100, N=128, M=20, 1 read + 1 write head), CPU time per "
        "training step on 41-step copy episodes:",
        "",
    ]
    for r in report["ntm"]:
        lines.append(f"- batch {r['batch']}: {r['cpu_s_per_step'] * 1e3:.1f} ms")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="torchmem bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 128, 256, 1024])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per size")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per measurement")
    parser.add_argument("--out", type=Path, default=None, help="write markdown (+ .json) here")
    parser.add_argument(
        "--malloc",
        choices=sorted(MALLOC),
        default="tuned",
        help="glibc allocator settings, the same for every implementation",
    )
    parser.add_argument(
        "--compiled", action="store_true", help="also time DNC(compile=True) (compiles per N)"
    )
    parser.add_argument(
        "--worker", nargs=4, metavar=("IMPL", "N", "B", "STEPS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.worker:
        impl, slots, batch, steps = args.worker
        print(json.dumps(worker(impl, int(slots), int(batch), int(steps))))
        return 0
    try:
        import dnc  # noqa: F401
    except ImportError:
        print("torchmem bench: error: pytorch-dnc is not installed; pip install 'torchmem[bench]'",
              file=sys.stderr)  # fmt: skip
        return 2
    report = run(args.sizes, args.rounds, args.steps, args.malloc, args.compiled,
                 progress=lambda m: print(m, file=sys.stderr))  # fmt: skip
    text = format_report(report)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
