"""Optional cleaning of description texts: boilerplate that chat models wrap around the description.

Gemma 3 begins most answers with a lead-in line — "Here's a description of the image:", "Here's a detailed
description of the image, focusing on ...:" — and now and then ends with an offer ("If you're interested, I can
analyze another image!"). Such text says nothing about the image but enters every embedding of it. Cleaning is
off by default and never changes what is stored: the log keeps the model's raw text, and cleaning is applied when
descriptions are read (``describe_stimuli(clean=...)``, ``export_descriptions(clean=...)``), so a record read
with cleaning carries ``text`` (cleaned), ``raw_text`` (as generated) and ``clean`` (the steps applied).

Steps (``CLEANERS``) are conservative, pure functions of the text: ``preamble`` removes a first line that announces
the description (an optional assent, then "Here's/Here is/Below is ...", naming a description, breakdown,
caption ..., ending with a colon); ``closing`` removes a last paragraph that offers more help. A step that would
leave nothing returns the text unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from llmvem.errors import ConfigError
from llmvem.registry import Registry

CLEANERS: Registry[Callable[[str], str]] = Registry("description cleaning step")

_PREAMBLE = re.compile(
    r"""\A\s*(?:\*\*)?
    (?:(?:sure|certainly|okay|ok|of\ course|absolutely|alright)\b[!,.]?\s*)?      # an assent
    (?:here(?:'s|’s|\s+is|\s+are)|below\s+is|the\s+following\s+is)\s              # the announcement
    [^\n:]{0,200}?\b(?:descriptions?|breakdown|caption|analysis|overview|summary|paragraph|account)\b
    [^\n:]{0,200}:(?:\*\*)?[ \t]*\n?\s*""",
    re.IGNORECASE | re.VERBOSE,
)
_CLOSING = re.compile(
    r"""\n\s*(?:(?:would|do)\ you\ (?:like|want)|let\ me\ know|feel\ free|is\ there\ anything|i\ hope\ this
    |if\ you(?:'|’)?(?:re|\ are)\ interested|i\ can\ also)\b[^\n]{0,200}\s*\Z""",
    re.IGNORECASE | re.VERBOSE,
)


@CLEANERS.register("preamble")
def strip_preamble(text: str) -> str:
    """``text`` without a lead-in line announcing the description.

    >>> strip_preamble("Here's a description of the image:\\n\\nA red bus on a street.")
    'A red bus on a street.'
    >>> strip_preamble("Sure! Here is a detailed description: A dog.")
    'A dog.'
    >>> strip_preamble("Here is the beach: sand and sea.")  # no description announced: unchanged
    'Here is the beach: sand and sea.'
    """
    m = _PREAMBLE.match(text)
    if m is None or not text[m.end() :].strip():
        return text
    return text[m.end() :]


@CLEANERS.register("closing")
def strip_closing(text: str) -> str:
    """``text`` without a last paragraph offering more help ("Would you like me to ...?").

    >>> strip_closing("A red bus.\\n\\nWould you like me to describe another image?")
    'A red bus.'
    """
    m = _CLOSING.search(text)
    if m is None or not text[: m.start()].strip():
        return text
    return text[: m.start()].rstrip()


def clean_steps(clean: str | Sequence[str] | None) -> list[str]:
    """The cleaning steps named by ``clean`` (a name, several, or none), checked against ``CLEANERS``.

    Raises:
        ConfigError: an unknown step (the message lists the known ones).
    """
    steps = [clean] if isinstance(clean, str) else list(clean or [])
    unknown = [s for s in steps if s not in CLEANERS]
    if unknown:
        raise ConfigError(f"unknown cleaning step(s) {unknown}; known: {', '.join(CLEANERS.names())}")
    return list(dict.fromkeys(steps))


def clean_text(text: str, steps: Sequence[str]) -> str:
    """``text`` after each step of ``steps`` in turn.

    >>> clean_text("Here's a description of the image:\\n\\nA cat.\\n\\nLet me know!", ["preamble", "closing"])
    'A cat.'
    """
    for s in steps:
        text = CLEANERS.get(s)(text)
    return text
