"""Summarise one experiment run with several seeds: mean, standard deviation and the value of
every seed, per variant and metric.

Each run folder is the output of one experiment command (``results.json``) that differ only
in ``--seed``; their other settings must match, or the summary refuses to mix them.

    python -m torchmem.experiments.seeds runs/memnet-gap-s0 runs/memnet-gap-s1 \\
        --out docs/memnet/gap-recall-seeds.md

Known experiments, recognised from their records: MemNet experiment 1/4 (records keyed by
``variant``: accuracy, bit accuracy, accuracy per gap bin) and experiment 2 (keyed by
``model``: ACC, BWT, FWT, joint ACC).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS_JSON = "results.json"

#: Settings allowed to differ between the runs of one summary.
PER_RUN_SETTINGS = ("seed", "eval_seed", "torch_threads")


def _load(folder: Path) -> dict[str, Any]:
    path = folder / RESULTS_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected an experiment's output folder")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(data, dict) or "settings" not in data or "results" not in data:
        raise ValueError(f"{path} lacks 'settings' and 'results': not an experiment's output")
    return data


def _kind(records: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, str]]:
    """The key naming each record and the metrics to summarise (name -> label)."""
    if records and "variant" in records[0]:
        return "variant", {"accuracy": "accuracy", "bit_accuracy": "bit accuracy"}
    if records and "matrix" in records[0]:
        return "model", {"acc": "ACC", "bwt": "BWT", "fwt": "FWT", "joint_acc": "joint ACC"}
    raise ValueError("unknown experiment: records have neither 'variant' nor 'matrix'")


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        raise ValueError("no values")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarise(folders: Sequence[str | Path]) -> dict[str, Any]:
    """``{"key", "seeds", "settings", "rows"}``; a row per variant or model with, per metric,
    ``{"values", "mean", "sd"}`` (metrics missing from a run, e.g. joint ACC, are skipped),
    and for experiment 1 ``by_gap``: per bin ``[low, high, mean, sd]``."""
    if not folders:
        raise ValueError("give at least one run folder")
    runs = [_load(Path(folder)) for folder in folders]
    reference = {k: v for k, v in runs[0]["settings"].items() if k not in PER_RUN_SETTINGS}
    for folder, run in zip(folders[1:], runs[1:]):
        settings = {k: v for k, v in run["settings"].items() if k not in PER_RUN_SETTINGS}
        if settings != reference:
            differ = sorted(k for k in set(settings) | set(reference)
                            if settings.get(k) != reference.get(k))  # fmt: skip
            raise ValueError(
                f"{folder} was run with other settings than {folders[0]} ({', '.join(differ)}); "
                "only the seed may differ"
            )
    seeds = [run["settings"].get("seed") for run in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the runs repeat a seed: {seeds}")
    key, metrics = _kind(runs[0]["results"])
    names = [record[key] for record in runs[0]["results"]]
    rows = []
    for name in names:
        records = []
        for folder, run in zip(folders, runs):
            found = [r for r in run["results"] if r[key] == name]
            if not found:
                raise ValueError(f"{folder} has no result for {key} {name!r}")
            records.append(found[0])
        row: dict[str, Any] = {key: name}
        for metric in metrics:
            values = [r[metric] for r in records if r.get(metric) is not None]
            if len(values) == len(records):
                mean, sd = mean_sd(values)
                row[metric] = {"values": values, "mean": mean, "sd": sd}
        if "by_gap" in records[0]:
            row["by_gap"] = []
            for i, cell in enumerate(records[0]["by_gap"]):
                mean, sd = mean_sd([r["by_gap"][i]["accuracy"] for r in records])
                row["by_gap"].append([cell["gap_low"], cell["gap_high"], mean, sd])
        rows.append(row)
    return {"key": key, "metrics": metrics, "seeds": seeds, "settings": reference, "rows": rows}


def format_summary(summary: Mapping[str, Any]) -> str:
    """Markdown: one table, mean +- sd and every seed's value per metric."""
    key, metrics, seeds = summary["key"], summary["metrics"], summary["seeds"]
    shown = [m for m in metrics if any(m in row for row in summary["rows"])]
    header = f"| {key} | " + " | ".join(
        f"{metrics[m]} mean ± sd | {metrics[m]} per seed" for m in shown
    ) + " |"  # fmt: skip
    lines = [
        f"{len(seeds)} seeds ({', '.join(str(s) for s in seeds)}); sd is the sample standard "
        "deviation across seeds.",
        "",
        header,
        "|---|" + "---:|---|" * len(shown),
    ]
    for row in summary["rows"]:
        cells = []
        for m in shown:
            if m in row:
                cell = row[m]
                cells.append(f"{cell['mean']:.3f} ± {cell['sd']:.3f}")
                cells.append(", ".join(f"{v:.3f}" for v in cell["values"]))
            else:
                cells += ["-", "-"]
        lines.append(f"| {row[key]} | " + " | ".join(cells) + " |")
    if any("by_gap" in row for row in summary["rows"]):
        bins = summary["rows"][0]["by_gap"]
        lines += [
            "",
            "Accuracy by gap, mean over seeds:",
            "",
            f"| {key} | " + " | ".join(f"gap {lo}-{hi}" for lo, hi, _, _ in bins) + " |",
            "|---|" + "---:|" * len(bins),
        ]
        for row in summary["rows"]:
            lines.append(
                f"| {row[key]} | " + " | ".join(f"{m:.3f}" for _, _, m, _ in row["by_gap"]) + " |"
            )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m torchmem.experiments.seeds",
        description="Mean and spread over seeds of one experiment's runs (results.json each).",
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run folders, one per seed")
    parser.add_argument("--out", type=Path, default=None, help="also write markdown (+ .json)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary = summarise(args.runs)
    text = format_summary(summary)
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
