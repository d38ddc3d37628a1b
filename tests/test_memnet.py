"""MemNet: its memory bank, synthesizer, transformer controller, the model's interface
contract, the Fire -> Smoke property, and the trainer's auxiliary-loss hook."""

import math

import pytest
import torch

from torchmem import MemNet, MemNetState, detach_state
from torchmem.core.policies import POLICIES
from torchmem.memories.memnet_memory import (
    MemorySynthesizer,
    MultiHeadMemoryBank,
    ReadInterface,
    WriteInterface,
)
from torchmem.models.transformer_controller import TransformerController
from torchmem.registry import MODELS, make_model
from torchmem.state import map_state, state_tensors
from torchmem.train import TrainConfig, read_metrics, train
from torchmem.train.trainer import forward_with_losses

F64 = torch.float64
SMALL = dict(
    hidden_size=8, controller_layers=2, controller_heads=2, controller_window=3,
    memory_slots=6, memory_width=4, read_heads=2, write_heads=2, bottleneck_size=3,
    top_k=2, dream_every=3, dream_heads=2,
)  # fmt: skip


def build(dtype=F64, seed=0, **options):
    torch.manual_seed(seed)
    model = MemNet(input_size=4, output_size=3, **{**SMALL, **options}).to(dtype)
    with torch.no_grad():  # an untrained synthesizer is the identity: make dreaming visible
        model.synthesizer.attention_gate.fill_(0.5)
        model.synthesizer.mlp_gate.fill_(0.5)
    return model


def inputs(b=3, t=6, seed=1, dtype=F64):
    return torch.randn(b, t, 4, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def start(model, b=3, seed=0):
    return model.initial_state(b, dtype=F64, generator=torch.Generator().manual_seed(seed))


# -- the Fire -> Smoke property ------------------------------------------------------------


def _read_sequence(alpha, slots):
    """Read the given slots one after the other with sharp top-1 reads and no writes."""
    n = w = 6
    bank = MultiHeadMemoryBank(
        4, n, w, 1, 1, 2, POLICIES, top_k=1, hebbian_rate=0.5, hebbian_decay=0.02,
        spread_alpha=alpha,
    ).to(F64)  # fmt: skip
    q, _ = torch.linalg.qr(torch.randn(w, w, generator=torch.Generator().manual_seed(0), dtype=F64))
    state = bank.initial_state(1, dtype=F64)._replace(memory=q.unsqueeze(0))
    zeros = torch.zeros(1, 1, dtype=F64)
    no_write = WriteInterface(
        torch.zeros(1, 1, w, dtype=F64), zeros + 1, zeros, zeros + 1, zeros,
        torch.zeros(1, 1, w, dtype=F64), torch.zeros(1, 1, w, dtype=F64),
    )  # fmt: skip
    top_k_only = torch.tensor([[[1.0, 0.0, 0.0]]], dtype=F64)
    for slot in slots:
        query = ReadInterface(
            q[slot].view(1, 1, w), torch.full((1, 1), 20.0, dtype=F64), top_k_only
        )
        state = bank.update(query, no_write, state)
    return state, q


def test_fire_then_smoke_makes_fire_activate_smoke():
    fire, smoke = 1, 4
    margins = {}
    for alpha in (0.0, 0.3):
        state, memory = _read_sequence(alpha, [fire, smoke, fire])  # read A, B; query A
        weight_on_smoke = state.read_weights[0, 0, smoke].item()
        read = state.read_vectors[0, 0]
        similarity = (read @ memory[smoke] / read.norm()).item()  # memory rows have norm 1
        margins[alpha] = (weight_on_smoke, similarity)
        assert torch.equal(state.memory[0], memory)  # nothing was written
        assert state.base_read_weights[0, 0, smoke] == 0  # the query itself ignores Smoke
    weight_margin = margins[0.3][0] - margins[0.0][0]
    similarity_margin = margins[0.3][1] - margins[0.0][1]
    print(f"Fire->Smoke: W_final(smoke) {margins[0.0][0]:.3f} at alpha=0 vs "
          f"{margins[0.3][0]:.3f} at alpha=0.3 (margin {weight_margin:.3f}); cos(r, Smoke) "
          f"{margins[0.0][1]:.3f} vs {margins[0.3][1]:.3f}")  # fmt: skip
    # One co-activation made the edge Fire -> Smoke eta = 0.5, so the query for Fire gives
    # Smoke alpha * eta = 0.15 of the read (the spread uses the graph of the step before).
    assert margins[0.0][0] == 0.0 and weight_margin == pytest.approx(0.15, abs=1e-9)
    assert similarity_margin > 0.15
    # the link is directed: after Fire, Smoke; a query for Smoke does not activate Fire
    state, _ = _read_sequence(0.3, [fire, smoke, smoke])
    assert state.read_weights[0, 0, fire] == 0


# -- the parts -----------------------------------------------------------------------------


def _reference_controller(controller, x):
    """The same transformer run over a whole sequence with a sliding-window causal mask."""
    h = controller.input(x)
    b, t, d = h.shape
    k, c = controller.heads, controller.window
    offset = torch.arange(t).view(-1, 1) - torch.arange(t).view(1, -1)  # t - j
    allowed = (offset >= 0) & (offset <= c)
    for layer, block in enumerate(controller.blocks):
        q, key, value = block.qkv(block.attention_norm(h)).split(d, dim=-1)
        q, key, value = (z.view(b, t, k, d // k).transpose(1, 2) for z in (q, key, value))
        scores = q @ key.transpose(-1, -2) / math.sqrt(d // k)
        scores = scores + controller.position_bias[layer][:, (c - offset).clamp(0, c)]
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        h = h + block.attention_out((weights @ value).transpose(1, 2).reshape(b, t, d))
        h = h + block.mlp(block.mlp_norm(h))
    return controller.norm(h)


@pytest.mark.parametrize("window", [0, 3])
def test_transformer_controller_is_a_sliding_window_transformer(window):
    torch.manual_seed(0)
    controller = TransformerController(5, 8, layers=2, heads=2, window=window).to(F64)
    with torch.no_grad():
        controller.position_bias.normal_()
    x = inputs(b=2, t=7).repeat(1, 1, 2)[..., :5]
    state, outputs = controller.initial_state(2, dtype=F64), []
    for step in range(7):
        hidden, state = controller.step(x[:, step], state)
        outputs.append(hidden)
    assert torch.allclose(torch.stack(outputs, 1), _reference_controller(controller, x), atol=1e-12)
    assert state.keys.shape == (2, 2, window, 8) and state.valid.shape == (2, window)


def test_synthesizer_refines_equivariantly_and_merges_duplicates():
    torch.manual_seed(0)
    synth = MemorySynthesizer(6, heads=2, merge_threshold=0.9).to(F64)
    memory = torch.randn(2, 5, 6, dtype=F64)
    assert torch.equal(synth.refine(memory), memory)  # untrained: the identity
    with torch.no_grad():
        synth.attention_gate.fill_(0.7)
        synth.mlp_gate.fill_(0.3)
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert torch.allclose(synth.refine(memory)[:, perm], synth.refine(memory[:, perm]))
    # two identical slots: dreaming leaves one copy and frees the other
    memory[:, 3] = memory[:, 1]
    ages, adjacency = torch.rand(2, 5, dtype=F64), torch.zeros(2, 5, 5, dtype=F64)
    out = synth(memory, ages, adjacency)
    refined = synth.refine(memory)
    assert torch.allclose(out.freed[:, 3], torch.ones(2, dtype=F64))
    assert torch.allclose(out.memory[:, 3], torch.zeros(2, 6, dtype=F64))
    assert torch.allclose(out.memory[:, 1], refined[:, 1])  # identical copies refine alike
    assert (out.ages[:, 3] > out.ages[:, [0, 1, 2, 4]].max(-1).values).all()
    off = MemorySynthesizer(6, heads=2, merge_threshold=1.0).to(F64)
    assert torch.equal(off(memory, ages, adjacency).memory, memory)
    with pytest.raises(ValueError, match="dream heads"):
        MemorySynthesizer(6, heads=4)


# -- the model's interface contract ------------------------------------------------------


def test_shapes_defaults_and_registry():
    model = build(torch.float32)
    y, state = model(inputs(dtype=torch.float32))
    assert y.shape == (3, 6, 3) and y.dtype == torch.float32
    b, n, w, r, v = 3, 6, 4, 2, 2
    expected = {
        "memory": (b, n, w), "ages": (b, n), "adjacency": (b, n, n), "activity": (b, n),
        "read_weights": (b, r, n), "base_read_weights": (b, r, n), "policy_weights": (b, r, 3),
        "write_weights": (b, v, n), "read_vectors": (b, r, w), "steps": (b,), "noise_key": (b,),
    }  # fmt: skip
    for name, shape in expected.items():
        assert getattr(state, name).shape == shape, name
    assert state.steps.tolist() == [6, 6, 6]
    y, _ = MemNet(input_size=4, output_size=3)(torch.zeros(2, 3, 4))
    assert y.shape == (2, 3, 3)
    assert MODELS["memnet"].model_class is MemNet
    model = make_model("memnet", 4, 3, policies="topk,random", memory_slots="9")
    assert model.config.memory_slots == 9 and model.memory.policies == ("topk", "random")
    assert type(model).from_config(model.config).config == model.config


def test_whole_equals_chunks_equals_steps_with_noise_and_dreaming():
    model = build()
    assert model.training and model.memory.uses_noise
    x = inputs(t=8)
    s0 = start(model)
    whole, final = model(x, s0)
    chunks, state = [], s0
    for part in torch.split(x, [3, 1, 4], dim=1):
        y, state = model(part, state)
        chunks.append(y)
    steps, step_state = [], s0
    for t in range(x.shape[1]):
        y, step_state = model(x[:, t : t + 1], step_state)
        steps.append(y)
    assert torch.allclose(torch.cat(chunks, 1), whole, atol=1e-12)
    assert torch.allclose(torch.cat(steps, 1), whole, atol=1e-12)
    for (name, a), b in zip(state_tensors(final).items(), state_tensors(step_state).values()):
        assert torch.allclose(a, b, atol=1e-12) if a.is_floating_point() else torch.equal(a, b), (
            name
        )
    # the comparison is not vacuous: dreaming and the noise both change the outputs
    assert not torch.allclose(build(dream_every=0)(x, s0)[0], whole)
    assert not torch.allclose(model(x, start(model, seed=7))[0], whole)


def test_eval_mode_is_deterministic_without_noise():
    model = build().eval()
    x = inputs()
    a, _ = model(x)
    model(inputs(seed=5))
    b, _ = model(x)
    assert torch.equal(a, b)
    c, _ = model(x, start(model, seed=9))  # the noise keys do not matter in eval mode
    assert torch.equal(a, c)
    train_model = build()
    torch.manual_seed(3)
    d, _ = train_model(x)
    torch.manual_seed(3)
    e, _ = train_model(x)
    assert torch.equal(d, e)  # training mode: reproducible from torch's seed


def test_batch_independence_even_with_different_step_counters():
    model = build()
    x, s0 = inputs(t=7), start(model)
    s0 = s0._replace(steps=torch.tensor([0, 1, 2]))  # the examples dream at different steps
    y, _ = model(x, s0)
    x2 = x.clone()
    x2[1:] = torch.randn_like(x2[1:])
    assert torch.allclose(model(x2, s0)[0][0], y[0], atol=1e-12)
    for i in range(3):
        alone = map_state(lambda t, i=i: t[i : i + 1], s0)
        assert torch.allclose(model(x[i : i + 1], alone)[0][0], y[i], atol=1e-12), i


def test_state_invariants_over_time():
    model = build()
    x, state = inputs(t=10), start(model)
    for t in range(10):
        _, state = model(x[:, t : t + 1], state)
        for w in (state.read_weights, state.write_weights):
            assert (w >= 0).all() and (w.sum(-1) <= 1 + 1e-9).all()
        for w in (state.base_read_weights, state.policy_weights):
            assert (w >= 0).all() and torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)))
        a = state.adjacency
        assert (a >= 0).all() and (a.sum(-1) <= 1 + 1e-9).all()
        assert torch.equal(torch.diagonal(a, dim1=1, dim2=2), torch.zeros(3, 6, dtype=F64))
        assert (state.ages >= 0).all()
    assert state.adjacency.sum() > 0  # the graph did learn edges
    _, trace = model.trace(x, start(model))
    assert trace["read_weights"].shape == (3, 10, 2, 6) and trace["ages"].shape == (3, 10, 6)
    assert trace["reconstruction"].shape == x.shape


def test_initial_state_detach_and_dream_on_demand():
    model = build(torch.float32)
    state = model.initial_state(2, dtype=F64)
    floats = [t for t in state_tensors(state).values() if t.is_floating_point()]
    assert all(t.dtype == F64 and t.shape[0] == 2 for t in floats)
    assert state.steps.dtype == state.noise_key.dtype == torch.int64
    _, state = model(inputs(b=2, dtype=torch.float32))
    detached = detach_state(state)
    assert type(detached) is MemNetState and type(detached.controller) is type(state.controller)
    assert not any(t.requires_grad for t in state_tensors(detached).values())
    dreamed = model.dream(detached)
    assert not torch.equal(dreamed.memory, detached.memory)
    assert torch.equal(dreamed.read_vectors, detached.read_vectors)


def test_finite_gradients_from_an_all_zero_memory():
    model = build(torch.float32)
    y, _, terms = model.forward_with_losses(torch.zeros(2, 7, 4))
    assert set(terms) == {"reconstruction", "utilization", "sparsity"}
    (y.sum() + sum(term.weight * term.value for term in terms.values())).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.reconstruction[0].weight.grad.abs().sum() > 0


def test_gradcheck_through_the_model():
    model = build(dream_every=2)
    x = inputs(b=1, t=3).requires_grad_()
    s0 = start(model, b=1)
    assert torch.autograd.gradcheck(lambda v: model(v, s0)[0], (x,))


def test_bad_input_and_config_errors():
    model = build(torch.float32)
    with pytest.raises(ValueError, match=r"input_size=4.*last dimension 5"):
        model(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match=r"\(B, T, 4\).*2-d"):
        model(torch.zeros(2, 4))
    with pytest.raises(TypeError, match="floating-point.*int64"):
        model(torch.zeros(2, 3, 4, dtype=torch.long))
    bad = torch.zeros(2, 3, 4)
    bad[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="MemNet got an input with 1 NaN"):
        model(bad)
    for options, message in [
        ({"policies": "topk,greedy"}, "policies must be distinct names from topk,uniform,random"),
        ({"policies": "topk,topk"}, "policies must be distinct"),
        ({"controller_heads": 3}, r"controller_heads \(3\) must divide hidden_size"),
        ({"dream_heads": 3}, r"dream_heads \(3\) must divide memory_width"),
        ({"spread_alpha": 1.5}, r"spread_alpha must be in \[0, 1\]"),
        ({"hebbian_activity": "both-ways"}, "valid: read, write, both"),
        ({"memory_slots": 0}, "memory_slots must be >= 1"),
        ({"dream_every": -1}, "dream_every must be >= 0"),
        ({"memroy_slots": 3}, "valid options:.*memory_slots"),
    ]:
        with pytest.raises(ValueError, match=message):
            MemNet(4, 3, **options)


# -- the trainer's auxiliary-loss hook ------------------------------------------------------


def test_trainer_adds_and_logs_each_auxiliary_term(tmp_path):
    config = TrainConfig(
        model="memnet", task="copy", steps=2, batch_size=2, eval_every=0, eval_batches=1,
        eval_batch_size=2, checkpoint_every=0, log_every=1,
        model_options={**SMALL, "reconstruction_weight": 0.5, "sparsity_weight": 0.25},
        task_options={"bits": 4, "max_length": 3},
    )  # fmt: skip
    train(config, tmp_path, quiet=True)
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2]
    weights = {"reconstruction": 0.5, "utilization": 0.01, "sparsity": 0.25}
    for record in records:
        for name in weights:
            assert math.isfinite(record[f"loss_{name}"]) and record[f"loss_{name}"] >= 0
        total = record["loss"] + sum(w * record[f"loss_{name}"] for name, w in weights.items())
        assert record["loss_total"] == pytest.approx(total, rel=1e-6)
    # a model without auxiliary terms is called as before and has none
    lstm = make_model("lstm", 4, 3)
    outputs, terms = forward_with_losses(lstm, torch.zeros(2, 5, 4))
    assert outputs.shape == (2, 5, 3) and terms == {}


def test_memnet_run_resumes_bit_for_bit(tmp_path):
    """The noise keys come from torch's global generator, which the checkpoint carries."""
    from torchmem.train import load_checkpoint

    config = TrainConfig(
        model="memnet", task="copy", steps=4, batch_size=2, eval_every=2, eval_batches=1,
        eval_batch_size=2, checkpoint_every=2, log_every=2, model_options=dict(SMALL),
        task_options={"bits": 4, "max_length": 3},
    )  # fmt: skip
    train(config, tmp_path / "whole", quiet=True)
    train(TrainConfig(**{**config.to_dict(), "steps": 2}), tmp_path / "split", quiet=True)
    train(config, tmp_path / "split", resume=True, quiet=True)
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model_state"]
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")["model_state"]
    for key, value in a.items():
        assert torch.equal(value, b[key]), key
    whole, split = read_metrics(tmp_path / "whole")[-1], read_metrics(tmp_path / "split")[-1]
    for key in ("loss", "loss_total", "loss_reconstruction", "eval_loss"):
        assert whole[key] == split[key], key
