"""The runner image: built locally FROM scratch, reproducible, tagged by content (runner, tools)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.sandbox.image import (
    IMAGE_REPO,
    build_runner_image,
    default_context_dir,
    ensure_runner_bundle,
    runner_bundle_key,
)
from appliance.sandbox.podman import podman_env

ROOT = Path(__file__).resolve().parents[2]


def _image_id(tag: str, runtime_dir: str) -> str:
    out = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", tag],
        env=podman_env(runtime_dir),
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _rmi(tag: str, runtime_dir: str) -> None:
    subprocess.run(
        ["podman", "rmi", "-f", tag], env=podman_env(runtime_dir), capture_output=True, check=False
    )


def _listing(tag: str, runtime_dir: str) -> set[str]:
    """Every path in the image (from ``podman image mount``-free export: save + tar listing)."""
    cid = subprocess.run(
        ["podman", "create", tag], env=podman_env(runtime_dir), capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        tar = subprocess.run(
            ["podman", "export", cid], env=podman_env(runtime_dir), capture_output=True, check=True
        ).stdout
    finally:
        subprocess.run(
            ["podman", "rm", "-f", cid], env=podman_env(runtime_dir), capture_output=True, check=False
        )
    listed = subprocess.run(["tar", "-t"], input=tar, capture_output=True, check=True).stdout.decode()
    return {line.rstrip("/") for line in listed.splitlines()}


def test_bundle_key_follows_the_runner_source(tmp_path: Path) -> None:
    for rel in ("appliance/sandbox/runner.py", "image/runner/runner.spec"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    before = runner_bundle_key(tmp_path)
    assert runner_bundle_key(tmp_path) == before
    with (tmp_path / "appliance/sandbox/runner.py").open("a") as f:
        f.write("# changed\n")
    assert runner_bundle_key(tmp_path) != before


def test_explicit_bundle_must_hold_the_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_RUNNER_BUNDLE", str(tmp_path))
    with pytest.raises(ConfigError, match="no appliance-runner"):
        ensure_runner_bundle()


def test_unknown_tools_choice_is_a_config_error(runtime_dir: str) -> None:
    with pytest.raises(ConfigError, match=r"sandbox\.tools"):
        build_runner_image(podman_env=podman_env(runtime_dir), tools="python")


@pytest.mark.podman
def test_rebuild_gives_the_same_image_id(runner_image: str, runtime_dir: str) -> None:
    first = _image_id(runner_image, runtime_dir)
    again = build_runner_image(podman_env=podman_env(runtime_dir))
    assert again.tag == runner_image
    assert runner_image.startswith(IMAGE_REPO + ":")
    assert _image_id(again.tag, runtime_dir) == first


@pytest.mark.podman
def test_changed_runner_means_a_new_tag(runner_image: str, runtime_dir: str, tmp_path: Path) -> None:
    bundle = tmp_path / "appliance-runner"
    shutil.copytree(ensure_runner_bundle(), bundle, symlinks=True)
    with (bundle / "_internal" / "base_library.zip").open("ab") as f:
        f.write(b"\0")
    built = build_runner_image(podman_env=podman_env(runtime_dir), bundle=bundle)
    try:
        assert built.tag != runner_image
    finally:
        _rmi(built.tag, runtime_dir)


@pytest.mark.podman
def test_changed_context_means_a_new_tag(runner_image: str, runtime_dir: str, tmp_path: Path) -> None:
    ctx = tmp_path / "runner"
    shutil.copytree(default_context_dir(), ctx)
    with (ctx / "passwd").open("a") as f:
        f.write("extra:x:1000:1000::/tmp:/bin/false\n")
    built = build_runner_image(podman_env=podman_env(runtime_dir), context_dir=ctx)
    try:
        assert built.tag != runner_image
    finally:
        _rmi(built.tag, runtime_dir)


@pytest.mark.podman
def test_tools_none_has_the_runner_and_no_shell(
    runner_image: str, runner_image_none: str, runtime_dir: str
) -> None:
    """tools = "none": runner bundle, its libraries, passwd/group; no /bin, no shell, no busybox, no socat."""
    assert runner_image_none != runner_image
    files = _listing(runner_image_none, runtime_dir)
    assert "usr/libexec/appliance-runner/appliance-runner" in files
    assert {"etc/passwd", "etc/group", "etc/appliance-runner-tools"} <= files
    assert not [f for f in files if f.startswith("bin") or "busybox" in f or "socat" in f]
    shell = _listing(runner_image, runtime_dir)
    assert {"bin/sh", "bin/busybox", "bin/nc"} <= shell
    assert not [f for f in shell if "socat" in f]


@pytest.mark.podman
async def test_tools_none_runs_a_binary_the_run_mounts(
    runner_image_none: str, podman_socket: str, runtime_dir: str, tmp_path: Path
) -> None:
    """No shell in the image: ``sh`` is not found (a runner error, exit 127), while a static binary in
    the workspace runs."""
    import trio

    from appliance.sandbox.policy import Limits
    from appliance.sandbox.service import SandboxPaths, open_backend, run_in_sandbox

    paths = SandboxPaths(
        data_dir=str(tmp_path / "data"),
        runtime_dir=runtime_dir,
        workspaces=str(tmp_path / "ws"),
        mount_allowlist="",
        egress_allowlist="",
        image_file="",
        protected=(str(tmp_path / "data"),),
        home=str(tmp_path),
    )
    (tmp_path / "ws/main").mkdir(parents=True)
    shutil.copy("/bin/busybox", tmp_path / "ws/main/busybox")
    limits = Limits(memory_mb=64, pids=16, timeout_s=20)
    with trio.fail_after(60):
        async with open_backend("podman", socket=podman_socket, runtime_dir=runtime_dir) as backend:
            shell = await run_in_sandbox(
                backend,
                paths,
                group="main",
                argv=["sh", "-c", "true"],
                limits=limits,
                image=runner_image_none,
            )
            tool = await run_in_sandbox(
                backend,
                paths,
                group="main",
                argv=["/workspace/group/busybox", "echo", "static"],
                limits=limits,
                image=runner_image_none,
            )
    assert shell.exit_code == 127
    assert "cannot run 'sh'" in shell.runner_errors[0]
    assert (tool.exit_code, tool.stdout) == (0, b"static\n"), tool
