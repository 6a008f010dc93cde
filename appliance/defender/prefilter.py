"""What a rule regex can start with, read from its parsed pattern: prefilters for searching it (sans-IO).

Why: ``re`` has a fast C loop that skips to the next possible start of a match, but only when the pattern
*begins* with a literal, a character class or an alternation of literals. Most rules begin with ``\\b`` or a
group of words behind it, so ``re`` instead runs its whole matcher at every position of the text, and that was
most of the cost of a long message. A :class:`Finder` computes, from the parsed pattern, the set of characters
any match can start with, and searches with ``[first](?<=(?=(?:pattern))[first])``: the class lets ``re`` skip
in C, the look-behind backs up over that one character and the look-ahead checks the real pattern there. The
match itself is then taken with ``pattern.match`` at the position found.

:func:`literal_prefixes` lists the literal strings every match starts with. ``scoring`` uses it to prove that a
rule's anchors are where its matches begin, so that the rule can be tried with ``match`` at the anchors alone.

Rules:
- The result is exactly ``pattern.search(text, pos, endpos)`` (same span, same groups): the first set is a
  superset of every match's first character, computed conservatively (``tests/defender/test_prefilter.py``
  checks the equivalence over the corpora and on generated texts).
- A pattern that can match the empty string, starts with an arbitrary character, uses inline flags or
  back-references gets no prefilter; :func:`compile_finder` then returns a finder that calls ``search`` as is.
- ``^`` (start of text) parts are allowed: a match there may start with any character, so position 0 is
  tried with ``pattern.match`` first.
- Both are conservative: a construct they do not know makes them give up (``None``), never guess. Zero-width
  assertions (``\\b``, ``^``, look-arounds) are skipped, which can only make the sets larger.
- Reads ``re``'s own parser (``re._parser``, stable since 3.11); if it is missing or its output is not
  understood, the plain search is used: slower, never wrong.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["Finder", "compile_finder", "first_chars", "literal_prefixes"]

try:  # the parser ``re`` itself uses (no stubs); absent or different on an unknown Python: no prefilter
    from re import _constants as _c  # type: ignore[attr-defined]
    from re import _parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the Python version
    _parser = None
    _c = None

_CATEGORIES = (
    {
        _c.CATEGORY_DIGIT: r"\d",
        _c.CATEGORY_NOT_DIGIT: r"\D",
        _c.CATEGORY_SPACE: r"\s",
        _c.CATEGORY_NOT_SPACE: r"\S",
        _c.CATEGORY_WORD: r"\w",
        _c.CATEGORY_NOT_WORD: r"\W",
    }
    if _c is not None
    else {}
)


_BROAD = frozenset([r"\D", r"\S", r"\w", r"\W"])


class _Unknown(Exception):
    """The first character of a match cannot be bounded (or the parse is not understood)."""


# (class fragments, can match empty, a match may start at position 0 with any character)
_First = tuple[frozenset[str], bool, bool]


def _class_char(code: int) -> str:
    return re.escape(chr(code))


def _first_of_sequence(items: Iterable[Any]) -> _First:
    frags: set[str] = set()
    at_start = False
    for op, av in items:
        item_frags, nullable, item_at_start = _first_of_item(op, av)
        frags |= item_frags
        at_start = at_start or item_at_start
        if not nullable:
            return frozenset(frags), False, at_start
    return frozenset(frags), True, at_start


def _first_of_item(op: Any, av: Any) -> _First:
    c = _c
    if op is c.LITERAL:
        return frozenset([_class_char(av)]), False, False
    if op is c.IN:
        frags: set[str] = set()
        for kind, value in av:
            if kind is c.LITERAL:
                frags.add(_class_char(value))
            elif kind is c.RANGE:
                frags.add(f"{_class_char(value[0])}-{_class_char(value[1])}")
            elif kind is c.CATEGORY and value in _CATEGORIES:
                frags.add(_CATEGORIES[value])
            else:  # NEGATE and anything unexpected
                raise _Unknown
        return frozenset(frags), False, False
    if op is c.AT:
        if av is c.AT_BEGINNING or av is c.AT_BEGINNING_STRING:
            return frozenset(), False, True  # what follows can only start at position 0
        if av in (c.AT_BOUNDARY, c.AT_NON_BOUNDARY, c.AT_END, c.AT_END_STRING):
            return frozenset(), True, False
        raise _Unknown  # ^ and $ under MULTILINE and the locale variants
    if op is c.SUBPATTERN:
        _group, add_flags, del_flags, sub = av
        if add_flags or del_flags:
            raise _Unknown
        return _first_of_sequence(sub.data)
    if op is c.BRANCH:
        frags = set()
        nullable = at_start = False
        for alternative in av[1]:
            alt_frags, alt_nullable, alt_at_start = _first_of_sequence(alternative.data)
            frags |= alt_frags
            nullable = nullable or alt_nullable
            at_start = at_start or alt_at_start
        return frozenset(frags), nullable, at_start
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", c.MAX_REPEAT)):
        low, high, sub = av
        if high == 0:
            return frozenset(), True, False
        sub_frags, sub_nullable, sub_at_start = _first_of_sequence(sub.data)
        return sub_frags, low == 0 or sub_nullable, sub_at_start
    if op is getattr(c, "ATOMIC_GROUP", None):
        return _first_of_sequence(av.data)
    if op is c.ASSERT or op is c.ASSERT_NOT:
        return frozenset(), True, False  # zero width: ignoring it only makes the set larger
    raise _Unknown  # ANY, NOT_LITERAL, group references, conditionals


def first_chars(pattern: re.Pattern[str]) -> tuple[str, bool] | None:
    """The body of a character class holding every possible first character of a match of ``pattern``
    anywhere but position 0, and whether a match at position 0 may start with some other character.
    ``None`` when no such bound is known."""
    if _parser is None or pattern.flags & ~re.UNICODE:
        return None
    try:
        frags, nullable, at_start = _first_of_sequence(_parser.parse(pattern.pattern, pattern.flags).data)
    except (_Unknown, AttributeError, TypeError, ValueError, re.error):
        return None
    if nullable or not frags or frags & _BROAD:
        return (
            None  # a class like ``\\w`` admits most characters: scanning for it would cost more than it saves
        )
    return "".join(sorted(frags)), at_start


class Finder:
    """``pattern.search`` that skips in C to the characters a match can start with.

    The scan is built on first use, not at import: parsing and compiling it for every rule would add tens of
    milliseconds to start-up, and most rules are searched at their anchors and never need one."""

    __slots__ = ("_at_start", "_ready", "_scan", "pattern")

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self._scan: re.Pattern[str] | None = None
        self._at_start = False
        self._ready = False

    def _prepare(self) -> None:
        first = first_chars(self.pattern)
        if first is not None:
            charset, self._at_start = first
            source = f"[{charset}](?<=(?=(?:{self.pattern.pattern}))[{charset}])"
            try:
                self._scan = re.compile(source, self.pattern.flags)
            except re.error:  # e.g. a group reference, which ``re`` refuses inside a look-behind
                self._scan = None
        self._ready = True

    @property
    def prefiltered(self) -> bool:
        """True when a first-character scan is in use (False: plain ``search``)."""
        if not self._ready:
            self._prepare()
        return self._scan is not None

    def search(self, text: str, pos: int = 0, endpos: int = sys.maxsize) -> re.Match[str] | None:
        """The same match as ``self.pattern.search(text, pos, endpos)``."""
        if not self._ready:
            self._prepare()
        scan = self._scan
        if scan is None:
            return self.pattern.search(text, pos, endpos)
        if self._at_start and pos <= 0:
            found = self.pattern.match(text, 0, endpos)
            if found is not None:
                return found
        hit = scan.search(text, pos, endpos)
        if hit is None:
            return None
        return self.pattern.match(text, hit.start(), endpos)


def compile_finder(pattern: re.Pattern[str]) -> Finder:
    """A :class:`Finder` for ``pattern``; without a known first-character set it is a plain ``search``."""
    return Finder(pattern)


_MAX_PREFIXES = 512


def literal_prefixes(pattern: re.Pattern[str], limit: int = 24) -> frozenset[str] | None:
    """Strings such that every match of ``pattern`` starts with one of them, each at most ``limit`` long;
    ``None`` when no such finite set is known (an alternative starting with a character class, ``^``...)."""
    if _parser is None or pattern.flags & ~re.UNICODE:
        return None
    try:
        found = _prefixes_of_sequence(_parser.parse(pattern.pattern, pattern.flags).data, limit)
    except (_Unknown, AttributeError, TypeError, ValueError, re.error):
        return None
    if any(not text for text, _complete in found):
        return None
    return frozenset(text for text, _complete in found)


# (text, complete): complete means the alternative ends there; otherwise more (unknown) text may follow.
_Prefixes = set[tuple[str, bool]]


def _prefixes_of_sequence(items: Iterable[Any], limit: int) -> _Prefixes:
    current: _Prefixes = {("", True)}
    for op, av in items:
        if all(not complete or len(text) >= limit for text, complete in current):
            break
        try:
            options = _prefixes_of_item(op, av, limit)
        except _Unknown:
            return {(text, False) for text, _complete in current}
        grown: _Prefixes = set()
        for text, complete in current:
            if not complete or len(text) >= limit:
                grown.add((text, complete))
                continue
            for more, more_complete in options:
                joined = text + more
                grown.add((joined[:limit], more_complete and len(joined) <= limit))
        if len(grown) > _MAX_PREFIXES:
            raise _Unknown
        current = grown
    return current


def _prefixes_of_item(op: Any, av: Any, limit: int) -> _Prefixes:
    c = _c
    if op is c.LITERAL:
        return {(chr(av), True)}
    if op is c.IN:
        chars: set[str] = set()
        for kind, value in av:
            if kind is c.LITERAL:
                chars.add(chr(value))
            elif kind is c.RANGE and value[1] - value[0] < 16:
                chars.update(chr(code) for code in range(value[0], value[1] + 1))
            else:
                raise _Unknown
        return {(ch, True) for ch in chars}
    if op is c.AT:
        if av in (
            c.AT_BEGINNING,
            c.AT_BEGINNING_STRING,
            c.AT_BOUNDARY,
            c.AT_NON_BOUNDARY,
            c.AT_END,
            c.AT_END_STRING,
        ):
            return {("", True)}  # zero width: a superset of what really matches
        raise _Unknown
    if op is c.SUBPATTERN:
        _group, add_flags, del_flags, sub = av
        if add_flags or del_flags:
            raise _Unknown
        return _prefixes_of_sequence(sub.data, limit)
    if op is c.BRANCH:
        out: _Prefixes = set()
        for alternative in av[1]:
            out |= _prefixes_of_sequence(alternative.data, limit)
        return out
    if op is c.MAX_REPEAT or op is c.MIN_REPEAT:
        low, high, sub = av
        if high > 4:
            if low == 0:
                raise _Unknown
            once = _prefixes_of_sequence(sub.data, limit)
            return {(text, False) for text, _complete in once}  # at least one copy, then unknown
        options = _prefixes_of_sequence(sub.data, limit)
        out = {("", True)} if low == 0 else set()
        current: _Prefixes = {("", True)}
        for count in range(1, high + 1):
            current = {
                ((text + more)[:limit], more_complete and len(text + more) <= limit)
                for text, complete in current
                for more, more_complete in (options if complete else {("", False)})
            }
            if count >= low:
                out |= current
        return out
    if op is c.ASSERT or op is c.ASSERT_NOT:
        return {("", True)}
    raise _Unknown
