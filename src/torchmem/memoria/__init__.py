"""Memoria (arXiv:2310.03052): working, short-term and long-term engrams with Hebbian links.

A drop-in re-implementation of memoria-pytorch 1.1.0's public API, with the same names
and module layout: swap ``import memoria`` for ``import torchmem.memoria as memoria`` (or
``from torchmem.memoria import Memoria, EngramType``) and code written for the reference
runs unchanged, with the same results on the same inputs and seed. ``Memoria(...,
fix_reference_bugs=True)`` corrects the reference's bugs (listed on :class:`Memoria`).

Modules: :mod:`.memoria` (the memory), :mod:`.engram` (the engram store),
:mod:`.functional` (the maths as pure functions), :mod:`.history_manager` and
:mod:`.types` (engram analysis), :mod:`.abstractor` (the learned summariser), :mod:`.utils`.
The reference's ``SparseTensor`` helper, which Memoria itself does not use, is not provided.
"""

from . import functional, types, utils
from .abstractor import Abstractor
from .engram import Engrams, EngramType
from .history_manager import HistoryManager
from .memoria import Memoria

#: The memoria-pytorch release whose behaviour this package reproduces.
REFERENCE_VERSION = "1.1.0"

__all__ = [
    "utils",
    "types",
    "functional",
    "Abstractor",
    "Engrams",
    "EngramType",
    "HistoryManager",
    "Memoria",
    "REFERENCE_VERSION",
]
