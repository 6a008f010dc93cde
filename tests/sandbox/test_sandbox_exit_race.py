"""Podman answers inspect with 500 "no such process" in the instant a container exits: retried."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from appliance.errors import SandboxUnavailable
from appliance.sandbox.backend import inspect_past_exit_race

RACE = SandboxUnavailable(
    "sandbox engine error during inspect: APIError: 500 (read /proc/9/cgroup: no such process)"
)


async def test_the_exit_race_is_retried_until_the_state_is_readable() -> None:
    calls = 0

    async def inspect() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RACE
        return "exited"

    with trio.fail_after(5):
        assert await inspect_past_exit_race(inspect, "c0ffee") == "exited"
    assert calls == 3


async def test_other_engine_errors_are_raised_at_once() -> None:
    calls = 0

    async def inspect() -> str:
        nonlocal calls
        calls += 1
        raise SandboxUnavailable("sandbox engine error during inspect: 404 no such container")

    with pytest.raises(SandboxUnavailable, match="no such container"):
        await inspect_past_exit_race(inspect, "c0ffee")
    assert calls == 1


async def test_a_race_that_never_ends_is_a_clear_error(autojump_clock: trio.testing.MockClock) -> None:
    async def inspect() -> str:
        raise RACE

    with pytest.raises(SandboxUnavailable, match="kept racing the container's exit"):
        await inspect_past_exit_race(inspect, "c0ffee")
