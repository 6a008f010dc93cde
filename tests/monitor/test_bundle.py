"""The support bundle never contains a secret: plant them everywhere, then grep the archive."""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

import pytest
import zstandard

from appliance.monitor.bundle import scrub, scrub_log_text
from appliance.monitor.cli import add_monitor_commands

GATEWAY_TOKEN = "PLANTED-gateway-token-7f3a9c"
FILE_TOKEN = "PLANTED-file-token-1b2c3d"
PROVIDER_KEY = "sk-PLANTED-provider-key-44aa"
ENV_SECRET = "PLANTED-env-secret-9090"
SECRETS = (GATEWAY_TOKEN, FILE_TOKEN, PROVIDER_KEY, ENV_SECRET)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_monitor_commands(parser.add_subparsers(dest="command"))
    return parser


def _plant(data: Path) -> None:
    data.mkdir(mode=0o700)
    (data / "gateway.token").write_text(FILE_TOKEN + "\n")
    (data / "appliance.toml").write_text(
        f'[gateway]\ntoken = "{GATEWAY_TOKEN}"\n\n[agent]\nprovider_api_key = "{PROVIDER_KEY}"\n'
    )
    logs = data / "logs"
    logs.mkdir()
    lines = [
        json.dumps({"event": "gateway_listening", "token": GATEWAY_TOKEN, "port": 1}),
        json.dumps({"event": "provider_called", "headers": {"Authorization": f"Bearer {PROVIDER_KEY}"}}),
        f"plain text line mentioning {FILE_TOKEN} and {ENV_SECRET}",
        f"curl -H 'Authorization: Bearer {GATEWAY_TOKEN}' http://127.0.0.1/",
        "an innocent line",
    ]
    (logs / "serve.log").write_text("\n".join(lines) + "\n")
    ledger = data / "defender"
    ledger.mkdir()
    (ledger / "quarantine.jsonl").write_text(
        json.dumps({"verdict": "block", "text": f"key={PROVIDER_KEY}"}) + "\n"
    )
    slot = data / "slots" / "a"
    slot.mkdir(parents=True)
    (slot / "manifest.json").write_text(json.dumps({"version": "0.1.0", "note": GATEWAY_TOKEN}))
    (slot / "signing.key").write_text(f"secret key material {PROVIDER_KEY}")
    (data / "bench").mkdir()
    (data / "bench" / "latest.json").write_text(json.dumps({"figures": {"coldStartS": 0.4}}))


def test_scrub_masks_values_and_bearer() -> None:
    assert scrub(f"a {GATEWAY_TOKEN} b", [GATEWAY_TOKEN]) == "a [redacted] b"
    assert "abcdef123" not in scrub("Authorization: Bearer abcdef123", [])
    text = scrub_log_text(json.dumps({"api_key": "zzz-value", "n": 1}) + "\nplain zzz-value\n", ["zzz-value"])
    assert "zzz-value" not in text
    assert '"n": 1' in text


@pytest.mark.integration
def test_bundle_holds_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    _plant(data)
    monkeypatch.setenv("SOME_SERVICE_TOKEN", ENV_SECRET)
    monkeypatch.delenv("APPLIANCE_CONFIG", raising=False)
    monkeypatch.delenv("APPLIANCE_PROFILE", raising=False)
    out = tmp_path / "bundle.tar.zst"
    args = _parser().parse_args(["support-bundle", "-o", str(out), "--data-dir", str(data)])
    assert args.handler(args) == 0
    assert out.stat().st_mode & 0o777 == 0o600

    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(out.read_bytes())).read()
    for secret in SECRETS:
        assert secret.encode() not in raw, secret
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members: dict[str, bytes] = {}
        for member in tar.getmembers():
            fh = tar.extractfile(member)
            assert fh is not None
            members[member.name.removeprefix("support-bundle/")] = fh.read()
    for name, body in members.items():
        for secret in SECRETS:
            assert secret.encode() not in body, (name, secret)
    expected = {
        "config.json",
        "status.json",
        "doctor.json",
        "stats.json",
        "logs/serve.log",
        "ledger/quarantine.jsonl",
        "slots/a/manifest.json",
        "slots/LISTING.txt",
        "bench/latest.json",
        "manifest.json",
    }
    assert expected <= set(members), sorted(members)
    assert "slots/a/signing.key" not in members
    assert "gateway.token" not in " ".join(members)
    config = json.loads(members["config.json"])
    assert config["agent"]["provider_api_key"] == "[redacted]"
    assert config["gateway"]["token"] == "[redacted]"
    assert b"an innocent line" in members["logs/serve.log"]
    assert json.loads(members["bench/latest.json"]) == {"figures": {"coldStartS": 0.4}}
