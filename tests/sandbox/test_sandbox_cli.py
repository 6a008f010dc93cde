"""``appliance sandbox build-image | run | doctor`` end to end, and the parser the lead wires in."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.sandbox.cli import add_sandbox_commands


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance")
    add_sandbox_commands(parser.add_subparsers(dest="command"))
    return parser


def test_parser_takes_the_command_after_double_dash() -> None:
    args = _parser().parse_args(
        ["sandbox", "run", "--group", "fam", "--net", "none", "--", "sh", "-c", "echo -n x"]
    )
    assert args.argv == ["--", "sh", "-c", "echo -n x"]
    assert args.group == "fam"
    assert callable(args.handler)


def test_parser_rejects_unknown_net_mode() -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["sandbox", "run", "--net", "host", "--", "true"])


def _cli(*argv: str, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance.sandbox.cli",
            "sandbox",
            *argv[:1],
            "--data-dir",
            str(data),
            *argv[1:],
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.podman
def test_build_run_doctor(tmp_path: Path, podman_socket: str) -> None:
    data = tmp_path / "data"
    built = _cli("build-image", data=data)
    assert built.returncode == 0, built.stderr
    assert built.stdout.startswith("localhost/appliance-runner:")
    ran = _cli("run", "--socket", podman_socket, "--", "sh", "-c", "echo hi; exit 3", data=data)
    assert (ran.returncode, ran.stdout) == (3, "hi\n"), ran.stderr
    assert "[sandbox: exit 3" in ran.stderr
    doctor = _cli("doctor", "--socket", podman_socket, data=data)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "OK    engine" in doctor.stdout


@pytest.mark.podman
def test_run_without_image_says_what_to_do(tmp_path: Path, podman_socket: str) -> None:
    ran = _cli("run", "--socket", podman_socket, "--", "true", data=tmp_path / "empty")
    assert ran.returncode == 69
    assert "build-image" in ran.stderr


@pytest.mark.podman
def test_selftest_reports_every_attack_contained(
    tmp_path: Path, podman_socket: str, runner_image: str
) -> None:
    data = tmp_path / "data"
    out = _cli(
        "selftest",
        "--backend",
        "docker",
        "--socket",
        podman_socket,
        "--image",
        runner_image,
        "--json",
        data=data,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] is True
    assert doc["engine"] == "docker"
    assert len(doc["attacks"]) == 10
    assert all(a["contained"] for a in doc["attacks"])
