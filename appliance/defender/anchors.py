"""One-pass anchor scan for the prompt rules (sans-IO).

Why: every rule used to look for each of its literal anchors with its own ``str.find`` passes, so the cost of
a long text grew with (number of anchors) x (text length): about 440 full passes over an 8 KB message. Here
all anchors go into one trie-shaped regex that visits the text once and reports, for every position, the
longest anchor starting there. Every other anchor starting at that position is a prefix of that longest one,
so a table built once says which rules each hit counts for, and how many times (a rule may own several
anchors that start at the same place). The result equals the old per-anchor ``find`` loops exactly.

When ``pyahocorasick`` (BSD-3-Clause, C) is installed, a real Aho-Corasick automaton does the same scan about
five times faster; both backends give identical positions (the tests compare them with plain ``find`` loops).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

try:  # optional C accelerator; the pure-Python trie regex below gives the same answers
    import ahocorasick as _ahocorasick  # type: ignore[import-not-found, import-untyped, unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    _ahocorasick = None

__all__ = ["AnchorIndex"]

_Trie = dict[str, "_Trie"]
_END = ""  # a key that no character equals: marks the end of an anchor in the trie


def _trie_pattern(words: Sequence[str]) -> str:
    """A regex equivalent to the alternation of ``words`` that branches on one character at a time and,
    being greedy, matches the longest word at a position (a flat alternation is ~6x slower in ``re``)."""
    trie: _Trie = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[_END] = {}

    def build(node: _Trie) -> str:
        alternatives = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch != _END]
        if not alternatives:
            return ""
        body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
        return f"(?:{body})?" if _END in node else body

    return build(trie)


class AnchorIndex:
    """Finds, in one pass, where each rule's anchors occur. Rule ``i`` owns ``anchors[i]``."""

    __slots__ = ("_automaton", "_counts", "_pattern", "_size")

    def __init__(self, anchors: Sequence[Sequence[str]], *, accelerated: bool = True) -> None:
        self._size = len(anchors)
        # For each anchor, the rules that own it, once per time they list it.
        owners: dict[str, list[int]] = {}
        for index, owned in enumerate(anchors):
            for anchor in owned:
                if anchor:
                    owners.setdefault(anchor, []).append(index)
        words = sorted(owners)
        self._automaton: Any = None
        if accelerated and _ahocorasick is not None and words:
            automaton = _ahocorasick.Automaton()
            for word in words:
                automaton.add_word(word, (len(word) - 1, tuple(owners[word])))
            automaton.make_automaton()
            self._automaton = automaton
        # The pure-Python scan (built only without the automaton). For each anchor A: (rule, how many of the
        # rule's anchors are prefixes of A, A included).
        self._counts: dict[str, tuple[tuple[int, int], ...]] = {}
        self._pattern: re.Pattern[str] | None = None
        if self._automaton is not None or not words:
            return
        for word in words:
            counts: dict[int, int] = {}
            for size in range(1, len(word) + 1):
                for index in owners.get(word[:size], ()):
                    counts[index] = counts.get(index, 0) + 1
            self._counts[word] = tuple(sorted(counts.items()))
        # A lookahead so that overlapping anchors are all seen: the scan advances one character per hit.
        self._pattern = re.compile(f"(?=({_trie_pattern(words)}))")

    def positions(self, text: str) -> list[list[int]]:
        """Per rule, the sorted start positions of its anchors in ``text``, one entry per (anchor, occurrence)
        pair, as repeated ``text.find(anchor, start + 1)`` loops would list them."""
        found: list[list[int]] = [[] for _ in range(self._size)]
        if self._automaton is not None:
            return self._positions_aho(text, found)
        if self._pattern is None:
            return found
        counts = self._counts
        for match in self._pattern.finditer(text):
            start = match.start()
            for index, count in counts[match.group(1)]:
                if count == 1:
                    found[index].append(start)
                else:
                    found[index].extend([start] * count)
        return found

    @property
    def accelerated(self) -> bool:
        """True when the C Aho-Corasick backend is in use."""
        return self._automaton is not None

    def _positions_aho(self, text: str, found: list[list[int]]) -> list[list[int]]:
        # The automaton reports every (anchor, occurrence) in order of its *end*; sort by start afterwards.
        for end, (extra, owners) in self._automaton.iter(text):
            start = end - extra
            for index in owners:
                found[index].append(start)
        for owned in found:
            if len(owned) > 1:
                owned.sort()
        return found
