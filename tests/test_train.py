"""The training loop, run folders, exact resume, evaluation and checkpoint files."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from torchmem.tasks import make_task
from torchmem.train import (
    BEST_FILE,
    CheckpointError,
    TrainConfig,
    eval_seed,
    evaluate,
    load_checkpoint,
    load_run,
    make_optimizer,
    make_train_config,
    read_metrics,
    save_checkpoint,
    split_overrides,
    train,
)
from torchmem.train.checkpoint import FORMAT, FORMAT_VERSION, REQUIRED_KEYS
from torchmem.train.trainer import is_better

TINY_MEMORY = {"hidden_size": 16, "memory_slots": 8, "memory_width": 4}
TINY_TASK = {"bits": 4, "max_length": 3}


def tiny_config(model: str = "lstm", **fields) -> TrainConfig:
    options = {"hidden_size": 16} if model == "lstm" else dict(TINY_MEMORY)
    values = dict(
        model=model,
        task="copy",
        steps=4,
        batch_size=4,
        eval_every=2,
        eval_batches=1,
        eval_batch_size=4,
        checkpoint_every=0,
        log_every=2,
        model_options=options,
        task_options=dict(TINY_TASK),
    )
    values.update(fields)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("lstm_run")
    final = train(tiny_config("lstm"), run, quiet=True)
    return run, final


def test_resume_continues_bit_for_bit(tmp_path):
    whole = tiny_config("ntm", steps=6, eval_every=3, checkpoint_every=3)
    train(whole, tmp_path / "whole", quiet=True)
    train(dataclasses.replace(whole, steps=3), tmp_path / "split", quiet=True)
    halfway = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    train(whole, tmp_path / "split", resume=True, quiet=True)

    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert a["step"] == b["step"] == 6
    assert a["model_state"].keys() == b["model_state"].keys()
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    # The comparison is not vacuous: the last three steps did change the parameters.
    assert any(
        not torch.equal(value, halfway["model_state"][key])
        for key, value in a["model_state"].items()
    )
    for key in ("exp_avg", "exp_avg_sq"):
        for index, state in a["optimizer_state"]["state"].items():
            assert torch.equal(state[key], b["optimizer_state"]["state"][index][key])
    assert torch.equal(a["data_rng_state"], b["data_rng_state"])
    assert torch.equal(a["torch_rng_state"], b["torch_rng_state"])

    # The resumed part is logged into the same metrics.jsonl, after the first part.
    steps = [record["step"] for record in read_metrics(tmp_path / "split")]
    assert steps == [2, 3, 4, 6]
    whole_log = read_metrics(tmp_path / "whole")
    assert read_metrics(tmp_path / "split")[-1]["loss"] == whole_log[-1]["loss"]
    assert b["cpu_seconds"] >= halfway["cpu_seconds"] > 0


def test_resume_refuses_a_different_model_or_a_finished_run(tmp_path):
    config = tiny_config("lstm", steps=2)
    train(config, tmp_path, quiet=True)
    wider = dataclasses.replace(config, steps=4, model_options={"hidden_size": 32})
    with pytest.raises(ValueError, match="hidden_size: 16 != 32"):
        train(wider, tmp_path, resume=True, quiet=True)
    with pytest.raises(ValueError, match="already at step 2"):
        train(config, tmp_path, resume=True, quiet=True)


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    config = tiny_config("lstm", steps=1)
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        train(config, tmp_path / "empty", resume=True, quiet=True)
    train(config, tmp_path / "run", quiet=True)
    with pytest.raises(ValueError, match="already holds a run"):
        train(config, tmp_path / "run", quiet=True)
    train(config, tmp_path / "run", quiet=True, overwrite=True)
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1]


def test_metrics_log_and_resolved_config(lstm_run):
    run, final = lstm_run
    records = read_metrics(run)
    assert [r["step"] for r in records] == [2, 4]
    for record in records:
        for key in ("loss", "bit_errors_per_sequence", "sequence_accuracy", "grad_norm"):
            assert isinstance(record[key], float)
        assert record["eval_loss"] > 0 and record["eval_bit_errors_per_sequence"] >= 0
        assert record["wall_seconds"] > 0 and record["cpu_seconds"] > 0
    assert records[1]["cpu_seconds"] >= records[0]["cpu_seconds"]
    assert final == records[-1]

    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["steps"] == 4 and saved["train"]["model"] == "lstm"
    assert saved["model"]["config"]["hidden_size"] == 16
    assert saved["model"]["config"]["num_layers"] == 1  # defaults are resolved too
    task = make_task("copy", **TINY_TASK)
    assert saved["model"]["config"]["input_size"] == task.input_size
    assert saved["task"]["config"] == {"bits": 4, "min_length": 1, "max_length": 3}
    assert saved["model"]["parameters"] == sum(p.numel() for p in load_run(run)[0].parameters())


def test_held_out_data_is_not_training_data():
    task = make_task("copy", **TINY_TASK)
    train_batch = task.sample(8, torch.Generator().manual_seed(0), length=3)
    held_out = task.sample(8, torch.Generator().manual_seed(eval_seed(0)), length=3)
    assert not torch.equal(train_batch.inputs, held_out.inputs)


def test_evaluate_run_at_a_forced_longer_length(lstm_run):
    run, _ = lstm_run
    result = evaluate(run, length=7, batches=1, batch_size=4)
    assert result["length"] == 7 and result["step"] == 4
    assert result["model"] == "lstm" and result["task"] == "copy"
    assert 0 <= result["bit_errors_per_sequence"] <= 7 * TINY_TASK["bits"]
    assert 0.0 <= result["sequence_accuracy"] <= 1.0
    same = evaluate(run, length=7, batches=1, batch_size=4)
    assert same["loss"] == result["loss"]  # the held-out set is fixed by the seed


def test_evaluate_model_samples_the_forced_length(lstm_run):
    run, _ = lstm_run
    model, task, _, _ = load_run(run)
    seen = []

    class SpyTask:
        def __getattr__(self, name):
            return getattr(task, name)

        def sample(self, batch_size, generator=None, length=None):
            batch = task.sample(batch_size, generator=generator, length=length)
            seen.append((length, batch.inputs.shape[1]))
            return batch

    result = evaluate(model, SpyTask(), length=9, batches=2, batch_size=3)
    assert seen == [(9, 19), (9, 19)]  # copy: T = 2L + 1
    assert result["length"] == 9 and result["step"] is None and result["batch_size"] == 3


def test_load_run_rebuilds_the_trained_model(lstm_run):
    run, _ = lstm_run
    model, task, config, checkpoint = load_run(run)
    assert config.model == "lstm" and config.steps == 4 and task.config.max_length == 3
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, checkpoint["model_state"][key])
    batch = task.sample(2, torch.Generator().manual_seed(1))
    outputs, _ = model(batch.inputs)
    assert outputs.shape == batch.targets.shape


def test_checkpoint_round_trip(tmp_path):
    content = {key: f"value of {key}" for key in REQUIRED_KEYS if not key.startswith("format")}
    content["model_state"] = {"weight": torch.arange(6.0).view(2, 3)}
    content["data_rng_state"] = torch.Generator().manual_seed(3).get_state()
    path = save_checkpoint(content, tmp_path / "deep" / "c.pt")
    loaded = load_checkpoint(path)
    assert loaded["format"] == FORMAT and loaded["format_version"] == FORMAT_VERSION
    assert torch.equal(loaded["model_state"]["weight"], content["model_state"]["weight"])
    assert torch.equal(loaded["data_rng_state"], content["data_rng_state"])
    assert not (tmp_path / "deep" / "c.pt.partial").exists()
    with pytest.raises(ValueError, match="lacks required key"):
        save_checkpoint({"step": 1}, tmp_path / "bad.pt")


def test_corrupt_or_foreign_checkpoints_raise_clear_errors(tmp_path, lstm_run):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(missing)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="garbage.pt is not a valid torchmem checkpoint"):
        load_checkpoint(garbage)

    real = (lstm_run[0] / "checkpoint.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(real[: len(real) // 2])
    with pytest.raises(CheckpointError, match="not a valid torchmem checkpoint"):
        load_checkpoint(truncated)

    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(CheckpointError, match="state_dict"):  # says what it found
        load_checkpoint(foreign)

    partial = tmp_path / "partial.pt"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "step": 3}, partial)
    with pytest.raises(CheckpointError, match="missing key.*model_state"):
        load_checkpoint(partial)

    future = tmp_path / "future.pt"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION + 1}, future)
    with pytest.raises(CheckpointError, match="format version"):
        load_checkpoint(future)

    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(CheckpointError, match="Tensor, not a dict"):
        load_checkpoint(tensor)
    assert issubclass(CheckpointError, ValueError)
    with pytest.raises(FileNotFoundError, match="no run folder"):
        load_run(tmp_path / "no-such-run")


def test_split_overrides_routes_and_converts():
    model_opts, task_opts, train_opts = split_overrides(
        "ntm",
        "copy",
        {"hidden_size": "12", "task.bits": "5", "max_length": "4", "lr": "0.01", "train.seed": "3"},
    )
    assert model_opts == {"hidden_size": 12}
    assert task_opts == {"bits": 5, "max_length": 4}
    assert train_opts == {"lr": 0.01, "seed": 3}
    with pytest.raises(
        ValueError, match="unknown option 'bogus'.*memory_slots.*max_length.*batch_size"
    ):
        split_overrides("ntm", "copy", {"bogus": "1"})
    with pytest.raises(ValueError, match="unknown task option 'memory_slots'"):
        split_overrides("ntm", "copy", {"task.memory_slots": "1"})
    with pytest.raises(ValueError, match="set by the task"):
        split_overrides("ntm", "copy", {"input_size": "3"})
    with pytest.raises(ValueError, match="expects"):
        split_overrides("ntm", "copy", {"hidden_size": "wide"})


def test_make_train_config_on_top_of_a_saved_one():
    base = tiny_config("lstm")
    config = make_train_config(None, None, {"max_length": "5"}, base=base, steps=9, lr=None)
    assert config.model == "lstm" and config.steps == 9 and config.lr == base.lr
    assert config.task_options == {"bits": 4, "max_length": 5}
    assert config.model_options == {"hidden_size": 16}
    with pytest.raises(ValueError, match="trains model 'lstm', not 'dnc'"):
        make_train_config("dnc", None, {}, base=base)


def test_train_config_validation_and_optimizers():
    with pytest.raises(ValueError, match="valid optimizers: adam, rmsprop"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(
        ValueError,
        match="valid models: attention, dnc, fast-weights, hierarchical, hopfield, lstm, mann",
    ):
        TrainConfig(model="gru")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        TrainConfig(steps=0)
    parameters = [torch.nn.Parameter(torch.zeros(2))]
    rmsprop = make_optimizer("rmsprop", parameters, 1e-4)
    assert isinstance(rmsprop, torch.optim.RMSprop)
    assert rmsprop.param_groups[0]["momentum"] == 0.9 and rmsprop.param_groups[0]["lr"] == 1e-4


def test_rmsprop_training_runs_and_logs(tmp_path):
    final = train(tiny_config("lstm", steps=2, optimizer="rmsprop", lr=1e-4), tmp_path, quiet=True)
    assert final["step"] == 2 and "eval_sequence_accuracy" in final
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["train_config"]["optimizer"] == "rmsprop"
    assert "momentum_buffer" in next(iter(checkpoint["optimizer_state"]["state"].values()))


# ----------------------------------------------------------------------------------------
# best.pt: the best held-out evaluation
# ----------------------------------------------------------------------------------------


def _selection(record):
    return (record["eval_bit_errors_per_sequence"], record["eval_loss"])


def test_best_checkpoint_is_the_best_evaluation(tmp_path):
    config = tiny_config("ntm", steps=8, eval_every=1, log_every=1, lr=0.05)
    train(config, tmp_path, quiet=True)
    evaluations = [r for r in read_metrics(tmp_path) if "eval_loss" in r]
    assert [r["step"] for r in evaluations] == list(range(1, 9))
    winner = min(evaluations, key=lambda r: (*_selection(r), r["step"]))

    best = load_checkpoint(tmp_path / BEST_FILE)
    assert best["step"] == winner["step"] < 8  # lr 0.05 overshoots: the best is not the last
    chosen = {f"eval_{k}": winner[f"eval_{k}"] for k in ("bit_errors_per_sequence", "loss")}
    assert best["best"] == {"step": winner["step"], **chosen}
    # The latest checkpoint knows the best too, and best.pt holds that step's weights: scoring
    # it on the training held-out data gives back the logged evaluation.
    assert load_checkpoint(tmp_path / "checkpoint.pt")["best"] == best["best"]
    scored = evaluate(tmp_path, checkpoint="best", batches=1, batch_size=4)
    assert scored["checkpoint"] == "best" and scored["step"] == winner["step"]
    assert scored["loss"] == pytest.approx(winner["eval_loss"], rel=1e-6)
    assert scored["bit_errors_per_sequence"] == winner["eval_bit_errors_per_sequence"]
    latest = evaluate(tmp_path, batches=1, batch_size=4)
    assert latest["checkpoint"] == "latest" and latest["step"] == 8


def test_is_better_orders_bits_then_loss_and_never_picks_nan():
    best = {"step": 3, "eval_bit_errors_per_sequence": 1.0, "eval_loss": 0.5}
    assert is_better({"bit_errors_per_sequence": 2.0, "loss": 0.1}, None)
    assert is_better({"bit_errors_per_sequence": 0.5, "loss": 0.9}, best)
    assert is_better({"bit_errors_per_sequence": 1.0, "loss": 0.4}, best)
    assert not is_better({"bit_errors_per_sequence": 1.0, "loss": 0.5}, best)  # a tie: keep
    assert not is_better({"bit_errors_per_sequence": 1.5, "loss": 0.1}, best)
    assert not is_better({"bit_errors_per_sequence": float("nan"), "loss": 0.1}, None)
    assert not is_better({"bit_errors_per_sequence": 0.0, "loss": float("nan")}, best)


def test_best_checkpoint_survives_resume_bit_for_bit(tmp_path):
    whole = tiny_config("ntm", steps=6, eval_every=1, checkpoint_every=3, lr=0.05)
    train(whole, tmp_path / "whole", quiet=True)
    train(dataclasses.replace(whole, steps=3), tmp_path / "split", quiet=True)
    train(whole, tmp_path / "split", resume=True, quiet=True)
    a = load_checkpoint(tmp_path / "whole" / BEST_FILE)
    b = load_checkpoint(tmp_path / "split" / BEST_FILE)
    assert a["best"] == b["best"] and a["step"] == b["step"] < 3  # kept across the resume
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    # New bests add checkpoint saves but no log lines: the logs match line for line.
    assert read_metrics(tmp_path / "whole") == [
        {**r, "wall_seconds": w["wall_seconds"], "cpu_seconds": w["cpu_seconds"]}
        for r, w in zip(read_metrics(tmp_path / "split"), read_metrics(tmp_path / "whole"))
    ]


def test_resume_rewrites_a_best_checkpoint_lost_in_a_crash(tmp_path):
    config = tiny_config("lstm", steps=2, eval_every=1, lr=0.05)
    train(config, tmp_path, quiet=True)
    latest = load_checkpoint(tmp_path / "checkpoint.pt")
    # A crash between writing checkpoint.pt and best.pt: the latest checkpoint is the best.
    latest["best"] = {"step": 2, "eval_bit_errors_per_sequence": 0.0, "eval_loss": 0.0}
    save_checkpoint(latest, tmp_path / "checkpoint.pt")
    (tmp_path / BEST_FILE).unlink()
    train(dataclasses.replace(config, steps=3), tmp_path, resume=True, quiet=True)
    best = load_checkpoint(tmp_path / BEST_FILE)
    assert best["step"] == 2 and best["best"]["eval_loss"] == 0.0
    for key, value in latest["model_state"].items():
        assert torch.equal(value, best["model_state"][key]), key


def test_load_run_best_errors(tmp_path, lstm_run):
    run = lstm_run[0]
    with pytest.raises(ValueError, match="unknown checkpoint 'first'; valid: latest, best"):
        load_run(run, checkpoint="first")
    with pytest.raises(ValueError, match="is a checkpoint file"):
        load_run(run / "checkpoint.pt", checkpoint="best")
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes())
    with pytest.raises(FileNotFoundError, match="no best.pt in"):
        load_run(old, checkpoint="best")
    assert load_run(old)[3]["step"] == lstm_run[1]["step"]
