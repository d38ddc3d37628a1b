"""One training loop: any registered model on any registered task, into a run folder.

A run folder holds

* ``config.json``: the resolved :class:`TrainConfig`, the model's full config and the
  task's full config (rewritten when a run is resumed, e.g. with more ``steps``);
* ``metrics.jsonl``: one JSON object per log line (see :func:`train`);
* ``checkpoint.pt``: the latest checkpoint, overwritten atomically every
  ``checkpoint_every`` steps, at every new best evaluation and at the end; there is one
  file per run, not one per save;
* ``best.pt``: the checkpoint of the evaluation with the fewest held-out bit errors per
  sequence so far (ties: the lower held-out loss; the earlier step), rewritten at each new
  best. Training on the algorithmic tasks is spiky, so the last step is not always the
  best; ``torchmem eval RUN --best`` scores this one. The choice is made on the training
  held-out set, so report it on data drawn with another ``--seed``.

Randomness: the model is initialised from torch's global generator seeded with ``seed``;
training batches come from their own ``torch.Generator`` seeded with ``seed``; held-out
batches from a fresh generator seeded with ``seed + EVAL_SEED_OFFSET`` at every evaluation,
so every evaluation scores the same held-out set, which is never drawn from the training
stream. Both generator states are in the checkpoint, so a resumed run repeats bit for bit
what an uninterrupted run would have done.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import build_config, config_fields
from ..registry import MODELS, make_model, model_config_dict, model_from_config, model_options
from ..tasks import TASKS, Task, make_task, task_config
from .checkpoint import load_checkpoint, save_checkpoint

CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.pt"
#: The held-out metrics that choose ``best.pt``, compared in this order (lower is better).
SELECTION_METRICS = ("bit_errors_per_sequence", "loss")
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"

#: Held-out data is drawn from a generator seeded with ``seed + EVAL_SEED_OFFSET``.
EVAL_SEED_OFFSET = 1_000_003

OPTIMIZERS = ("adam", "rmsprop")

# Model options fixed by the task, and train fields set by dedicated arguments: neither can
# be given as a ``key=value`` override.
_SIZE_OPTIONS = ("input_size", "output_size")
_STRUCTURAL_TRAIN_FIELDS = ("model", "task", "model_options", "task_options")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in ``config.json`` and the checkpoint).

    Attributes:
        model: registry name of the model (``torchmem list`` shows them).
        task: registry name of the task.
        steps: total optimiser steps; resuming continues up to this number.
        batch_size: training sequences per step.
        lr: learning rate.
        optimizer: ``"adam"`` or ``"rmsprop"`` (momentum 0.9, as in the NTM paper).
        grad_clip: clip the gradient's global L2 norm to this value; 0 disables clipping.
        seed: seeds model initialisation, training data and (offset) held-out data.
        eval_every: evaluate on held-out data every this many steps (and at the end);
            0 evaluates only at the end.
        eval_batches: held-out batches per evaluation.
        eval_batch_size: sequences per held-out batch.
        checkpoint_every: save ``checkpoint.pt`` every this many steps (and at the end);
            0 saves only at the end.
        log_every: write a ``metrics.jsonl`` line (training metrics averaged since the
            last line) every this many steps, and at every evaluation and checkpoint.
        device: torch device to train on, e.g. ``"cpu"`` or ``"cuda"``.
        model_options: model config overrides, e.g. ``{"memory_slots": 64}``.
        task_options: task config overrides, e.g. ``{"max_length": 10}``.
    """

    model: str = "ntm"
    task: str = "copy"
    steps: int = 5000
    batch_size: int = 16
    lr: float = 1e-3
    optimizer: str = "adam"
    grad_clip: float = 10.0
    seed: int = 0
    eval_every: int = 100
    eval_batches: int = 4
    eval_batch_size: int = 64
    checkpoint_every: int = 500
    log_every: int = 10
    device: str = "cpu"
    model_options: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(
                f"unknown model {self.model!r}; valid models: {', '.join(sorted(MODELS))}"
            )
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; valid tasks: {', '.join(sorted(TASKS))}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; valid optimizers: {', '.join(OPTIMIZERS)}"
            )
        for name in ("steps", "batch_size", "eval_batches", "eval_batch_size", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"train option {name} must be a positive integer, got {value!r}")
        for name in ("eval_every", "checkpoint_every", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"train option {name} must be an integer >= 0, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"train option lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.grad_clip, (int, float)) and self.grad_clip >= 0):
            raise ValueError(
                f"train option grad_clip must be a number >= 0, got {self.grad_clip!r}"
            )
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"train option device: {error}") from None
        for name in ("model_options", "task_options"):
            if not isinstance(getattr(self, name), Mapping):
                raise TypeError(f"train option {name} must be a dict, got {getattr(self, name)!r}")
        self.model_options = dict(self.model_options)
        self.task_options = dict(self.task_options)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------
# Options given as key=value strings (the CLI's --set)
# ----------------------------------------------------------------------------------------


def train_options() -> dict[str, Any]:
    """``{option: default}`` of the train options a ``key=value`` override may set."""
    return {
        name: default
        for name, default in config_fields(TrainConfig).items()
        if name not in _STRUCTURAL_TRAIN_FIELDS
    }


def settable_model_options(model: str) -> dict[str, Any]:
    """``{option: default}`` of a model, less the sizes that the task decides."""
    return {k: v for k, v in model_options(model).items() if k not in _SIZE_OPTIONS}


def task_options(task: str) -> dict[str, Any]:
    """``{option: default}`` of a registered task."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(sorted(TASKS))}")
    return config_fields(TASKS[task][1])


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["a=1", "task.b=x"]`` -> ``{"a": "1", "task.b": "x"}`` (later items win)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"expected key=value, got {item!r}")
        out[key] = value.strip()
    return out


def split_overrides(
    model: str, task: str, assignments: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Sort ``key=value`` overrides into (model options, task options, train options).

    A key may be prefixed ``model.``, ``task.`` or ``train.``; a bare key goes to whichever
    of the three has an option of that name, and must be prefixed if more than one has.
    String values are converted to each option's type here, so a bad value fails before
    any training starts.

    Raises:
        ValueError: unknown or ambiguous key, or a value of the wrong type; the message
            lists the valid model, task and train options.
    """
    groups = {
        "model": settable_model_options(model),
        "task": task_options(task),
        "train": train_options(),
    }
    chosen: dict[str, dict[str, Any]] = {"model": {}, "task": {}, "train": {}}

    def valid_list() -> str:
        return (
            f"valid model options ({model}): {', '.join(groups['model'])}; "
            f"task options ({task}): {', '.join(groups['task'])}; "
            f"train options: {', '.join(groups['train'])}"
        )

    for key, value in assignments.items():
        prefix, dot, name = key.partition(".")
        if dot and prefix in groups:
            if name not in groups[prefix]:
                if prefix == "model" and name in _SIZE_OPTIONS:
                    raise ValueError(f"model option {name} is set by the task, not by hand")
                if prefix == "train" and name in _STRUCTURAL_TRAIN_FIELDS:
                    raise ValueError(f"{name} is chosen with its own argument, not with key=value")
                raise ValueError(f"unknown {prefix} option {name!r}; {valid_list()}")
            chosen[prefix][name] = value
            continue
        owners = [group for group, options in groups.items() if key in options]
        if not owners:
            if key in _SIZE_OPTIONS:
                raise ValueError(f"model option {key} is set by the task, not by hand")
            raise ValueError(f"unknown option {key!r}; {valid_list()}")
        if len(owners) > 1:
            spelled = " or ".join(f"{group}.{key}" for group in owners)
            raise ValueError(f"option {key!r} is ambiguous; write {spelled}")
        chosen[owners[0]][key] = value

    model_cfg = build_config(
        MODELS[model].config_class,
        {"input_size": 1, "output_size": 1, **chosen["model"]},
        f"model {model}",
    )
    task_cfg = build_config(TASKS[task][1], chosen["task"], f"task {task}")
    train_cfg = build_config(
        TrainConfig, {"model": model, "task": task, **chosen["train"]}, "train"
    )
    return (
        {k: getattr(model_cfg, k) for k in chosen["model"]},
        {k: getattr(task_cfg, k) for k in chosen["task"]},
        {k: getattr(train_cfg, k) for k in chosen["train"]},
    )


def make_train_config(
    model: str | None = None,
    task: str | None = None,
    assignments: Mapping[str, Any] | None = None,
    *,
    base: TrainConfig | None = None,
    **train_overrides: Any,
) -> TrainConfig:
    """Build a :class:`TrainConfig` from names, ``key=value`` overrides and explicit fields.

    Args:
        model, task: registry names; default to ``base``'s, else ``"ntm"`` and ``"copy"``.
        assignments: ``key=value`` overrides sorted by :func:`split_overrides`.
        base: a saved config to start from (to resume a run); its model and task options
            are kept and updated by ``assignments``.
        **train_overrides: TrainConfig fields (``steps=...``); None values are ignored.

    Raises:
        ValueError: unknown names or options, or a model/task that differs from ``base``'s.
    """
    if base is not None:
        for what, given, saved in (("model", model, base.model), ("task", task, base.task)):
            if given is not None and given != saved:
                raise ValueError(f"the saved run trains {what} {saved!r}, not {given!r}")
    model = model or (base.model if base is not None else "ntm")
    task = task or (base.task if base is not None else "copy")
    model_opts, task_opts, train_opts = split_overrides(model, task, assignments or {})
    values = base.to_dict() if base is not None else {}
    values.update(train_opts)
    values.update({key: value for key, value in train_overrides.items() if value is not None})
    values["model"], values["task"] = model, task
    values["model_options"] = {**values.get("model_options", {}), **model_opts}
    values["task_options"] = {**values.get("task_options", {}), **task_opts}
    return build_config(TrainConfig, values, "train")


def saved_train_config(run_dir: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` stored in a run folder's checkpoint."""
    checkpoint = load_checkpoint(Path(run_dir) / CHECKPOINT_FILE)
    return build_config(TrainConfig, dict(checkpoint["train_config"]), "saved train")


# ----------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_optimizer(
    name: str, parameters: Iterable[nn.Parameter], lr: float
) -> torch.optim.Optimizer:
    """``"adam"`` (torch defaults) or ``"rmsprop"`` with momentum 0.9 (NTM paper)."""
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's (when installed) and torch's global generators."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed % 2**32)


def eval_seed(seed: int) -> int:
    """Seed of the held-out data generator of a run trained with ``seed``."""
    return seed + EVAL_SEED_OFFSET


def model_name_of(model: nn.Module) -> str:
    """Registry name of a model instance (its class name when it is not registered)."""
    for name, spec in MODELS.items():
        if type(model) is spec.model_class:
            return name
    return type(model).__name__


def forward_with_losses(model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """A training forward pass: ``(outputs, {name: term})``.

    A model with auxiliary objectives defines ``forward_with_losses(x) -> (y, state, terms)``,
    each term a ``(value, weight)`` pair (:class:`torchmem.core.regularizers.LossTerm`: a
    scalar tensor and its weight in the total loss); any other model is called as
    ``model(x)`` and has no terms.
    """
    hook = getattr(model, "forward_with_losses", None)
    if hook is None:
        outputs, _ = model(inputs)
        return outputs, {}
    outputs, _, terms = hook(inputs)
    return outputs, dict(terms)


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def measure(
    model: nn.Module,
    task: Task,
    *,
    length: int | None = None,
    batches: int = 4,
    batch_size: int = 64,
    seed: int = EVAL_SEED_OFFSET,
) -> dict[str, float]:
    """Task metrics of ``model`` averaged over ``batches`` held-out batches.

    Batches come from a fresh generator seeded with ``seed`` (same seed, same data) and
    are ``task.sample(batch_size, generator, length=length)``; ``length=None`` samples the
    task's training lengths. Runs under ``torch.no_grad`` in eval mode, then restores the
    model's mode. Neither torch's global generator nor any training generator is touched.
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be a positive integer, got {batches!r}")
    device = _device_of(model)
    generator = torch.Generator().manual_seed(seed)
    totals: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(batches):
                batch = task.sample(batch_size, generator=generator, length=length).to(device)
                outputs, _ = model(batch.inputs)
                for key, value in task.metrics(outputs, batch).items():
                    totals[key] = totals.get(key, 0.0) + float(value)
    finally:
        model.train(was_training)
    return {key: value / batches for key, value in totals.items()}


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl``, in order."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no metrics log at {path}")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}, line {number}: not JSON ({error})") from None
    return records


def _keep_metrics_until(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint being resumed (they will be redone)."""
    if not path.exists():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line)["step"] <= step
    ]
    path.write_text("".join(line + "\n" for line in kept))


def _json_ready(value: Any) -> Any:
    """Make config values JSON-comparable (tuples become lists and so on)."""
    return json.loads(json.dumps(value, default=str))


def _check_resumable(
    config: TrainConfig, checkpoint: dict, model: nn.Module, task: Task, path: Path
) -> None:
    """Refuse to resume a checkpoint with a different model, task or data stream."""
    saved = checkpoint["train_config"]
    problems = []
    if checkpoint["model_name"] != config.model:
        problems.append(f"model {checkpoint['model_name']!r} != {config.model!r}")
    if checkpoint["task_name"] != config.task:
        problems.append(f"task {checkpoint['task_name']!r} != {config.task!r}")
    if not problems:
        for what, old, new in (
            ("model config", checkpoint["model_config"], model_config_dict(model)),
            ("task config", checkpoint["task_config"], task_config(task)),
        ):
            old, new = _json_ready(old), _json_ready(new)
            for key in sorted(set(old) | set(new)):
                if old.get(key) != new.get(key):
                    problems.append(f"{what} {key}: {old.get(key)!r} != {new.get(key)!r}")
    for key in ("optimizer", "seed"):
        if saved.get(key) != getattr(config, key):
            problems.append(f"{key} {saved.get(key)!r} != {getattr(config, key)!r}")
    if problems:
        raise ValueError(
            f"cannot resume {path}: the checkpoint differs from the given config "
            f"(saved != given): {'; '.join(problems)}"
        )
    if checkpoint["step"] >= config.steps:
        raise ValueError(
            f"cannot resume {path}: the run is already at step {checkpoint['step']}; "
            f"ask for more steps than that to continue it"
        )


def is_better(held_out: Mapping[str, float], best: Mapping[str, Any] | None) -> bool:
    """Whether held-out metrics beat the best so far (:data:`SELECTION_METRICS` in order).

    ``best`` holds ``eval_<metric>`` values (None: nothing yet, so anything is better). A
    NaN metric never wins.
    """
    values = tuple(float(held_out[key]) for key in SELECTION_METRICS)
    if any(math.isnan(value) for value in values):
        return False
    if best is None:
        return True
    return values < tuple(float(best[f"eval_{key}"]) for key in SELECTION_METRICS)


# ----------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``config.model`` on ``config.task`` and write the run folder ``out_dir``.

    Each ``metrics.jsonl`` record holds ``step``; the training ``loss``,
    ``bit_errors_per_sequence``, ``sequence_accuracy`` (and any other task metric) and
    ``grad_norm`` (before clipping), each averaged over the steps since the previous
    record; for a model with auxiliary loss terms (see :func:`forward_with_losses`) also
    ``loss_<name>``, each term's unweighted value, and ``loss_total``, the objective
    optimised (``loss`` stays the task loss, comparable across models); at evaluation
    steps ``eval_<metric>`` on the held-out set; ``wall_seconds`` and ``cpu_seconds``
    (``time.process_time``, all threads) spent in training so far.

    Args:
        config: the run's settings.
        out_dir: the run folder (created if needed).
        resume: continue the run in ``out_dir`` from its ``checkpoint.pt`` up to
            ``config.steps``, exactly as an uninterrupted run would have; the model, task,
            optimiser and seed must match the checkpoint.
        overwrite: allow starting a new run in a folder that already holds one.
        quiet: print nothing (no progress bar, no summary).
        progress: show a tqdm progress bar (unless ``quiet``).

    Returns:
        The last metrics record: the step, training metrics and ``eval_*`` metrics.

    Raises:
        ValueError: unknown names or options, a mismatching checkpoint on resume, or an
            existing run in ``out_dir`` without ``resume`` or ``overwrite``.
        FileNotFoundError: ``resume`` without a checkpoint in ``out_dir``.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    out = Path(out_dir)
    checkpoint_path, metrics_path = out / CHECKPOINT_FILE, out / METRICS_FILE
    best_path = out / BEST_FILE
    checkpoint = load_checkpoint(checkpoint_path) if resume else None
    if not resume and not overwrite and (checkpoint_path.exists() or metrics_path.exists()):
        raise ValueError(
            f"{out} already holds a run; resume it (resume=True, --resume), overwrite it "
            f"(overwrite=True, --overwrite) or choose another folder"
        )

    device = torch.device(config.device)
    seed_everything(config.seed)
    task = make_task(config.task, **config.task_options)
    model = make_model(config.model, task.input_size, task.output_size, **config.model_options)
    model.to(device)
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr)
    data_generator = torch.Generator().manual_seed(config.seed)
    step, wall_before, cpu_before = 0, 0.0, 0.0
    best: dict[str, Any] | None = None  # {"step": ..., "eval_<metric>": ...} of best.pt

    if checkpoint is not None:
        _check_resumable(config, checkpoint, model, task, checkpoint_path)
        model.load_state_dict(checkpoint["model_state"])
        optimizer.load_state_dict(checkpoint["optimizer_state"])
        for group in optimizer.param_groups:  # an explicitly changed lr wins
            group["lr"] = config.lr
        data_generator.set_state(checkpoint["data_rng_state"])
        torch.set_rng_state(checkpoint["torch_rng_state"])
        if device.type == "cuda" and checkpoint.get("cuda_rng_states"):
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng_states"])
        step = int(checkpoint["step"])
        wall_before = float(checkpoint.get("wall_seconds", 0.0))
        cpu_before = float(checkpoint.get("cpu_seconds", 0.0))
        _keep_metrics_until(metrics_path, step)
        best = checkpoint.get("best")
        if best is not None and best["step"] == step:
            save_checkpoint(checkpoint, best_path)
    else:
        out.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text("")
        checkpoint_path.unlink(missing_ok=True)
        best_path.unlink(missing_ok=True)

    parameters = count_parameters(model)
    resolved = {
        "train": config.to_dict(),
        "model": {
            "name": config.model,
            "config": model_config_dict(model),
            "parameters": parameters,
        },
        "task": {
            "name": config.task,
            "config": task_config(task),
            "input_size": task.input_size,
            "output_size": task.output_size,
        },
    }
    (out / CONFIG_FILE).write_text(json.dumps(resolved, indent=2, default=str) + "\n")

    def say(message: str) -> None:
        if not quiet:
            tqdm.write(message)

    verb = f"resuming at step {step}" if step else "training"
    say(f"{verb}: {config.model} ({parameters:,} parameters) on {config.task} -> {out}")

    def elapsed() -> tuple[float, float]:
        return (
            wall_before + time.perf_counter() - wall_start,
            cpu_before + time.process_time() - cpu_start,
        )

    def save(also_best: bool = False) -> None:
        wall, cpu = elapsed()
        content = {
            "step": step,
            "model_name": config.model,
            "model_config": model_config_dict(model),
            "model_state": model.state_dict(),
            "optimizer_state": optimizer.state_dict(),
            "task_name": config.task,
            "task_config": task_config(task),
            "train_config": config.to_dict(),
            "data_rng_state": data_generator.get_state(),
            "torch_rng_state": torch.get_rng_state(),
            "cuda_rng_states": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "best": best,
        }
        # The latest checkpoint first: a crash between the two writes leaves a checkpoint
        # whose best is itself, and resuming rewrites best.pt from it.
        save_checkpoint(content, checkpoint_path)
        if also_best:
            save_checkpoint(content, best_path)

    sums: dict[str, float] = {}
    counted = 0
    last: dict[str, Any] | None = None
    bar = tqdm(
        total=config.steps,
        initial=step,
        disable=quiet or not progress,
        desc=f"{config.model}/{config.task}",
        unit="step",
        dynamic_ncols=True,
    )
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    model.train()
    with bar:
        while step < config.steps:
            batch = task.sample(config.batch_size, generator=data_generator).to(device)
            outputs, terms = forward_with_losses(model, batch.inputs)
            loss = task.loss(outputs, batch)
            for term in terms.values():
                loss = loss + term.weight * term.value
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # An infinite threshold measures the norm and leaves the gradients unscaled.
            limit = config.grad_clip if config.grad_clip > 0 else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), limit)
            optimizer.step()
            step += 1
            bar.update(1)

            for key, value in task.metrics(outputs.detach(), batch).items():
                sums[key] = sums.get(key, 0.0) + float(value)
            for name, term in terms.items():
                value = float(term.value.detach())
                sums[f"loss_{name}"] = sums.get(f"loss_{name}", 0.0) + value
            if terms:
                sums["loss_total"] = sums.get("loss_total", 0.0) + float(loss.detach())
            sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(grad_norm)
            counted += 1

            at_end = step == config.steps
            evaluate_now = at_end or (config.eval_every > 0 and step % config.eval_every == 0)
            save_now = at_end or (
                config.checkpoint_every > 0 and step % config.checkpoint_every == 0
            )
            new_best = False
            # Checkpoints close a log window too, so a resumed run logs the same windows.
            if evaluate_now or save_now or step % config.log_every == 0:
                record: dict[str, Any] = {"step": step}
                record.update({key: value / counted for key, value in sums.items()})
                sums, counted = {}, 0
                if evaluate_now:
                    held_out = measure(
                        model,
                        task,
                        batches=config.eval_batches,
                        batch_size=config.eval_batch_size,
                        seed=eval_seed(config.seed),
                    )
                    record.update({f"eval_{key}": value for key, value in held_out.items()})
                    if is_better(held_out, best):
                        best = {"step": step}
                        best.update({f"eval_{k}": held_out[k] for k in SELECTION_METRICS})
                        save_now = new_best = True
                record["wall_seconds"], record["cpu_seconds"] = elapsed()
                with metrics_path.open("a") as log:
                    log.write(json.dumps(record) + "\n")
                last = record
                postfix = {
                    "loss": f"{record['loss']:.4f}",
                    "bits": f"{record['bit_errors_per_sequence']:.2f}",
                }
                if evaluate_now:
                    postfix["eval_bits"] = f"{record['eval_bit_errors_per_sequence']:.2f}"
                bar.set_postfix(postfix, refresh=False)
            if save_now:
                save(also_best=new_best)

    assert last is not None  # at least one step ran: _check_resumable guarantees it
    say(
        f"step {last['step']}: held-out bit errors/sequence "
        f"{last['eval_bit_errors_per_sequence']:.3f}, sequence accuracy "
        f"{last['eval_sequence_accuracy']:.3f} ({last['cpu_seconds']:.1f} CPU s)"
    )
    if best is not None and best["step"] != last["step"]:
        say(
            f"best evaluation at step {best['step']}: held-out bit errors/sequence "
            f"{best['eval_bit_errors_per_sequence']:.3f} -> {best_path}"
        )
    return last


# ----------------------------------------------------------------------------------------
# Reading runs back
# ----------------------------------------------------------------------------------------


#: ``load_run``'s ``checkpoint`` choices: the file each names in a run folder.
CHECKPOINT_CHOICES = {"latest": CHECKPOINT_FILE, "best": BEST_FILE}


def load_run(
    run_dir: str | Path,
    device: str | torch.device | None = None,
    *,
    checkpoint: str = "latest",
) -> tuple[nn.Module, Task, TrainConfig, dict[str, Any]]:
    """Rebuild ``(model, task, train config, checkpoint)`` from a run folder.

    ``run_dir`` may also be the path of a checkpoint file. ``checkpoint`` picks the run
    folder's ``"latest"`` (``checkpoint.pt``) or ``"best"`` (``best.pt``, the best
    held-out evaluation). The model is in eval mode, on ``device`` (the CPU when None).
    """
    if checkpoint not in CHECKPOINT_CHOICES:
        raise ValueError(
            f"unknown checkpoint {checkpoint!r}; valid: {', '.join(CHECKPOINT_CHOICES)}"
        )
    path = Path(run_dir)
    if not path.exists():
        raise FileNotFoundError(f"no run folder at {path}")
    if path.is_dir():
        checkpoint_path = path / CHECKPOINT_CHOICES[checkpoint]
        if checkpoint == "best" and not checkpoint_path.exists():
            raise FileNotFoundError(
                f"no {BEST_FILE} in {path}: runs trained before torchmem kept the best "
                f"evaluation have only {CHECKPOINT_FILE}"
            )
    elif checkpoint != "latest":
        raise ValueError(f"{path} is a checkpoint file; checkpoint={checkpoint!r} needs a folder")
    else:
        checkpoint_path = path
    checkpoint = load_checkpoint(checkpoint_path)
    config = build_config(TrainConfig, dict(checkpoint["train_config"]), "saved train")
    task = make_task(checkpoint["task_name"], **checkpoint["task_config"])
    model = model_from_config(checkpoint["model_name"], dict(checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model_state"])
    model.to(device or "cpu")
    model.eval()
    return model, task, config, checkpoint


def evaluate(
    source: str | Path | nn.Module,
    task: Task | str | None = None,
    *,
    length: int | None = None,
    batches: int = 4,
    batch_size: int = 64,
    seed: int | None = None,
    device: str | torch.device | None = None,
    checkpoint: str = "latest",
) -> dict[str, Any]:
    """Held-out metrics of a run folder (or a model on a task) at a forced sequence length.

    Args:
        source: a run folder (or checkpoint file), or a model.
        task: the task when ``source`` is a model (an instance or a registry name); must
            be None for a run folder, whose own task is used.
        length: forced sequence length / item count (``task.sample(..., length=L)``);
            None samples the training lengths.
        batches, batch_size: how much held-out data to score.
        seed: held-out data seed; None uses the run's own held-out seed (the data its
            training-time evaluations scored), or ``EVAL_SEED_OFFSET`` for a bare model.
        device: where to run a run folder's model (the CPU when None).
        checkpoint: a run folder's ``"latest"`` or ``"best"`` checkpoint (see
            :func:`load_run`).

    Returns:
        The task's metrics (``loss``, ``bit_errors_per_sequence``, ``sequence_accuracy``,
        ...) plus ``length``, ``model``, ``task``, ``step`` (None for a bare model),
        ``checkpoint`` (None for a bare model), ``batches``, ``batch_size`` and ``seed``.
    """
    step, which = None, None
    if isinstance(source, nn.Module):
        if task is None:
            raise ValueError("evaluate(model, ...) needs the task (an instance or a name)")
        model = source
        task_obj = make_task(task) if isinstance(task, str) else task
        seed = EVAL_SEED_OFFSET if seed is None else seed
    elif isinstance(source, (str, Path)):
        if task is not None:
            raise ValueError("evaluate(run_dir, ...) uses the run's own task; do not pass one")
        model, task_obj, config, saved = load_run(source, device=device, checkpoint=checkpoint)
        step, which = int(saved["step"]), checkpoint
        seed = eval_seed(config.seed) if seed is None else seed
    else:
        raise TypeError(f"evaluate expects a run folder or a model, got {type(source).__name__}")
    metrics = measure(
        model, task_obj, length=length, batches=batches, batch_size=batch_size, seed=seed
    )
    return {
        **metrics,
        "length": length,
        "model": model_name_of(model),
        "task": task_obj.name,
        "step": step,
        "checkpoint": which,
        "batches": batches,
        "batch_size": batch_size,
        "seed": seed,
    }


__all__ = [
    "BEST_FILE",
    "CHECKPOINT_CHOICES",
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "EVAL_SEED_OFFSET",
    "METRICS_FILE",
    "TrainConfig",
    "count_parameters",
    "eval_seed",
    "evaluate",
    "forward_with_losses",
    "is_better",
    "load_run",
    "make_optimizer",
    "make_train_config",
    "measure",
    "parse_assignments",
    "read_metrics",
    "saved_train_config",
    "settable_model_options",
    "split_overrides",
    "task_options",
    "train",
    "train_options",
]
