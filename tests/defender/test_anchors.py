"""The one-pass anchor scan must list exactly what per-anchor ``str.find`` loops list, with either backend."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.defender.anchors import AnchorIndex
from appliance.defender.scoring import RULES

RULE_ANCHORS = [rule.anchors for rule in RULES]
SMALL = [("ab", "abc", "b"), ("abc", "c", "ca"), (), ("a", "a"), ("bca",)]


def _find_loops(anchors: list[tuple[str, ...]], text: str) -> list[list[int]]:
    out = []
    for owned in anchors:
        positions = []
        for anchor in owned:
            start = text.find(anchor)
            while start >= 0:
                positions.append(start)
                start = text.find(anchor, start + 1)
        out.append(sorted(positions))
    return out


def _indexes(anchors: list[tuple[str, ...]]) -> list[AnchorIndex]:
    return [AnchorIndex(anchors, accelerated=False), AnchorIndex(anchors, accelerated=True)]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abc ", max_size=40))
def test_overlapping_and_nested_anchors_match_find_loops(text: str) -> None:
    expected = _find_loops(SMALL, text)
    for index in _indexes(SMALL):
        assert index.positions(text) == expected


_FRAGMENTS = sorted({anchor for owned in RULE_ANCHORS for anchor in owned})


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([*_FRAGMENTS, " ", "x", "\n", "ignore all ", "é"]), max_size=60))
def test_rule_anchors_match_find_loops(parts: list[str]) -> None:
    text = "".join(parts)
    expected = _find_loops(RULE_ANCHORS, text)
    for index in _indexes(RULE_ANCHORS):
        assert index.positions(text) == expected


@pytest.mark.parametrize("accelerated", [False, True])
def test_no_anchors_and_empty_text(accelerated: bool) -> None:
    assert AnchorIndex([(), ()], accelerated=accelerated).positions("anything") == [[], []]
    assert AnchorIndex([("a",)], accelerated=accelerated).positions("") == [[]]
