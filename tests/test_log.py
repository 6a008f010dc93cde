from __future__ import annotations

import io
import json

from appliance.log import REDACTED, bound_context, configure, get_logger, redact


def test_redact_masks_credential_keys_recursively_and_keeps_counters() -> None:
    record = {
        "token": "abc",
        "auth": {"token": "t", "password": "p", "deviceToken": "d"},
        "headers": [{"Authorization": "Bearer abcdefgh"}],
        "api_key": "k",
        "providerApiKey": "k2",
        "totalTokens": 12,
        "inputTokens": 3,
        "message": "use Bearer abcdefghijkl now",
        "empty_token": "",
    }
    out = redact(record)
    assert out["token"] == REDACTED
    assert out["auth"] == {"token": REDACTED, "password": REDACTED, "deviceToken": REDACTED}
    assert out["headers"][0]["Authorization"] == REDACTED
    assert out["api_key"] == REDACTED
    assert out["providerApiKey"] == REDACTED
    assert out["totalTokens"] == 12
    assert out["inputTokens"] == 3
    assert "abcdefghijkl" not in out["message"]
    assert out["empty_token"] == ""
    assert record["token"] == "abc"  # pure: input untouched


def test_json_lines_carry_bound_context_and_are_redacted() -> None:
    buf = io.StringIO()
    configure(level="info", stream=buf, human=False)
    log = get_logger("t")
    with bound_context(req_id="r1", conn_id="c1"):
        log.info("request_handled", method="health", token="secret")
    log.debug("not_written")
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "request_handled"
    assert line["req_id"] == "r1"
    assert line["conn_id"] == "c1"
    assert line["token"] == REDACTED
    assert line["level"] == "info"
    assert line["ts"].endswith("Z")
    configure(level="info", human=False)


def test_human_format_on_request() -> None:
    buf = io.StringIO()
    configure(level="debug", stream=buf, human=True)
    get_logger("t").debug("thing_happened", n=1)
    assert "DEBUG" in buf.getvalue()
    assert "thing_happened n=1" in buf.getvalue()
    configure(level="info", human=False)
