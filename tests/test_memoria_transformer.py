"""Memoria Transformer and its two segment baselines: interface, equivalences, Memoria's
segment-boundary equations, gradients and errors."""

import pytest
import torch

import torchmem
from torchmem import MemoriaTransformer, SegmentTransformer, TransformerXL, detach_state
from torchmem.memoria import EngramType
from torchmem.models._decoder import (
    attend,
    causal_mask,
    rotary_tables,
    rotate_positions,
    segment_pieces,
)
from torchmem.registry import MODELS, make_model
from torchmem.state import state_tensors

DECODER = dict(hidden_size=8, num_heads=2, num_layers=2, ff_size=16, segment_length=3)
MEMORIA = dict(
    num_memories=2,
    stm_capacity=4,
    num_reminded_stm=2,
    num_reminded_ltm=3,
    ltm_search_depth=2,
    initial_lifespan=2,
    lifespan_extend_scale=2.0,
)
CASES = {
    "segment": (SegmentTransformer, {}),
    "xl": (TransformerXL, dict(memory_length=4)),
    "memoria": (MemoriaTransformer, MEMORIA),
}


def build(key, dtype=torch.float64, seed=0, **options):
    cls, extra = CASES[key]
    torch.manual_seed(seed)
    return cls(input_size=4, output_size=3, **{**DECODER, **extra, **options}).to(dtype)


def inputs(b=3, t=20, seed=1, dtype=torch.float64):
    return torch.randn(b, t, 4, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----------------------------------------------------------------------------------------
# The interface every torchmem sequence model honours
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", CASES)
def test_shapes_and_defaults(key):
    model = build(key, torch.float32)
    y, _ = model(inputs(t=7, dtype=torch.float32))
    assert y.shape == (3, 7, 3) and y.dtype == torch.float32
    y, _ = CASES[key][0](input_size=4, output_size=3)(torch.zeros(2, 5, 4))
    assert y.shape == (2, 5, 3)
    y, state = model(torch.zeros(2, 0, 4))
    assert y.shape == (2, 0, 3)


@pytest.mark.parametrize("key", CASES)
def test_whole_equals_chunks_equals_steps(key):
    """Splits inside and across segments, down to one token per call, give the same numbers."""
    model = build(key)
    x = inputs(t=20)
    whole, final = model(x)
    chunks, state = [], None
    for part in torch.split(x, [4, 1, 7, 2, 6], dim=1):
        y, state = model(part, state)
        chunks.append(y)
    steps, step_state = [], model.initial_state(3, dtype=torch.float64)
    for t in range(x.shape[1]):
        y, step_state = model(x[:, t : t + 1], step_state)
        steps.append(y)
    assert torch.allclose(torch.cat(chunks, 1), whole, atol=1e-12)
    assert torch.allclose(torch.cat(steps, 1), whole, atol=1e-12)
    for name, a in state_tensors(final).items():
        b = state_tensors(step_state)[name]
        assert a.shape == b.shape and torch.allclose(a.double(), b.double(), atol=1e-12), name


def test_memoria_forms_long_term_memory_in_the_equivalence_test():
    _, state = build("memoria")(inputs(t=20))
    types = set(state.engrams.types.unique().tolist())
    assert {EngramType.SHORTTERM.value, EngramType.LONGTERM.value} <= types


@pytest.mark.parametrize("key", CASES)
def test_batch_independence(key):
    # Memoria breaks ties between equally linked long-term engrams with one random draw for
    # the whole batch, so rows are independent only while there is no long-term memory.
    options = {"stm_capacity": 100} if key == "memoria" else {}
    model = build(key, **options)
    x = inputs()
    y, _ = model(x)
    x2 = x.clone()
    x2[1:] = torch.randn_like(x2[1:])
    y2, _ = model(x2)
    assert torch.allclose(y[0], y2[0], atol=1e-12)
    y_single, _ = model(x[:1])
    assert torch.allclose(y[0], y_single[0], atol=1e-12)


@pytest.mark.parametrize("key", CASES)
def test_state_is_not_kept_on_the_module_and_global_rng_untouched(key):
    model = build(key)
    x = inputs()
    rng = torch.get_rng_state()
    a, _ = model(x)
    assert torch.equal(torch.get_rng_state(), rng)
    model(inputs(seed=5))
    b, _ = model(x)
    assert torch.equal(a, b)


@pytest.mark.parametrize("key", CASES)
def test_initial_state_and_detach(key):
    model = build(key, torch.float32)
    state = model.initial_state(2, dtype=torch.float64)
    floats = [t for n, t in state_tensors(state).items() if not n.startswith("engrams")]
    assert all(t.shape[0] == 2 for t in state_tensors(state).values())
    assert all(t.dtype == torch.float64 for t in floats if t.is_floating_point())
    _, state = model(inputs(b=2, t=8, dtype=torch.float32))
    detached = detach_state(state)
    assert type(detached) is type(state)
    assert not any(t.requires_grad for t in state_tensors(detached).values())
    assert any(t.requires_grad for t in state_tensors(state).values())


@pytest.mark.parametrize("key", CASES)
def test_gradients_are_finite_from_zero_input(key):
    model = build(key, torch.float32)
    y, _ = model(torch.zeros(2, 10, 4))
    y.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_memoria_trains_the_abstractor_through_the_working_memory():
    model = build("memoria", torch.float32)
    y, _ = model(inputs(t=9, dtype=torch.float32))
    y[:, 6:].sum().backward()  # the third segment reads the working memory of the second
    grads = [p.grad for p in model.abstractor.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("key", CASES)
def test_grad_segments_gives_the_same_gradients(key):
    """Backpropagating only the last pieces is exact when the loss reads only them."""
    x = inputs(t=17)
    grads = []
    for window in (0, 2):
        model = build(key, grad_segments=window)
        y, _ = model(x)
        y[:, 13:].pow(2).sum().backward()  # steps 13..16: the last two pieces (S = 3)
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], atol=1e-12), name


# ----------------------------------------------------------------------------------------
# What crosses a segment boundary
# ----------------------------------------------------------------------------------------


def test_segment_transformer_forgets_at_each_boundary():
    model = build("segment")
    x = inputs(t=12)
    y, _ = model(x)
    x2 = x.clone()
    x2[:, :6] = torch.randn_like(x2[:, :6])  # change the first two segments
    y2, _ = model(x2)
    assert not torch.allclose(y[:, :6], y2[:, :6])
    assert torch.allclose(y[:, 6:], y2[:, 6:], atol=1e-12)


def test_transformer_xl_reach_grows_one_segment_per_layer():
    """With a one-segment cache, layer l of segment n reads segment n - l: two layers see
    two segments back, not three."""
    model = build("xl", memory_length=3)
    x = inputs(t=15)
    y, _ = model(x)
    x2 = x.clone()
    x2[:, :3] = torch.randn_like(x2[:, :3])  # change segment 0
    y2, _ = model(x2)
    assert not torch.allclose(y[:, 6:9], y2[:, 6:9])  # segment 2 still feels it
    assert torch.allclose(y[:, 9:], y2[:, 9:], atol=1e-12)  # segment 3 does not


def test_transformer_xl_without_cache_is_the_segment_transformer():
    xl, plain = build("xl", memory_length=0), build("segment")
    plain.load_state_dict(xl.state_dict())
    x = inputs(t=11)
    assert torch.allclose(xl(x)[0], plain(x)[0], atol=1e-12)


def test_memoria_first_segment_is_a_plain_transformer():
    """No memory yet: the cross-attentions read nothing and add nothing."""
    memoria, plain = build("memoria"), build("segment")
    plain.load_state_dict(
        {k: v for k, v in memoria.state_dict().items() if k in plain.state_dict()}
    )
    x = inputs(t=7)
    a, b = memoria(x)[0], plain(x)[0]
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-12)
    assert not torch.allclose(a[:, 3:6], b[:, 3:6])


def test_memoria_working_memory_is_the_abstract_of_the_previous_segment():
    model = build("memoria")
    x = inputs(t=4)
    _, after_one = model(x[:, :3])  # segment 0 complete: its hidden states are kept
    assert after_one.hidden.shape == (3, 3, 8)
    _, state = model(x[:, 3:4], after_one)  # opens segment 1
    expected = model.abstractor(after_one.hidden)
    assert torch.allclose(state.working_memory, expected, atol=1e-12)
    working = state.engrams.types == EngramType.WORKING.value
    stored = state.engrams.data[working].view(3, 2, 8)
    assert torch.allclose(stored.double(), expected.float().double())
    assert torch.equal(state.engrams.lifespan[working], torch.full((6,), 2.0))


def test_memoria_lifespan_update_equation():
    """At a segment's end every reminded engram gains a_i * R_b * scale (a_i: attention it got,
    averaged over layers, heads and tokens), then every engram loses 1."""
    model = build("memoria", initial_lifespan=10)  # long lives: nothing is forgotten
    x = inputs(t=12)
    _, before = model(x[:, :11])  # inside segment 3, which reminded short-term engrams
    _, after = model(x[:, 11:12], before)  # closes it
    indices, sums = after.reminded_indices, after.attention_sums
    real = indices >= 0
    assert real.any()
    reads = 2 * 2 * 3  # layers * heads * tokens
    # each token's attention over the real reminded engrams sums to 1, per layer and head
    has_memory = real.any(dim=1)
    assert torch.allclose(sums.sum(1)[has_memory], torch.full_like(sums.sum(1), reads)[has_memory])
    delta = sums / reads * real.sum(1, keepdim=True) * 2.0
    expected = before.engrams.lifespan.clone().double()
    for b in range(3):
        for slot, gain in zip(indices[b].tolist(), delta[b].tolist()):
            if slot >= 0:
                expected[b, slot] += gain
    expected -= 1
    assert torch.allclose(after.engrams.lifespan.double(), expected, atol=1e-5)
    # working memory became short-term memory
    assert not (after.engrams.types == EngramType.WORKING.value).any()


# ----------------------------------------------------------------------------------------
# The shared maths
# ----------------------------------------------------------------------------------------


def test_segment_pieces():
    assert segment_pieces(0, 7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert segment_pieces(2, 5, 3) == [(0, 1), (1, 4), (4, 5)]
    assert segment_pieces(1, 0, 3) == []


def test_causal_mask():
    mask = causal_mask(2, 3, torch.device("cpu"))
    assert mask.tolist() == [
        [True, True, True, False, False],
        [True, True, True, True, False],
        [True, True, True, True, True],
    ]


def test_rotary_positions_are_relative():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(6, dtype=torch.float64, generator=g), torch.randn(6, generator=g).double()

    def score(m, n):
        positions = torch.tensor([m, n])
        cos, sin = rotary_tables(positions, 6, torch.float64)
        rotated = rotate_positions(torch.stack([q, k]), cos, sin)
        return rotated[0] @ rotated[1]

    assert torch.allclose(score(5, 2), score(-1, -4), atol=1e-12)
    assert torch.allclose(score(0, 0), q @ k, atol=1e-12)
    assert not torch.allclose(score(5, 2), score(2, 5))


def test_attend_matches_the_equation_and_zeroes_empty_rows():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 2, 4, generator=g, dtype=torch.float64) for _ in range(3))
    allowed = torch.tensor([[True, False], [False, False]])
    out, weights = attend(q, k, v, allowed, need_weights=True)
    assert torch.allclose(weights[0, 0, 0], torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert torch.allclose(out[0, 0, 0], v[0, 0, 0])
    assert torch.equal(out[0, 0, 1], torch.zeros(4, dtype=torch.float64))
    assert torch.equal(weights[0, 0, 1], torch.zeros(2, dtype=torch.float64))
    full, w = attend(q, k, v, None, need_weights=True)
    expected = (q @ k.transpose(-2, -1) / 2.0).softmax(-1)
    assert torch.allclose(w, expected) and torch.allclose(full, expected @ v)
    fast, _ = attend(q, k, v, None)
    assert torch.allclose(fast, full, atol=1e-12)
    q.requires_grad_()
    attend(q, k, v, allowed, need_weights=True)[0].sum().backward()
    assert torch.isfinite(q.grad).all()


# ----------------------------------------------------------------------------------------
# Errors and registry
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", CASES)
def test_bad_input_errors(key):
    model = build(key, torch.float32)
    name = type(model).__name__
    with pytest.raises(ValueError, match=r"input_size=4.*last dimension 5"):
        model(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match=r"\(B, T, 4\).*2-d"):
        model(torch.zeros(2, 4))
    with pytest.raises(TypeError, match="floating-point.*int64"):
        model(torch.zeros(2, 3, 4, dtype=torch.long))
    bad = torch.zeros(2, 3, 4)
    bad[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match=f"{name} got an input with 1 NaN"):
        model(bad)
    _, state = model(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="batch of"):
        model(torch.zeros(3, 2, 4), state)


def test_bad_options_and_foreign_state():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        SegmentTransformer(4, 3, hidden_size=10, num_heads=4)
    with pytest.raises(ValueError, match="even head width"):
        SegmentTransformer(4, 3, hidden_size=12, num_heads=4)
    with pytest.raises(ValueError, match="segment_length must be >= 1"):
        TransformerXL(4, 3, segment_length=0)
    with pytest.raises(ValueError, match="memory_length must be >= 0"):
        TransformerXL(4, 3, memory_length=-1)
    with pytest.raises(ValueError, match="num_memories must be >= 1"):
        MemoriaTransformer(4, 3, num_memories=0)
    with pytest.raises(ValueError, match="lifespan_extend_scale"):
        MemoriaTransformer(4, 3, lifespan_extend_scale=float("nan"))
    with pytest.raises(ValueError, match="valid options:.*segment_length"):
        SegmentTransformer(4, 3, segment_len=4)
    xl, plain = build("xl"), build("segment")
    _, state = xl(inputs(t=7))
    with pytest.raises(ValueError, match="another model or config"):
        plain(inputs(t=2), state)


def test_registry_names_and_rebuild():
    for name, cls in (
        ("memoria-transformer", MemoriaTransformer),
        ("segment-transformer", SegmentTransformer),
        ("transformer-xl", TransformerXL),
    ):
        assert MODELS[name].model_class is cls
        model = make_model(name, 5, 4, segment_length="8")
        assert model.config.segment_length == 8
        assert type(model).from_config(model.config).config == model.config
        assert hasattr(torchmem, cls.__name__)
