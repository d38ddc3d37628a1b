"""Memoria step benchmark: torchmem.memoria against memoria-pytorch 1.1.0 (PyPI package).

One step is ``add_working_memory -> remind -> adjust_lifespan_and_memories`` at the settings of
issue 3 (batch 8, 64 new engrams of width 256 per step, the paper's Memoria options). Each
measurement runs the whole sequence of steps in a fresh subprocess pinned to one thread, so
its CPU time and peak resident memory belong to that implementation alone; implementations
alternate round by round, the per-step times are the medians over rounds, and every run's
outputs are hashed so that the parent refuses to report anything unless both implementations
reminded, returned and stored exactly the same numbers.

    torchmem bench-memoria --out docs/bench/memoria.md
    python -m torchmem.bench.memoria_bench --rounds 3 --steps 200 --out docs/bench/memoria.md

Legend: B batch, W new engrams per step, D engram width, N engram slots per row (the live
engrams of the longest row plus front padding of the others), R reminded engrams per row.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .dnc_bench import MALLOC, _machine

#: Implementation name -> the module whose ``Memoria`` class is timed.
IMPLEMENTATIONS = {"torchmem": "torchmem.memoria", "memoria-pytorch": "memoria"}
REFERENCE = "memoria-pytorch"
WARMUP_STEPS = 3  # the third step is the first to walk long-term memory


class OutputMismatchError(RuntimeError):
    """Two runs of the benchmark produced different outputs or engram states."""


@dataclass(frozen=True)
class BenchSettings:
    """What one benchmark run does; the defaults are issue 3's settings.

    The Memoria options are those of the paper's language models (memoria-pytorch's GPT-2
    configuration): ``num_reminded_stm`` 50, ``ltm_search_depth`` 10, ``initial_lifespan`` 9,
    ``num_final_ltms`` 50 (``memoria_num_reminded_ltm``), with ``stm_capacity`` 64.

    Lifespan deltas follow the paper authors' rule, delta_i = a_i * R * lifespan_extend_scale
    with a_i the attention the model paid to reminded engram i; here the attention is a
    softmax of standard normal logits over the real (non -1) reminded engrams, drawn from a
    generator seeded by (seed, step), so both implementations get the same deltas whenever
    they reminded the same engrams.
    """

    steps: int = 200
    batch_size: int = 8  # B
    new_engrams: int = 64  # W, working memories added per step
    width: int = 256  # D
    seed: int = 0
    lifespan_extend_scale: float = 8.0  # the paper's memoria_lifespan_extend_scale
    num_reminded_stm: int = 50
    stm_capacity: int = 64
    ltm_search_depth: int = 10
    initial_lifespan: int = 9
    num_final_ltms: int = 50

    def memoria_options(self) -> dict[str, int]:
        """Keyword arguments of ``Memoria(...)``."""
        names = ("num_reminded_stm", "stm_capacity", "ltm_search_depth", "initial_lifespan",
                 "num_final_ltms")  # fmt: skip
        return {name: getattr(self, name) for name in names}


# ----------------------------------------------------------------------------------------
# Inputs: functions of (seed, step) only, identical for both implementations
# ----------------------------------------------------------------------------------------


def _generator(seed: int, step: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 4 + stream)


def step_data(settings: BenchSettings, step: int) -> Tensor:
    """(B, W, D) float32 working memory of one step, uniform in [0, 1)."""
    shape = (settings.batch_size, settings.new_engrams, settings.width)
    return torch.rand(shape, generator=_generator(settings.seed, step, 0))


def lifespan_deltas(indices: Tensor, settings: BenchSettings, step: int) -> Tensor:
    """(B, R) float32 lifespan deltas for the (B, R) reminded indices (-1 = none).

    delta = a * R * lifespan_extend_scale, a a random attention distribution over the real
    reminded engrams of each row (0 on -1 entries), as in the paper's models.
    """
    logits = torch.randn(indices.shape, generator=_generator(settings.seed, step, 1))
    real = indices >= 0
    attention = torch.softmax(logits.masked_fill(~real, -math.inf), dim=1).nan_to_num(0.0)
    return attention * indices.size(1) * settings.lifespan_extend_scale


# ----------------------------------------------------------------------------------------
# Worker: one implementation, all steps, in its own process
# ----------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False if we can't."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes(was_reset: bool) -> int:
    if was_reset:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    # getrusage's peak covers the whole process, imports included: an upper bound.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _hash(digest: Any, *tensors: Tensor) -> None:
    for tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())


def _memoria_module(impl: str):
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {impl!r}; valid: {', '.join(IMPLEMENTATIONS)}")
    return importlib.import_module(IMPLEMENTATIONS[impl])


def worker(impl: str, settings: BenchSettings | None = None) -> dict[str, Any]:
    """Run ``settings.steps`` Memoria steps with one implementation; time and hash every step.

    Returns a dict with, per step (lists of ``settings.steps``): ``cpu_ms`` (CPU time of
    add_working_memory + remind + adjust_lifespan_and_memories; making the inputs and hashing
    are not timed), ``slots`` (N = ``engrams.data.shape[1]`` when remind runs, i.e. after the
    step's working memory was added), ``live`` (mean non-padding engrams per row at that
    moment), ``reminded`` (R) and ``step_digests``; and overall ``peak_mib`` (resident memory
    added during the steps), ``warmup_cpu_s`` / ``warmup_mib`` (a throwaway memory's first
    steps: lazy imports and first-call set-up), and ``digest``, the sha256 of every step's
    reminded memories and indices, lifespans and levels after the adjustment, the final
    engram data, co-firing counts, levels and lifespans, and the final torch RNG state.
    """
    settings = settings or BenchSettings()
    torch.set_num_threads(1)
    module = _memoria_module(impl)
    options = settings.memoria_options()

    before, start = _rss_bytes(), time.process_time()
    scratch = module.Memoria(**options)
    for step in range(WARMUP_STEPS):
        scratch.add_working_memory(step_data(settings, step))
        _, indices = scratch.remind()
        scratch.adjust_lifespan_and_memories(indices, lifespan_deltas(indices, settings, step))
    warmup_cpu_s, warmup_mib = time.process_time() - start, (_rss_bytes() - before) / 2**20
    del scratch

    torch.manual_seed(settings.seed)  # memoria draws its tie-breaks from the global generator
    memory = module.Memoria(**options)
    digest = hashlib.sha256()
    cpu_ms, slots, live, reminded, step_digests = [], [], [], [], []
    baseline = _rss_bytes()
    was_reset = _reset_peak_rss()
    for step in range(settings.steps):
        data = step_data(settings, step)
        start = time.process_time()
        memory.add_working_memory(data)
        memories, indices = memory.remind()
        elapsed = time.process_time() - start

        engrams = memory.engrams
        slots.append(engrams.data.shape[1])
        live.append(int((engrams.engrams_types != 0).sum()) / settings.batch_size)
        reminded.append(indices.size(1))
        _hash(digest, memories, indices)
        deltas = lifespan_deltas(indices, settings, step)

        start = time.process_time()
        memory.adjust_lifespan_and_memories(indices, deltas)
        elapsed += time.process_time() - start

        cpu_ms.append(elapsed * 1e3)
        _hash(digest, memory.engrams.lifespan, memory.engrams.engrams_types)
        step_digests.append(digest.hexdigest()[:16])
    peak_mib = (_peak_rss_bytes(was_reset) - baseline) / 2**20

    engrams = memory.engrams
    _hash(digest, engrams.data, engrams.induce_counts, engrams.engrams_types, engrams.lifespan,
          torch.get_rng_state())  # fmt: skip
    return {
        "impl": impl,
        "settings": dataclasses.asdict(settings),
        "cpu_ms": cpu_ms,
        "slots": slots,
        "live": live,
        "reminded": reminded,
        "peak_mib": peak_mib,
        "peak_method": "VmHWM reset at the first step" if was_reset else "ru_maxrss",
        "warmup_cpu_s": warmup_cpu_s,
        "warmup_mib": warmup_mib,
        "digest": digest.hexdigest(),
        "step_digests": step_digests,
    }


# ----------------------------------------------------------------------------------------
# Parent: alternate rounds, check identity, summarise
# ----------------------------------------------------------------------------------------


def measure(impl: str, settings: BenchSettings, malloc: str = "tuned") -> dict[str, Any]:
    """Run :func:`worker` in a fresh one-thread subprocess and return its result."""
    payload = json.dumps({"impl": impl, "settings": dataclasses.asdict(settings)})
    cmd = [sys.executable, "-m", "torchmem.bench.memoria_bench", "--worker", payload]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # The worker must import this very torchmem, installed or not.
    source_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    env.pop("GLIBC_TUNABLES", None)
    if MALLOC[malloc]:
        env["GLIBC_TUNABLES"] = MALLOC[malloc]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {impl} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_identical(runs: dict[str, list[dict[str, Any]]]) -> str:
    """The common digest of all runs; OutputMismatchError naming the first differing step."""
    labelled = [(f"{impl} run {i + 1}", r) for impl, rs in runs.items() for i, r in enumerate(rs)]
    (first_label, first), *others = labelled
    for label, other in others:
        if other["digest"] == first["digest"] and other["slots"] == first["slots"]:
            continue
        pairs = zip(first["step_digests"], other["step_digests"])
        step = next((s for s, (a, b) in enumerate(pairs) if a != b), None)
        where = "in the final engram state" if step is None else f"from step {step}"
        raise OutputMismatchError(
            f"outputs differ between {first_label} and {label} {where} (digests "
            f"{first['digest'][:16]} and {other['digest'][:16]}); no timing is reported for "
            "implementations that do not compute the same thing"
        )
    return first["digest"]


def _growth_exponent(slots: list[int], ms: list[float]) -> float | None:
    """k of the least-squares fit ms ~ c * N^k (log-log), or None with too few distinct N."""
    points = [(math.log(n), math.log(t)) for n, t in zip(slots, ms) if n > 0 and t > 0]
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return num / sum((x - mean_x) ** 2 for x, _ in points)


def summarise(
    runs: dict[str, list[dict[str, Any]]], digest: str, bucket: int = 256
) -> dict[str, Any]:
    """The report: per-implementation medians, ratios, and time per step by N bucket.

    Per-step times are first reduced to their median over rounds; ``mean_ms`` is the median
    over rounds of each run's mean over steps (total CPU / steps), ``median_ms`` that of each
    run's median step. The growth exponent is fitted from step WARMUP_STEPS - 1 on, when the
    long-term walk has started.
    """
    first = runs[REFERENCE][0]
    slots, steps = first["slots"], len(first["slots"])
    per_step = {"slots": slots, "live": first["live"], "reminded": first["reminded"]}
    impls: dict[str, dict[str, Any]] = {}
    for impl, results in runs.items():
        per_step[impl] = [statistics.median(r["cpu_ms"][s] for r in results) for s in range(steps)]
        start = min(WARMUP_STEPS - 1, steps - 1)
        impls[impl] = {
            "mean_ms": statistics.median(statistics.fmean(r["cpu_ms"]) for r in results),
            "median_ms": statistics.median(statistics.median(r["cpu_ms"]) for r in results),
            "peak_mib": statistics.median(r["peak_mib"] for r in results),
            "warmup_cpu_s": statistics.median(r["warmup_cpu_s"] for r in results),
            "warmup_mib": statistics.median(r["warmup_mib"] for r in results),
            "growth_exponent": _growth_exponent(slots[start:], per_step[impl][start:]),
            "rounds_mean_ms": [statistics.fmean(r["cpu_ms"]) for r in results],
            "peak_method": results[0]["peak_method"],
        }
    ours, theirs = impls["torchmem"], impls[REFERENCE]
    ratios = {
        "mean_speedup": theirs["mean_ms"] / ours["mean_ms"],
        "median_speedup": theirs["median_ms"] / ours["median_ms"],
        "memory_ratio": theirs["peak_mib"] / max(ours["peak_mib"], 1e-9),
    }
    buckets = []
    for lo in sorted({n // bucket * bucket for n in slots}):
        chosen = [s for s, n in enumerate(slots) if lo <= n < lo + bucket]
        row = {"lo": lo, "hi": lo + bucket - 1, "steps": len(chosen),
               "mean_slots": statistics.fmean(slots[s] for s in chosen)}  # fmt: skip
        for impl in runs:
            row[f"{impl}_ms"] = statistics.median(per_step[impl][s] for s in chosen)
        row["speedup"] = row[f"{REFERENCE}_ms"] / row["torchmem_ms"]
        buckets.append(row)
    return {
        "settings": first["settings"],
        "rounds": len(runs[REFERENCE]),
        "implementations": impls,
        "ratios": ratios,
        "buckets": buckets,
        "bucket": bucket,
        "per_step": per_step,
        "digest": digest,
    }


def run(
    settings: BenchSettings | None = None,
    rounds: int = 3,
    *,
    malloc: str = "tuned",
    bucket: int = 256,
    progress: Callable[[str], Any] = print,
    measure: Callable[..., dict[str, Any]] = measure,
) -> dict[str, Any]:
    """Measure both implementations ``rounds`` times, alternating; check and summarise."""
    settings = settings or BenchSettings()
    if rounds < 1 or settings.steps < 1:
        raise ValueError("--rounds and --steps must be at least 1")
    order = list(IMPLEMENTATIONS)
    runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in order}
    for r in range(rounds):
        for impl in order if r % 2 == 0 else order[::-1]:
            result = measure(impl, settings, malloc)
            runs[impl].append(result)
            progress(
                f"round {r + 1}/{rounds} {impl}: {statistics.fmean(result['cpu_ms']):.1f} "
                f"ms/step, N up to {max(result['slots'])}, peak +{result['peak_mib']:.0f} MiB, "
                f"digest {result['digest'][:16]}"
            )
    digest = check_identical(runs)
    report = summarise(runs, digest, bucket)
    report.update(
        torch=torch.__version__,
        memoria_pytorch=_version("memoria-pytorch"),
        threads=1,
        malloc=malloc,
        date=time.strftime("%Y-%m-%d"),
        machine=_machine(),
    )
    return report


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


# ----------------------------------------------------------------------------------------
# Output: markdown, JSON, PNG
# ----------------------------------------------------------------------------------------


def _exponent(value: float | None) -> str:
    return "-" if value is None else f"N^{value:.2f}"


def format_report(report: dict[str, Any]) -> str:
    """Markdown: a header line, the overall table and the time-per-step-by-N table."""
    s, impls, ratios = report["settings"], report["implementations"], report["ratios"]
    ours, theirs = impls["torchmem"], impls[REFERENCE]
    per_step, rounds = report["per_step"], report["rounds"]
    lines = [
        f"Memoria step (add_working_memory -> remind -> adjust_lifespan_and_memories), "
        f"{s['steps']} steps, batch {s['batch_size']}, {s['new_engrams']} new engrams of width "
        f"{s['width']} per step, num_reminded_stm {s['num_reminded_stm']}, stm_capacity "
        f"{s['stm_capacity']}, ltm_search_depth {s['ltm_search_depth']}, initial_lifespan "
        f"{s['initial_lifespan']}, num_final_ltms {s['num_final_ltms']}, lifespan deltas = "
        f"random attention x R x {s['lifespan_extend_scale']:g}, seed {s['seed']}; one thread; "
        f"{report['date']}, {report['machine']}, torch {report['torch']}, memoria-pytorch "
        f"{report['memoria_pytorch']}, glibc malloc {report['malloc']} for both. "
        f"{rounds} alternating round{'s' if rounds != 1 else ''}, a fresh process per run; CPU "
        "ms per step (median of rounds); peak = resident memory added during the steps.",
        "",
        "| | memoria-pytorch | torchmem | ratio |",
        "|---|---:|---:|---:|",
        f"| CPU ms/step, mean of the {s['steps']} steps | {theirs['mean_ms']:.1f} "
        f"| {ours['mean_ms']:.1f} | {ratios['mean_speedup']:.1f}x |",
        f"| CPU ms/step, median step | {theirs['median_ms']:.1f} | {ours['median_ms']:.1f} "
        f"| {ratios['median_speedup']:.1f}x |",
        f"| peak MiB added | {theirs['peak_mib']:.0f} | {ours['peak_mib']:.0f} "
        f"| {ratios['memory_ratio']:.1f}x |",
        f"| time per step grows like (log-log fit from step {WARMUP_STEPS - 1}) "
        f"| {_exponent(theirs['growth_exponent'])} | {_exponent(ours['growth_exponent'])} | |",
        f"| first {WARMUP_STEPS} steps of a throwaway memory (warm-up, not in the above), CPU s "
        f"| {theirs['warmup_cpu_s']:.2f} | {ours['warmup_cpu_s']:.2f} | |",
        "",
        f"Time per step against the number of stored engrams, N = engram slots per row when "
        f"remind runs (`engrams.data.shape[1]` after add_working_memory: the longest row's "
        f"live engrams including the {s['new_engrams']} new ones; shorter rows are front-padded "
        f"to it). Median over the steps in each bucket of the per-step medians over rounds.",
        "",
        "| N | steps | memoria-pytorch ms | torchmem ms | speed-up |",
        "|---:|---:|---:|---:|---:|",
    ]
    for b in report["buckets"]:
        lines.append(
            f"| {b['lo']}-{b['hi']} | {b['steps']} | {b[f'{REFERENCE}_ms']:.1f} "
            f"| {b['torchmem_ms']:.1f} | {b['speedup']:.1f}x |"
        )
    runs = 2 * report["rounds"]
    lines += [
        "",
        f"N reached {max(per_step['slots'])} (at the last step {per_step['slots'][-1]}, "
        f"{per_step['live'][-1]:.0f} live engrams per row on average). Identical outputs: every "
        "step's reminded memories and indices, the lifespans and levels after every "
        "adjustment, the final engram data, co-firing counts, levels and lifespans and the "
        f"final RNG state hash to the same sha256 ({report['digest'][:16]}...) in all {runs} "
        "runs.",
    ]
    return "\n".join(lines)


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """PNG: CPU ms per step against N for both implementations, and the speed-up."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        raise ImportError(
            "the plot needs matplotlib, which is not installed: pip install torchmem[viz]"
        ) from None
    per_step, buckets = report["per_step"], report["buckets"]
    figure = Figure(figsize=(11, 4), dpi=100)
    FigureCanvasAgg(figure)
    times, speedups = figure.subplots(1, 2)
    for impl, colour in ((REFERENCE, "tab:red"), ("torchmem", "tab:blue")):
        times.scatter(per_step["slots"], per_step[impl], s=6, alpha=0.4, color=colour)
        times.plot([b["mean_slots"] for b in buckets], [b[f"{impl}_ms"] for b in buckets],
                   "o-", color=colour, label=f"{impl} (bucket median)")  # fmt: skip
    times.set_yscale("log")
    times.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    times.set_xlabel("engram slots per row N")
    times.set_ylabel("CPU ms per step (one thread)")
    times.grid(True, alpha=0.3)
    times.legend()
    ratio = [t / o for t, o in zip(per_step[REFERENCE], per_step["torchmem"])]
    speedups.scatter(per_step["slots"], ratio, s=6, alpha=0.4, color="tab:green")
    speedups.plot([b["mean_slots"] for b in buckets], [b["speedup"] for b in buckets], "o-",
                  color="tab:green", label="bucket median")  # fmt: skip
    speedups.axhline(5.0, color="grey", linestyle="--", linewidth=1, label="5x goal")
    speedups.set_xlabel("engram slots per row N")
    speedups.set_ylabel("memoria-pytorch time / torchmem time")
    speedups.grid(True, alpha=0.3)
    speedups.legend()
    s = report["settings"]
    figure.suptitle(
        f"Memoria step, batch {s['batch_size']}, +{s['new_engrams']} engrams of width "
        f"{s['width']} per step, one thread ({report['date']})"
    )
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def write_report(report: dict[str, Any], out: str | Path) -> list[Path]:
    """Write OUT (markdown), OUT.json and, with matplotlib, OUT.png; returns the paths."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(format_report(report) + "\n")
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    written = [out, out.with_suffix(".json")]
    try:
        written.append(plot_report(report, out.with_suffix(".png")))
    except ImportError as error:  # the numbers are written; the picture is optional
        print(f"skipping the plot: {error}", file=sys.stderr)
    return written


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    defaults = BenchSettings()
    parser = argparse.ArgumentParser(
        prog="torchmem bench-memoria", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument(
        "--steps", type=int, default=defaults.steps, help="steps per run (default 200)"
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="B (default 8)")
    parser.add_argument(
        "--new-engrams",
        type=int,
        default=defaults.new_engrams,
        help="W, new engrams per step (default 64)",
    )
    parser.add_argument(
        "--width", type=int, default=defaults.width, help="D, engram width (default 256)"
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed of inputs and tie-breaks (default 0)"
    )
    parser.add_argument(
        "--lifespan-scale",
        type=float,
        default=defaults.lifespan_extend_scale,
        help="lifespan_extend_scale of the deltas (default 8, the paper's)",
    )
    parser.add_argument(
        "--bucket", type=int, default=256, help="width of the N buckets in the table (default 256)"
    )
    parser.add_argument(
        "--malloc",
        choices=sorted(MALLOC),
        default="tuned",
        help="glibc allocator settings, the same for both implementations (default tuned)",
    )
    parser.add_argument("--out", type=Path, help="write markdown here (+ .json, .png)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(worker(job["impl"], BenchSettings(**job["settings"]))))
        return 0
    try:
        import memoria  # noqa: F401
    except ImportError:
        print("torchmem bench-memoria: error: memoria-pytorch is not installed; "
              "pip install 'torchmem[bench]'", file=sys.stderr)  # fmt: skip
        return 2
    settings = BenchSettings(
        steps=args.steps,
        batch_size=args.batch_size,
        new_engrams=args.new_engrams,
        width=args.width,
        seed=args.seed,
        lifespan_extend_scale=args.lifespan_scale,
    )
    progress = lambda message: print(message, file=sys.stderr)  # noqa: E731
    try:
        report = run(settings, args.rounds, malloc=args.malloc, bucket=args.bucket,
                     progress=progress)  # fmt: skip
    except OutputMismatchError as error:
        print(f"torchmem bench-memoria: error: {error}", file=sys.stderr)
        return 1
    print(format_report(report))
    if args.out:
        for path in write_report(report, args.out):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
