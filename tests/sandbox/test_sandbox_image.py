"""The runner image: built locally FROM scratch, reproducible, tagged by content."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.sandbox.image import IMAGE_REPO, build_runner_image, default_context_dir
from appliance.sandbox.podman import podman_env

pytestmark = [pytest.mark.podman]


def _image_id(tag: str, runtime_dir: str) -> str:
    out = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", tag],
        env=podman_env(runtime_dir),
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_rebuild_gives_the_same_image_id(runner_image: str, runtime_dir: str) -> None:
    first = _image_id(runner_image, runtime_dir)
    again = build_runner_image(podman_env=podman_env(runtime_dir))
    assert again.tag == runner_image
    assert runner_image.startswith(IMAGE_REPO + ":")
    assert _image_id(again.tag, runtime_dir) == first


def test_changed_runner_means_a_new_tag(runner_image: str, runtime_dir: str, tmp_path: Path) -> None:
    ctx = tmp_path / "runner"
    shutil.copytree(default_context_dir(), ctx)
    with (ctx / "appliance-runner").open("a") as f:
        f.write("# changed\n")
    built = build_runner_image(podman_env=podman_env(runtime_dir), context_dir=ctx)
    try:
        assert built.tag != runner_image
    finally:
        subprocess.run(
            ["podman", "rmi", "-f", built.tag], env=podman_env(runtime_dir), capture_output=True, check=False
        )
