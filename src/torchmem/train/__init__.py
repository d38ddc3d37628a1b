"""Training: one loop for any registered model on any registered task, run folders, checkpoints.

>>> from torchmem.train import TrainConfig, train, evaluate
>>> config = TrainConfig(model="lstm", task="copy", steps=200, task_options={"max_length": 5})
>>> final = train(config, "runs/lstm-copy")                      # doctest: +SKIP
>>> evaluate("runs/lstm-copy", length=10)["bit_errors_per_sequence"]  # doctest: +SKIP
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .trainer import (
    BEST_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    EVAL_SEED_OFFSET,
    METRICS_FILE,
    TrainConfig,
    count_parameters,
    eval_seed,
    evaluate,
    load_run,
    make_optimizer,
    make_train_config,
    measure,
    parse_assignments,
    read_metrics,
    saved_train_config,
    settable_model_options,
    split_overrides,
    task_options,
    train,
    train_options,
)

__all__ = [
    "BEST_FILE",
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "EVAL_SEED_OFFSET",
    "METRICS_FILE",
    "CheckpointError",
    "TrainConfig",
    "count_parameters",
    "eval_seed",
    "evaluate",
    "load_checkpoint",
    "load_run",
    "make_optimizer",
    "make_train_config",
    "measure",
    "parse_assignments",
    "read_metrics",
    "save_checkpoint",
    "saved_train_config",
    "settable_model_options",
    "split_overrides",
    "task_options",
    "train",
    "train_options",
]
