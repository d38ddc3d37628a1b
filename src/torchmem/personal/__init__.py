"""A personal long-term memory for LLM applications: learns preferences, forgets what goes
stale, no database.

>>> from torchmem.personal import PersonalMemory
>>> mem = PersonalMemory("memories", "alice")                      # doctest: +SKIP
>>> mem.add("I prefer visual explanations").stored                 # doctest: +SKIP
True
>>> mem.add("Hi").stored                                           # doctest: +SKIP
False
>>> mem.search("how should I explain this?")[0].text               # doctest: +SKIP
'I prefer visual explanations'

Modules: :mod:`.memory` (the wiring and the verbs), :mod:`.functional` (the maths),
:mod:`.encoders`, :mod:`.signals`, :mod:`.gate` and :mod:`.gate_training` (the write gate
and the script that trained its shipped weights), :mod:`.messages` (its generated data),
:mod:`.table` (rows and events) and :mod:`.store` (files, log, snapshots, lock).
"""

from .encoders import ENCODERS, Encoder, HashEncoder, MiniLMEncoder, make_encoder
from .memory import AddResult, Hit, PersonalMemory, PersonalMemoryConfig
from .store import StoreError

__all__ = [
    "ENCODERS",
    "AddResult",
    "Encoder",
    "HashEncoder",
    "Hit",
    "MiniLMEncoder",
    "PersonalMemory",
    "PersonalMemoryConfig",
    "StoreError",
    "make_encoder",
]
