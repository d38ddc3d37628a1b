"""The seed's expected behaviour, end to end: ``torchmem memory demo``.

Over a simulated 300 days (``at=`` timestamps, no waiting) one user's memory

1. learns "I like visuals" and reinforces it when it is said again instead of duplicating;
2. ignores "Hi", "Okay" and "lol";
3. lets an unused memory ("I work night shifts") fade below the retrieval threshold and
   removes it;
4. retrieves the right preference when asked later, and the current one of a changed
   preference ("favourite drink is coffee", not "tea").

Each step is checked; :func:`run_demo` returns the failed checks (none when the
behaviour is as described).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from .memory import PersonalMemory

DAY = 86400.0
START = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def run_demo(
    store_dir: str | Path | None = None,
    encoder: str = "hash",
    say: Callable[[str], None] = print,
) -> list[str]:
    """Play the demo; print what happens with ``say``; return the failed checks."""
    failed: list[str] = []

    def check(ok: bool, what: str) -> None:
        say(f"  [{'ok' if ok else 'FAILED'}] {what}")
        if not ok:
            failed.append(what)

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(store_dir) if store_dir is not None else Path(scratch)
        mem = PersonalMemory(root, "demo-user", encoder=encoder)
        mem.forget()  # start clean when an earlier demo left this user behind
        mem = PersonalMemory(root, "demo-user", encoder=encoder)
        say(f"Personal memory demo ({encoder} encoder, store {root / 'demo-user'})")

        def add(text: str, day: float):
            result = mem.add(text, at=START + day * DAY)
            say(
                f"day {day:5.1f}  add {text!r:36} -> {result.action} "
                f"(importance {result.importance:.2f})"
            )
            return result

        say("\n1. It learns preferences and ignores noise")
        hi = add("Hi", 0)
        visuals = add("I like visuals", 0.01)
        okay = add("Okay", 0.02)
        night = add("I work night shifts", 0.03)
        lol = add("lol", 0.04)
        check(not hi.stored and not okay.stored and not lol.stored, 'ignores "Hi", "Okay", "lol"')
        check(visuals.stored and night.stored, "stores the preference and the fact")

        say("\n2. Said again, a preference is reinforced, not duplicated")
        again = add("I like visuals!", 3)
        check(again.action == "reinforced" and again.id == visuals.id, "one memory, count 2")

        say("\n3. A changed preference supersedes the old one")
        tea = add("My favourite drink is tea", 5)
        coffee = add("My favourite drink is coffee", 40)
        check(coffee.superseded == (tea.id,), "coffee supersedes tea (tea kept as history)")

        say("\n4. Months pass; the preferences are used, the night shifts never")
        for day in range(20, 160, 20):
            mem.search("visuals", k=1, at=START + day * DAY)
            if day > 40:
                mem.search("favourite drink", k=1, at=START + day * DAY)
        when = START + 160 * DAY
        for memory in mem.list(at=when):
            say(f"  day 160  strength {memory['current_strength']:.3f}  {memory['text']}")
        night_now = mem.get(night.id, at=when)["current_strength"]
        check(
            night_now < mem.config.retrieve_threshold,
            f"the unused memory faded below the retrieval threshold ({night_now:.3f})",
        )

        say("\n5. Asked later, it retrieves the right preference")
        for query in ("Does the user like visuals?", "What is my favourite drink?"):
            hits = mem.search(query, k=3, at=when)
            shown = ", ".join(f"{h.text!r} ({h.score:.2f})" for h in hits) or "nothing"
            say(f"  search {query!r}: {shown}")
        check(bool(hits) and hits[0].id == coffee.id, "the current drink comes first")
        check(all(h.id != tea.id for h in hits), "the stale drink is not retrieved")
        visual_hits = mem.search("Does the user like visuals?", k=3, at=when)
        check(
            bool(visual_hits) and visual_hits[0].id == visuals.id,
            "the visuals preference comes first",
        )
        prompt = mem.build_prompt("What does the user like?", k=5, token_budget=60, at=when)
        say("  system-prompt block for 'What does the user like?':")
        say("\n".join("    " + line for line in prompt.splitlines()))
        check("- I like visuals" in prompt.splitlines(), "the prompt block carries the preference")

        say("\n6. Stale memories are removed")
        removed = mem.forget_stale(at=START + 300 * DAY)
        check(night.id in removed, "the night-shift memory was removed at day 300")
        mem.close()
    say(f"\n{'all checks passed' if not failed else f'{len(failed)} check(s) FAILED'}")
    return failed


__all__ = ["run_demo"]
