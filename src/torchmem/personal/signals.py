"""Implicit signals of a message, as their own small feature vector.

The seed asks for "time-of-use, tone, interaction style" to be remembered. They are kept
beside the text embedding, not added into it (adding would move the text's vector and
spoil its cosine similarities). One row of :data:`SIGNAL_NAMES` per message:

=====================  ===================================================================
``hour_sin/cos``       time of day on the unit circle (UTC, or the store's ``utc_offset``)
``weekday_sin/cos``    day of the week on the unit circle
``exclamation``        share of sentence ends that are ``!`` (excited or insistent tone)
``question``           1 when the message asks (ends with ``?`` or starts with a question word)
``request``            1 when it asks for something (please / can you / show / explain ...)
``uppercase``          share of letters in upper case (shouting)
``positive``           share of words from a small positive-tone list
``negative``           share of words from a small negative-tone list
``first_person``       share of words that are I / me / my / mine / I'm ...
``log_chars``          log(1 + characters) / 8 (message length)
``log_words``          log(1 + words) / 6
``code``               1 when it contains code or markup (backticks, braces, ``def``, ``=>``)
=====================  ===================================================================
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

import torch
from torch import Tensor

from .encoders import normalize_text, words

SIGNAL_NAMES: tuple[str, ...] = (
    "hour_sin",
    "hour_cos",
    "weekday_sin",
    "weekday_cos",
    "exclamation",
    "question",
    "request",
    "uppercase",
    "positive",
    "negative",
    "first_person",
    "log_chars",
    "log_words",
    "code",
)
#: The signals that describe the text alone (not when it was said): the write gate's input.
TEXT_SIGNALS: tuple[str, ...] = SIGNAL_NAMES[4:]

_POSITIVE = frozenset(
    "love loves like likes enjoy enjoys great good awesome nice thanks thank happy glad "
    "cool amazing wonderful prefer prefers favourite favorite best fun lol haha".split()
)
_NEGATIVE = frozenset(
    "hate hates dislike dislikes bad awful terrible annoying annoyed sad angry never "
    "worst boring tired sick ugh no not don't can't won't".split()
)
_FIRST_PERSON = frozenset("i me my mine myself i'm i've i'd i'll".split())
_QUESTION_WORDS = frozenset(
    "what why how when where who which whose can could would is are do does".split()
)
_REQUEST = re.compile(
    r"^\s*(please|pls|can you|could you|would you|show|give|tell|explain|write|make|help|list)\b"
)
_CODE = re.compile(r"`|[{};]\s*$|\bdef\b|=>|</?[a-z]+>|\bimport\b")


def message_signals(text: str, at: float, utc_offset_hours: float = 0.0) -> Tensor:
    """The :data:`SIGNAL_NAMES` features of one message said at time ``at`` (seconds).

    Returns:
        ``(len(SIGNAL_NAMES),)`` float32.
    """
    moment = datetime.fromtimestamp(at, tz=timezone.utc) + timedelta(hours=utc_offset_hours)
    hour = (moment.hour + moment.minute / 60.0) / 24.0 * 2.0 * math.pi
    weekday = moment.weekday() / 7.0 * 2.0 * math.pi
    tokens = words(text)
    count = max(len(tokens), 1)
    letters = [c for c in text if c.isalpha()]
    ends = re.findall(r"[.!?]+", text)
    lowered = normalize_text(text)
    question = text.rstrip().endswith("?") or (bool(tokens) and tokens[0] in _QUESTION_WORDS)
    values = (
        math.sin(hour),
        math.cos(hour),
        math.sin(weekday),
        math.cos(weekday),
        sum("!" in end for end in ends) / max(len(ends), 1),
        float(question),
        float(bool(_REQUEST.match(lowered))),
        sum(c.isupper() for c in letters) / max(len(letters), 1),
        sum(t in _POSITIVE for t in tokens) / count,
        sum(t in _NEGATIVE for t in tokens) / count,
        sum(t in _FIRST_PERSON for t in tokens) / count,
        math.log1p(len(text)) / 8.0,
        math.log1p(len(tokens)) / 6.0,
        float(bool(_CODE.search(text))),
    )
    return torch.tensor(values, dtype=torch.float32)


def text_signals(signals: Tensor) -> Tensor:
    """The :data:`TEXT_SIGNALS` columns of ``(..., len(SIGNAL_NAMES))`` signal rows."""
    return signals[..., len(SIGNAL_NAMES) - len(TEXT_SIGNALS) :]


__all__ = ["SIGNAL_NAMES", "TEXT_SIGNALS", "message_signals", "text_signals"]
