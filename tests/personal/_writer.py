"""A writer process for the crash and concurrency tests: adds messages, prints each
acknowledged one (``ack <index> <id>``) after ``add`` has returned."""

import sys

from torchmem.personal import PersonalMemory

WORDS = "amber birch cedar delta ember fjord grove harbor iris juniper kelp lumen".split()


def message(writer: int, index: int) -> str:
    a, b = WORDS[index % len(WORDS)], WORDS[(index // len(WORDS)) % len(WORDS)]
    return f"note {writer}-{index}: I keep {a} {b} {index * 7919 % 10007} {writer}"


CONFIG = {
    "store_threshold": 0.0,
    "stm_threshold": 0.0,
    "repeat_similarity": 0.9999,
    "subject_similarity": 0.9999,
    "recall_boost": 0.0,
}

if __name__ == "__main__":
    store, user, writer, count, snapshot_every = sys.argv[1:6]
    mem = PersonalMemory(store, user, config={**CONFIG, "snapshot_every": int(snapshot_every)})
    for index in range(int(count)):
        result = mem.add(message(int(writer), index), at=1_700_000_000.0 + index)
        assert result.stored, result
        print(f"ack {index} {result.id}", flush=True)
