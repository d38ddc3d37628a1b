"""A generated preference-drift data set: preferences stated, repeated, changed, buried
under chit-chat, and queried later.

Each simulated user talks over ``days`` days. For a handful of subjects (drink,
explanation style, editor, ...) the user states a value, may say it again in other words,
and may later change it ("I've switched to coffee"); chit-chat and questions about the
world come in between. At the end every subject is queried. The phrasings here are not
the write gate's training templates (:mod:`.messages`), so the gate meets them for the
first time.

Each message is ``{"user", "t", "text", "kind"}`` with ``kind`` ``"signal"`` (a statement
of ``subject`` = ``value``) or ``"noise"``; each query ``{"user", "t", "text", "subject",
"current", "stale"}`` (the current value and the values it replaced).
"""

from __future__ import annotations

import random

# subject -> (values, statement templates, query templates). Values of one subject never
# contain one another, so a memory's text names exactly one of them.
SUBJECTS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "drink": (
        ["espresso", "rooibos", "matcha", "lemonade", "hot chocolate", "kombucha"],
        [
            "My favourite drink is {v}",
            "These days I mostly drink {v}",
            "I've switched to {v} now",
            "I always order {v} in cafes",
        ],
        ["What does the user like to drink?", "Which drink should I suggest?"],
    ),
    "style": (
        ["diagrams", "bullet points", "worked examples", "short summaries", "analogies"],
        [
            "I understand things best with {v}",
            "Please explain things to me with {v}",
            "I prefer answers built around {v}",
            "Explanations with {v} work best for me",
        ],
        ["How should explanations be presented to the user?", "What format helps the user learn?"],
    ),
    "editor": (
        ["Vim", "Emacs", "VS Code", "Sublime Text", "Helix"],
        [
            "I write all my code in {v}",
            "My editor of choice is {v}",
            "I moved my setup to {v}",
            "I do my programming in {v}",
        ],
        ["Which code editor does the user use?", "What editor should examples assume?"],
    ),
    "music": (
        ["jazz", "techno", "baroque music", "k-pop", "bluegrass"],
        [
            "I listen to {v} while working",
            "Lately I'm really into {v}",
            "{v} is what I play all day",
            "My favourite music is {v}",
        ],
        ["What music does the user like?", "Which playlist would the user enjoy?"],
    ),
    "city": (
        ["Lisbon", "Montreal", "Kyoto", "Nairobi", "Tallinn", "Melbourne"],
        ["I live in {v}", "I moved to {v}", "My home is in {v} now", "I'm based in {v}"],
        ["Where does the user live?", "Which city is the user in?"],
    ),
    "diet": (
        ["vegan food", "keto meals", "pescatarian dishes", "halal food", "gluten-free meals"],
        ["I only eat {v}", "I stick to {v} these days", "My diet is {v}", "I cook {v} at home"],
        ["What food should recipes for the user use?", "What does the user eat?"],
    ),
    "sport": (
        ["climbing", "rowing", "fencing", "cycling", "badminton", "surfing"],
        [
            "I spend my weekends {v}",
            "My sport is {v}",
            "I took up {v}",
            "I train for {v} every week",
        ],
        ["What sport does the user do?", "What does the user do at weekends?"],
    ),
    "language": (
        ["Portuguese", "Swahili", "Finnish", "Vietnamese", "Dutch"],
        [
            "I'm learning {v}",
            "I practise {v} every day",
            "Please quiz me in {v}",
            "I'm studying {v} at night school",
        ],
        ["Which language is the user learning?", "What language practice does the user want?"],
    ),
}

NOISE: list[str] = [
    "hi",
    "Hi there!",
    "hello",
    "ok",
    "okay thanks",
    "thanks!",
    "lol",
    "haha nice",
    "cool",
    "got it",
    "sure",
    "yes please",
    "no thanks",
    "hmm",
    "brb",
    "good night",
    "morning!",
    "that's interesting",
    "wow",
    "I see",
    "makes sense",
    "never mind",
    "one sec",
    "great, thanks",
    "How tall is Mount Everest?",
    "What's 17 times 23?",
    "Summarize this paragraph please",
    "Translate 'good morning' to German",
    "Who painted the Mona Lisa?",
    "Is it going to rain?",
    "Write a haiku about autumn",
    "What's a monad?",
    "Fix the typo in this sentence",
    "How many ounces in a pound?",
    "Tell me something funny",
    "What year did WW2 end?",
    "Can you shorten this email?",
    "What does HTTP stand for?",
    "define entropy",
    "I'm a bit tired",
    "I'm back",
    "I don't know",
    "let me check",
    "I guess so",
    "oops",
]

DAY = 86400.0
START = 1_767_225_600.0  # 2026-01-01 UTC


def generate_drift(
    users: int = 40,
    days: float = 60.0,
    subjects_per_user: int = 5,
    noise_per_signal: float = 2.0,
    change_probability: float = 0.6,
    seed: int = 0,
) -> tuple[list[dict], list[dict]]:
    """``(messages, queries)`` of ``users`` simulated users, messages in time order per user.

    Each chosen subject: a first statement in the first third of the span, 0-2 repeats
    (other phrasings of the same value), and with ``change_probability`` a change to
    another value in the second half, itself repeated 0-2 times. About
    ``noise_per_signal`` noise messages per statement, at random times. Queries come
    1-3 days after the last message.
    """
    rng = random.Random(seed)
    messages: list[dict] = []
    queries: list[dict] = []
    for u in range(users):
        user = f"user{u:03d}"
        events: list[tuple[float, str, str, str, str]] = []  # t, text, kind, subject, value
        for subject in rng.sample(sorted(SUBJECTS), subjects_per_user):
            values, templates, _ = SUBJECTS[subject]
            first, *others = rng.sample(values, len(values))
            history = [(first, rng.uniform(0, days / 3))]
            if rng.random() < change_probability:
                history.append((others[0], rng.uniform(days / 2, days * 0.9)))
            for index, (value, start) in enumerate(history):
                end = history[index + 1][1] if index + 1 < len(history) else days
                said = rng.sample(templates, 1 + rng.randint(0, 2))
                times = sorted([start] + [rng.uniform(start, end) for _ in said[1:]])
                for text_template, day in zip(said, times):
                    text = text_template.format(v=value)
                    events.append((day, text, "signal", subject, value))
            stale = [value for value, _ in history[:-1]]
            current = history[-1][0]
            queries.extend(
                {
                    "user": user,
                    "t": START + (days + rng.uniform(1, 3)) * DAY,
                    "text": query,
                    "subject": subject,
                    "current": current,
                    "stale": stale,
                }
                for query in SUBJECTS[subject][2]
            )
        signals = sum(kind == "signal" for _, _, kind, _, _ in events)
        for _ in range(round(signals * noise_per_signal)):
            events.append((rng.uniform(0, days), rng.choice(NOISE), "noise", "", ""))
        events.sort(key=lambda e: e[0])
        for day, text, kind, subject, value in events:
            messages.append(
                {
                    "user": user,
                    "t": START + day * DAY,
                    "text": text,
                    "kind": kind,
                    "subject": subject,
                    "value": value,
                }
            )
    return messages, queries


def mentions(text: str, value: str) -> bool:
    """Whether a memory's text states ``value`` (case-insensitive)."""
    return value.lower() in text.lower()


__all__ = ["NOISE", "SUBJECTS", "generate_drift", "mentions"]
