"""The runner protocol, sans-IO: the host's request frame against the runner's own parser, and the
runner's result record against the host's parser (the two sides share no code)."""

from __future__ import annotations

import json
import resource

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.sandbox import runner
from appliance.sandbox.wire import RunRecord, RunRequest, encode_frame, parse_result_channel

REQUEST = RunRequest(
    argv=("sh", "-c", "echo hi"), cwd="/workspace/group", timeout_s=5.0, out_cap=10, err_cap=20
)


def test_frame_is_the_header_line_then_the_stdin_bytes() -> None:
    frame = encode_frame(REQUEST, bytearray(b"s3cret\n"))
    line, _, rest = bytes(frame).partition(b"\n")
    assert rest == b"s3cret\n"
    assert b"s3cret" not in line  # the secret is never inside the JSON
    parsed = runner.parse_request(line)
    assert parsed == {
        "argv": ["sh", "-c", "echo hi"],
        "env": {},
        "cwd": "/workspace/group",
        "timeout_s": 5.0,
        "out_cap": 10,
        "err_cap": 20,
        "stdin_bytes": 7,
        "egress": False,
    }


_text = st.text(st.characters(exclude_characters="\0", exclude_categories=["Cs"]), max_size=20)


@given(
    argv=st.lists(_text.filter(bool), min_size=1, max_size=5),
    env=st.dictionaries(_text.filter(lambda k: bool(k) and "=" not in k), _text, max_size=4),
    egress=st.booleans(),
    size=st.integers(0, 1000),
)
def test_runner_parses_every_request_the_host_encodes(
    argv: list[str], env: dict[str, str], egress: bool, size: int
) -> None:
    request = RunRequest(
        argv=tuple(argv), cwd="/", timeout_s=1.5, out_cap=1, err_cap=2, egress=egress, env=tuple(env.items())
    )
    parsed = runner.parse_request(request.header(size).rstrip(b"\n"))
    assert (parsed["argv"], parsed["env"], parsed["egress"], parsed["stdin_bytes"]) == (
        argv,
        env,
        egress,
        size,
    )


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({"v": 2}, "v=1"),
        ({"argv": []}, "argv"),
        ({"argv": [""]}, "argv"),
        ({"argv": "sh"}, "argv"),
        ({"env": {"A=B": "x"}}, "env"),
        ({"cwd": "relative"}, "cwd"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"out_cap": True}, "out_cap"),
        ({"stdin_bytes": -1}, "stdin_bytes"),
        ({"stdin_bytes": 1.5}, "stdin_bytes"),
        ({"egress": "yes"}, "egress"),
    ],
)
def test_runner_refuses_malformed_requests(doc: dict[str, object], why: str) -> None:
    base = json.loads(REQUEST.header(0))
    with pytest.raises(runner.RequestError, match=why):
        runner.parse_request(json.dumps({**base, **doc}).encode())


def test_runner_refuses_non_json() -> None:
    with pytest.raises(runner.RequestError, match="not JSON"):
        runner.parse_request(b"\xff{")


def _usage() -> resource.struct_rusage:
    return resource.getrusage(resource.RUSAGE_SELF)


def test_host_parses_the_runners_record() -> None:
    line = runner.result_record(
        status=3 << 8,
        wall_ms=12,
        rusage=_usage(),
        counts=(10, 2),
        truncated=(True, False),
        errors=["x" * 300],
    )
    ready, record, why = parse_result_channel(b'{"ready":true}\n' + line)
    assert ready
    assert why == ""
    assert record is not None
    assert (record.exit_code, record.signal, record.status, record.wall_ms) == (3, None, 3, 12)
    assert (record.out_bytes, record.err_bytes, record.out_truncated, record.err_truncated) == (
        10,
        2,
        True,
        False,
    )
    assert record.max_rss_kb > 0
    assert record.errors == ("x" * 200,)


def test_a_signal_is_reported_shell_style() -> None:
    killed = 9  # a wait status of 9: killed by SIGKILL
    _, record, _ = parse_result_channel(runner.result_record(status=killed, wall_ms=1, timed_out=True))
    assert record is not None
    assert (record.exit_code, record.signal, record.status, record.timed_out) == (None, 9, 137, True)
    assert runner.exit_status(runner.result_record(status=killed, wall_ms=1)) == 137


def test_nothing_ran_is_ex_software() -> None:
    _, record, _ = parse_result_channel(
        runner.result_record(status=None, wall_ms=0, errors=["bad request: x"])
    )
    assert record is not None
    assert (record.status, record.errors) == (70, ("bad request: x",))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "did not finish"),
        (b'{"ready":true}\n', "did not finish"),
        (b'{"ready":true}\n{"v":1,"exit_code":0', "did not finish"),  # cut off: no newline
        (b"garbage\n", "malformed"),
        (b"[1]\n", "malformed"),
        (b'{"who":"knows"}\n', "unknown"),
        (b'{"v":1,"exit_code":0}\n', "wall_ms"),
        (b"x" * 70_000, "overflowed"),
    ],
)
def test_missing_or_broken_records_are_absent_with_a_reason(data: bytes, why: str) -> None:
    _, record, reason = parse_result_channel(data)
    assert record is None
    assert why in reason


def test_bad_field_types_are_refused() -> None:
    good = json.loads(runner.result_record(status=0, wall_ms=1))
    for key, value in (
        ("timed_out", 1),
        ("signal", "9"),
        ("errors", [1]),
        ("user_ms", -1),
        ("wall_ms", True),
    ):
        _, record, reason = parse_result_channel(json.dumps({**good, key: value}).encode() + b"\n")
        assert record is None, key
        assert key in reason


@given(st.binary(max_size=300))
def test_arbitrary_channel_bytes_never_raise(data: bytes) -> None:
    ready, record, reason = parse_result_channel(data)
    assert isinstance(ready, bool)
    assert (record is None) == bool(reason)
    assert record is None or isinstance(record, RunRecord)
