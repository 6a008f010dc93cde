"""Keys and a small fake bundle shared by the artifact tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from appliance.artifact import minisign
from tests.artifact.keyring import make_key

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def key() -> minisign.SecretKey:
    return make_key(1)


@pytest.fixture
def other_key() -> minisign.SecretKey:
    return make_key(2)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A tiny onedir look-alike: an executable, nested data, an empty dir and an internal symlink."""
    root = tmp_path / "bundle" / "appliance"
    (root / "_internal" / "lib").mkdir(parents=True)
    (root / "_internal" / "empty").mkdir()
    (root / "appliance").write_bytes(b"\x7fELF fake launcher\n")
    os.chmod(root / "appliance", 0o700)
    (root / "_internal" / "base_library.zip").write_bytes(b"zip" * 1000)
    (root / "_internal" / "lib" / "libx.so.1").write_bytes(b"lib" * 100)
    os.chmod(root / "_internal" / "lib" / "libx.so.1", 0o664)
    os.symlink("libx.so.1", root / "_internal" / "lib" / "libx.so")
    return root


@pytest.fixture(scope="session")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The frozen launcher, built once per session by image/build-bundle.sh (or APPLIANCE_FROZEN_BUNDLE)."""
    existing = os.environ.get("APPLIANCE_FROZEN_BUNDLE")
    if existing:
        return Path(existing).resolve() / "appliance"
    out = tmp_path_factory.mktemp("frozen")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "PYTHON"))}
    env["BUILD_WORK"] = str(out / "work")
    proc = subprocess.run(
        [str(ROOT / "image" / "build-bundle.sh"), str(out / "dist")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "dist" / "appliance" / "appliance"
