"""The real ``openclaw`` CLI (npm openclaw@2026.9.6) against our ``appliance serve``, unchanged.

Payload shapes are checked against the traces captured from the real OpenClaw gateway in ``golden/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.testing.process import ServeProcess, start_serve

pytestmark = [pytest.mark.integration, pytest.mark.openclaw]

GOLDEN = Path(__file__).parent / "golden"
TOKEN = "openclaw-contract-token-0123456789"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    serve = start_serve(tmp_path_factory.mktemp("gw") / "data", token=TOKEN)
    yield serve
    assert serve.terminate() == 0, serve.log_text()
    assert "Traceback" not in serve.log_text()


def call(
    cli: Any, gw: ServeProcess, method: str, params: dict[str, Any] | None = None, token: str = TOKEN
) -> Any:
    return cli.call(method, url=gw.url, token=token, params=params)


def ok_payload(res: Any) -> Any:
    assert res.rc == 0, res.describe()
    assert res.stderr.strip() == "", res.describe()
    return res.json


def golden_ok_payload(method: str, case_index: int = 0) -> Any:
    doc = json.loads((GOLDEN / f"{method}.json").read_text())
    for case in doc["cases"][case_index:]:
        frame = case.get("response") or {}
        if frame.get("ok"):
            return frame["payload"]
    raise AssertionError(f"no ok case in golden {method}")


def test_health_via_gateway_call_and_health_command(openclaw_cli: Any, gateway: ServeProcess) -> None:
    payload = ok_payload(call(openclaw_cli, gateway, "health"))
    assert payload["ok"] is True
    golden = golden_ok_payload("health")
    needed = {
        "ok",
        "ts",
        "durationMs",
        "channels",
        "channelOrder",
        "channelLabels",
        "heartbeatSeconds",
        "defaultAgentId",
        "agents",
        "sessions",
    }
    assert needed <= set(golden)
    assert needed <= set(payload)
    res = openclaw_cli.run(
        "health", "--json", env_extra={"OPENCLAW_GATEWAY_URL": gateway.url, "OPENCLAW_GATEWAY_TOKEN": TOKEN}
    )
    assert res.rc == 0, res.describe()
    assert res.json["ok"] is True
    text = openclaw_cli.run(
        "health", env_extra={"OPENCLAW_GATEWAY_URL": gateway.url, "OPENCLAW_GATEWAY_TOKEN": TOKEN}
    )
    assert text.rc == 0, text.describe()
    assert "Agents: main" in text.stdout


def test_status(openclaw_cli: Any, gateway: ServeProcess) -> None:
    payload = ok_payload(call(openclaw_cli, gateway, "status"))
    assert isinstance(payload, dict)
    assert {"runtimeVersion", "sessions", "heartbeat"} <= set(payload)


def test_usage_status(openclaw_cli: Any, gateway: ServeProcess) -> None:
    payload = ok_payload(call(openclaw_cli, gateway, "usage.status"))
    assert isinstance(payload["updatedAt"], int)
    assert payload["providers"] == []


def test_session_lifecycle(openclaw_cli: Any, gateway: ServeProcess) -> None:
    key = "agent:main:contract-a"
    patched = ok_payload(call(openclaw_cli, gateway, "sessions.patch", {"key": key, "label": "Contract A"}))
    golden_patch = golden_ok_payload("sessions.patch")
    assert set(golden_patch) <= set(patched)  # ok, path, key, entry, resolved
    assert patched["ok"] is True
    assert patched["key"] == key
    assert patched["entry"]["label"] == "Contract A"
    first_id = patched["entry"]["sessionId"]

    listed = ok_payload(call(openclaw_cli, gateway, "sessions.list", {}))
    golden_list = golden_ok_payload("sessions.list")
    assert {"ts", "path", "count", "sessions"} <= set(golden_list)
    assert {"ts", "path", "count", "sessions"} <= set(listed)
    rows = {row["key"]: row for row in listed["sessions"]}
    assert rows[key]["label"] == "Contract A"
    assert rows[key]["sessionId"] == first_id

    preview = ok_payload(call(openclaw_cli, gateway, "sessions.preview", {"keys": [key]}))
    assert preview["previews"][0]["key"] == key
    assert "ts" in preview

    reset = ok_payload(call(openclaw_cli, gateway, "sessions.reset", {"key": key, "reason": "new"}))
    assert reset["ok"] is True
    assert reset["key"] == key
    assert reset["entry"]["sessionId"] != first_id

    deleted = ok_payload(call(openclaw_cli, gateway, "sessions.delete", {"key": key}))
    assert deleted["ok"] is True
    listed = ok_payload(call(openclaw_cli, gateway, "sessions.list", {}))
    assert key not in {row["key"] for row in listed["sessions"]}


def test_label_rules_fail_like_the_gateway(openclaw_cli: Any, gateway: ServeProcess) -> None:
    ok_payload(
        call(openclaw_cli, gateway, "sessions.patch", {"key": "agent:main:contract-b", "label": "Taken"})
    )
    dup = call(openclaw_cli, gateway, "sessions.patch", {"key": "agent:main:contract-c", "label": "Taken"})
    assert dup.rc == 1, dup.describe()
    assert dup.error["type"] == "gateway_request_error"
    assert dup.error["code"] == "INVALID_REQUEST"
    too_long = call(
        openclaw_cli, gateway, "sessions.patch", {"key": "agent:main:contract-c", "label": "x" * 65}
    )
    assert too_long.rc == 1, too_long.describe()
    assert too_long.error["code"] == "INVALID_REQUEST"


def test_deleting_main_is_refused(openclaw_cli: Any, gateway: ServeProcess) -> None:
    res = call(openclaw_cli, gateway, "sessions.delete", {"key": "agent:main:main"})
    assert res.rc == 1, res.describe()
    assert res.error["code"] == "INVALID_REQUEST"
    assert res.error["message"] == "Cannot delete the main session (agent:main:main)."


def test_unknown_method_fails_as_the_real_gateway(openclaw_cli: Any, gateway: ServeProcess) -> None:
    res = call(openclaw_cli, gateway, "no.such.method")
    assert res.rc == 1, res.describe()
    assert res.json == {
        "ok": False,
        "error": {
            "type": "gateway_request_error",
            "code": "INVALID_REQUEST",
            "message": "unknown method: no.such.method",
            "retryable": False,
        },
    }


def test_wrong_token_fails_as_the_real_gateway(openclaw_cli: Any, gateway: ServeProcess) -> None:
    res = call(openclaw_cli, gateway, "health", token="WRONG")
    assert res.rc == 1, res.describe()
    err = res.error
    assert err["code"] == "INVALID_REQUEST"
    assert err["message"].startswith("unauthorized: gateway token mismatch")
    assert err["details"]["code"] == "AUTH_TOKEN_MISMATCH"
    assert err["details"]["authReason"] == "token_mismatch"
    assert "gateway connect failed" in res.stderr
