"""A sample plugin sidecar: an outbound webhook adapter speaking the appliance's JSON-RPC over stdio.

Standard library only, to show that a plugin needs no SDK. Capabilities:
- ``webhook.post``  {url, body} -> POST the JSON body to url, returns {"status": int}
- ``sample.echo``   params -> params (tests)
- ``sample.sleep``  {seconds} -> sleeps, then {"slept": seconds} (timeout tests)
- ``sample.crash``  exits with code 3 without answering (crash/restart tests)
- ``sample.flood``  writes one line bigger than any sane bound (output-bound tests)

``--mode channel`` adds the generic channel contract (``channel.poll``/``channel.ack``/``channel.send``,
with an inbox seeded from ``--inbox JSON`` and ``sample.outbox`` to read what was sent).

Other ``--mode`` values change the handshake for refusal tests: ``bad-version``, ``greedy`` (declares
an extra capability), ``garbage`` (writes non-JSON), ``silent`` (never answers the handshake).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request

CAPABILITIES = ["sample.crash", "sample.echo", "sample.flood", "sample.sleep", "webhook.post"]
CHANNEL_CAPABILITIES = ["channel.ack", "channel.poll", "channel.send", "sample.outbox"]
INBOX: list[dict[str, object]] = []
OUTBOX: list[dict[str, object]] = []


def reply(msg_id: object, result: object = None, error: dict[str, object] | None = None) -> None:
    out: dict[str, object] = {"jsonrpc": "2.0", "id": msg_id}
    if error is not None:
        out["error"] = error
    else:
        out["result"] = result
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


def handle(method: str, params: dict[str, object], msg_id: object, mode: str) -> bool:
    """Return False to stop."""
    if method == "initialize":
        if mode == "silent":
            return True
        if mode == "garbage":
            sys.stdout.write("this is not json\n")
            sys.stdout.flush()
            return True
        caps = [*CAPABILITIES, "shell.exec"] if mode == "greedy" else CAPABILITIES
        if mode == "channel":
            caps = [*CAPABILITIES, *CHANNEL_CAPABILITIES]
        version = 99 if mode == "bad-version" else 1
        reply(
            msg_id,
            {"protocolVersion": version, "name": "sample-webhook", "version": "1.0.0", "capabilities": caps},
        )
    elif method == "shutdown":
        reply(msg_id, None)
        return False
    elif method == "channel.poll":
        if not INBOX:
            time.sleep(min(0.05, float(params.get("timeoutMs", 0)) / 1000))  # type: ignore[arg-type]
        reply(msg_id, INBOX[:10])
    elif method == "channel.ack":
        INBOX[:] = [m for m in INBOX if m.get("messageId") != params.get("messageId")]
        reply(msg_id, {})
    elif method == "channel.send":
        OUTBOX.append(params)
        reply(msg_id, {"messageId": f"out-{len(OUTBOX)}"})
    elif method == "sample.outbox":
        reply(msg_id, {"outbox": OUTBOX, "inbox": INBOX})
    elif method == "sample.echo":
        reply(msg_id, params)
    elif method == "sample.sleep":
        seconds = float(params.get("seconds", 1))  # type: ignore[arg-type]
        time.sleep(seconds)
        reply(msg_id, {"slept": seconds})
    elif method == "sample.crash":
        sys.stderr.write("sample plugin crashing on purpose\n")
        sys.exit(3)
    elif method == "sample.flood":
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": "x" * 200_000}) + "\n")
        sys.stdout.flush()
    elif method == "webhook.post":
        data = json.dumps(params.get("body")).encode()
        req = urllib.request.Request(
            str(params["url"]), data=data, headers={"content-type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                reply(msg_id, {"status": resp.status})
        except OSError as exc:
            reply(msg_id, error={"code": -32000, "message": f"post failed: {exc}"})
    else:
        reply(msg_id, error={"code": -32601, "message": f"method not found: {method}"})
    return True


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="normal")
    parser.add_argument("--inbox", default="[]", help="JSON list of channel messages (--mode channel)")
    args = parser.parse_args()
    INBOX.extend(json.loads(args.inbox))
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        if "id" not in msg:
            continue  # notifications: nothing to answer
        if not handle(msg["method"], msg.get("params") or {}, msg["id"], args.mode):
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
