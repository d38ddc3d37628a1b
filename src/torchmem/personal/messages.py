"""Generated chat messages labelled worth remembering (signal) or not (noise).

The write gate's training data and its held-out test: messages built from templates and
fill-in values. Signal is what a personal assistant should keep about its user:
preferences, standing instructions, habits and facts. Noise is chit-chat,
acknowledgements, passing moods and requests about the world that say nothing lasting
about the user. The ``"train"`` and ``"test"`` splits use disjoint templates *and*
disjoint fill-in values, so the test measures new phrasings of new things, not recall of
the training sentences.

>>> rows = generate_messages("train", seed=0)
>>> sorted({row["label"] for row in rows})
[0, 1]
"""

from __future__ import annotations

import random
from collections.abc import Collection
from itertools import product

# (kind, template, label). A template's slots are filled from FILLS; its split is decided
# by its position: every third template of a kind is held out for the test split.
SIGNAL_TEMPLATES: dict[str, list[str]] = {
    "preference": [
        "I prefer {style} explanations",
        "I like {thing}",
        "I really love {thing}",
        "I'd rather get {style} answers",
        "I can't stand {thing}",
        "I hate {thing}",
        "My favourite {category} is {value}",
        "I enjoy {activity} a lot",
        "I'm a big fan of {thing}",
        "{thing} is my favourite",
        "I don't like {thing}",
        "I much prefer {thing} to {thing2}",
    ],
    "instruction": [
        "Please always {instruction}",
        "From now on {instruction}",
        "Always {instruction} when you answer me",
        "Never {bad_instruction}",
        "Remember to {instruction}",
        "When you reply, {instruction}",
    ],
    # Standing requests: imperative like a task, but about every later answer.
    "request": [
        "Please remind me to {activity} every {day}",
        "Please give me {style} answers",
        "Please don't {bad_instruction}",
        "Can you always {instruction}?",
        "Please keep reminding me to {activity}",
        "Don't ever {bad_instruction} with me",
        "Please address me as {name}",
        "I want you to {instruction} every time",
        "Please keep your explanations {style}",
    ],
    "habit": [
        "I usually {activity} in the {time_of_day}",
        "Every {day} I {activity}",
        "I go {activity} on {day}s",
        "Most evenings I {activity}",
        "I tend to work late at night",
        "I always {activity} before work",
    ],
    "fact": [
        "I live in {city}",
        "My name is {name}",
        "I'm allergic to {allergen}",
        "I work as a {job}",
        "I'm a {job} by profession",
        "My {relative} is called {name}",
        "I speak {language} at home",
        "I moved to {city} last year",
        "I have a {pet} named {name}",
        "I'm vegetarian",
        "My birthday is in {month}",
        "I'm learning {language}",
    ],
}

NOISE_TEMPLATES: dict[str, list[str]] = {
    "greeting": [
        "Hi",
        "Hello!",
        "hey there",
        "Good morning",
        "yo",
        "Hi again",
        "Good evening!",
        "hello hello",
        "Hey!",
    ],
    "acknowledgement": [
        "Okay",
        "ok",
        "thanks",
        "Thank you!",
        "got it",
        "sure",
        "cool",
        "lol",
        "haha",
        "nice",
        "great",
        "yes",
        "no",
        "hmm",
        "k",
        "bye",
        "see you",
        "thx",
        "Alright",
        "makes sense",
        "I see",
        "perfect",
        "yep",
        "nope",
        "oh wow",
        "interesting",
        "fine",
        "LOL",
        "okay thanks",
        "sounds good",
    ],
    "mood": [
        "I'm hungry",
        "I'm bored",
        "I think so",
        "I guess",
        "I don't know",
        "I'm back",
        "I'm a bit tired today",
        "I'm not sure",
        "I forgot",
        "that's funny",
        "let me think",
        "I agree",
        "I'm confused",
        "wait what",
        "I'll check",
        "I am here",
    ],
    "world": [
        "What's the capital of {country}?",
        "How do I sort a list in Python?",
        "Can you explain {topic}?",
        "What time is it in {city}?",
        "Translate this sentence to {language}",
        "Summarize this article for me",
        "Tell me a joke",
        "What is {topic}?",
        "How far is the moon?",
        "Who wrote Hamlet?",
        "Write a poem about {thing}",
        "Give me a recipe for {dish}",
        "What's the weather like in {city}?",
        "Is {thing} healthy?",
        "How does {topic} work?",
        "Define {topic}",
    ],
    # One-off tasks: imperative, but they say nothing lasting about the user.
    "task": [
        "Please proofread this",
        "Please list three facts about {country}",
        "Please explain {topic} to me",
        "Could you rephrase this?",
        "Please write a short story about {thing}",
        "Please check this code for bugs",
        "Can you draft a reply to my boss?",
        "Please convert 5 miles to kilometres",
        "Please give me a synonym for happy",
    ],
}

# Fill-in values; each list is split in two halves, the first for "train", the second for
# "test".
FILLS: dict[str, list[str]] = {
    "style": [
        "visual",
        "short",
        "step-by-step",
        "detailed",
        "diagram-based",
        "bullet-point",
        "example-driven",
        "concise",
        "technical",
        "simple",
    ],
    "thing": [
        "jazz",
        "spicy food",
        "dark mode",
        "tea",
        "hiking",
        "sci-fi novels",
        "cats",
        "long meetings",
        "coffee",
        "classical music",
        "board games",
        "cold weather",
        "podcasts",
        "running",
        "sushi",
        "horror movies",
    ],
    "category": [
        "drink",
        "colour",
        "programming language",
        "band",
        "season",
        "cuisine",
        "sport",
        "editor",
        "book",
        "city",
    ],
    "value": [
        "green tea",
        "blue",
        "Rust",
        "Radiohead",
        "autumn",
        "Thai food",
        "tennis",
        "Vim",
        "Dune",
        "Lisbon",
    ],
    "activity": [
        "read",
        "go running",
        "meditate",
        "cook dinner",
        "play guitar",
        "swim",
        "walk the dog",
        "do yoga",
        "journal",
        "practise piano",
    ],
    "instruction": [
        "answer in bullet points",
        "include a diagram",
        "keep it short",
        "use metric units",
        "show code examples",
        "give me the summary first",
        "explain like I'm a beginner",
        "cite your sources",
    ],
    "bad_instruction": [
        "use emojis",
        "write long paragraphs",
        "use imperial units",
        "use jargon",
        "start with a disclaimer",
        "repeat my question",
    ],
    "time_of_day": ["morning", "evening", "afternoon", "night"],
    "day": [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "weekend",
    ],
    "city": [
        "Berlin",
        "Tokyo",
        "Nairobi",
        "Lima",
        "Oslo",
        "Toronto",
        "Madrid",
        "Seoul",
        "Cairo",
        "Austin",
    ],
    "name": ["Sam", "Priya", "Lucas", "Mei", "Omar", "Anna", "Kofi", "Elena", "Noah", "Aiko"],
    "allergen": ["peanuts", "shellfish", "pollen", "gluten", "cats", "penicillin"],
    "job": [
        "nurse",
        "software engineer",
        "teacher",
        "designer",
        "lawyer",
        "chef",
        "data scientist",
        "carpenter",
    ],
    "relative": ["daughter", "son", "wife", "husband", "sister", "brother"],
    "language": ["Spanish", "French", "German", "Japanese", "Portuguese", "Korean"],
    "pet": ["dog", "cat", "parrot", "rabbit"],
    "month": ["March", "July", "October", "January"],
    "country": ["France", "Peru", "Kenya", "Norway", "Japan", "Chile"],
    "topic": [
        "recursion",
        "photosynthesis",
        "inflation",
        "quantum computing",
        "TCP",
        "black holes",
        "blockchain",
        "gradient descent",
    ],
    "dish": ["lasagna", "pad thai", "pancakes", "ramen", "falafel", "risotto"],
}

SPLITS = ("train", "test")


def _split_of_template(index: int) -> str:
    return "test" if index % 3 == 2 else "train"


def _values(slot: str, split: str) -> list[str]:
    values = FILLS[slot]
    half = (len(values) + 1) // 2
    return values[:half] if split == "train" else values[half:]


def _fill(template: str, split: str, rng: random.Random, limit: int) -> list[str]:
    """Up to ``limit`` distinct fillings of ``template`` with ``split``'s values."""
    import string

    slots = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    if not slots:
        return [template]
    choices = [_values("thing" if s == "thing2" else s, split) for s in slots]
    combos = [c for c in product(*choices) if len(set(c)) == len(c)]
    rng.shuffle(combos)
    return [template.format(**dict(zip(slots, combo))) for combo in combos[:limit]]


def generate_messages(
    split: str, seed: int = 0, per_template: int = 6, kinds: Collection[str] | None = None
) -> list[dict]:
    """Labelled messages of one split, shuffled.

    Args:
        split: ``"train"`` or ``"test"`` (disjoint templates and fill-in values).
        seed: shuffling and sampling seed.
        per_template: fillings drawn per template (fewer when it has fewer).
        kinds: the template kinds to draw from (keys of :data:`SIGNAL_TEMPLATES` and
            :data:`NOISE_TEMPLATES`); None: all.

    Returns:
        ``[{"text", "label" (1 signal, 0 noise), "kind"}, ...]``; a template without slots
        appears in up to four casing and punctuation variants.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    rng = random.Random(f"{split}-{seed}")
    rows: list[dict] = []
    for label, templates in ((1, SIGNAL_TEMPLATES), (0, NOISE_TEMPLATES)):
        for kind, texts in templates.items():
            if kinds is not None and kind not in kinds:
                continue
            for index, template in enumerate(texts):
                if _split_of_template(index) != split:
                    continue
                texts_of_template = _fill(template, split, rng, per_template)
                if len(texts_of_template) == 1:  # no slots: a few typing variants instead
                    variants = {_vary(texts_of_template[0], rng) for _ in range(4)}
                    texts_of_template = sorted(variants)
                for text in texts_of_template:
                    rows.append({"text": _vary(text, rng), "label": label, "kind": kind})
    rng.shuffle(rows)
    return rows


def _vary(text: str, rng: random.Random) -> str:
    """Casual-typing variants: lower case, a dropped or added full stop or exclamation."""
    roll = rng.random()
    if roll < 0.2:
        text = text.lower()
    elif roll < 0.3 and text[-1:] not in "?!.":
        text += rng.choice([".", "!", "!!"])
    return text


#: Kinds whose label a lexical encoder cannot read from the words: a standing request
#: ("Please give me short answers") and a one-off task ("Please explain TCP to me") share
#: their words. The hash gate is trained without them (see :mod:`.gate_training`).
SEMANTIC_KINDS = frozenset({"request", "task"})

__all__ = [
    "FILLS",
    "NOISE_TEMPLATES",
    "SEMANTIC_KINDS",
    "SIGNAL_TEMPLATES",
    "SPLITS",
    "generate_messages",
]
