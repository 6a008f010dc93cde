"""OTA test rig: a test key, real signed artifacts built by the artifact pipeline, and an appliance root
with a database and a running ``appliance serve`` managed by ``service.py`` (our systemd stand-in)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from appliance.artifact import minisign
from appliance.artifact.release import ReleaseFiles, build_release
from appliance.testing.process import free_port

V1, V2, V0 = "1.0.0", "1.1.0", "0.9.0"
SERVICE = Path(__file__).with_name("service.py")
VENV_APPLIANCE = Path(sys.executable).parent / "appliance"
DAY = 86400


def make_key() -> minisign.SecretKey:
    return minisign.keypair_from_seed(b"otatest1", bytes(range(32)))


def public_line(key: minisign.SecretKey) -> str:
    return minisign.encode_public_key(key.public).splitlines()[1]


LAUNCHER = """#!/bin/sh
# tiny bundle entry point: the real frozen binary sits here as <slot>/appliance
case "$1" in
  doctor) [ "{fail_doctor}" = yes ] && {{ echo '{{"ok": false}}'; exit 1; }} ;;
  version) [ "{fail_selfcheck}" = yes ] && exit 3 ;;
esac
exec "{exe}" "$@"
"""


def build_bundle_release(
    out: Path,
    version: str,
    *,
    key: minisign.SecretKey | None = None,
    fail_doctor: bool = False,
    fail_selfcheck: bool = False,
    created: int | None = None,
    valid_days: int = 30,
) -> ReleaseFiles:
    """A small bundle directory -> the real artifact pipeline (archive + manifest + minisign signature)."""
    bundle = out / f"bundle-{version}{'-bad' if fail_doctor or fail_selfcheck else ''}"
    bundle.mkdir(parents=True)
    launcher = bundle / "appliance"
    launcher.write_text(
        LAUNCHER.format(
            fail_doctor="yes" if fail_doctor else "no",
            fail_selfcheck="yes" if fail_selfcheck else "no",
            exe=VENV_APPLIANCE,
        )
    )
    launcher.chmod(0o755)
    (bundle / "VERSION").write_text(version + "\n")
    (bundle / "lib").mkdir()
    (bundle / "lib" / "payload.bin").write_bytes(
        os.urandom(200_000)
    )  # incompressible: a download worth resuming
    dist = out / f"dist-{version}{'-bad' if fail_doctor or fail_selfcheck else ''}"
    files, _ = build_release(
        bundle,
        dist,
        key=key or make_key(),
        name="appliance",
        version=version,
        arch=os.uname().machine,
        source_date_epoch=created if created is not None else int(time.time()) - 3600,
        valid_days=valid_days,
        min_version="0.1.0",
    )
    (dist / "LATEST").write_text(files.manifest.name + "\n")
    return files


@attrs.frozen
class Artifacts:
    v0: ReleaseFiles
    v1: ReleaseFiles
    v2: ReleaseFiles
    v2_bad_health: ReleaseFiles
    pub: Path


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    out = tmp_path_factory.mktemp("artifacts")
    key = make_key()
    pub = out / "test.pub"
    pub.write_text(minisign.encode_public_key(key.public))
    return Artifacts(
        v0=build_bundle_release(out, V0),
        v1=build_bundle_release(out, V1),
        v2=build_bundle_release(out, V2),
        v2_bad_health=build_bundle_release(out, "1.2.0", fail_doctor=True),
        pub=pub,
    )


class Rig:
    """One appliance root + data dir + service, driven through the real CLI as subprocesses."""

    def __init__(self, base: Path, artifacts: Artifacts) -> None:
        self.base = base
        self.artifacts = artifacts
        self.root = base / "root"
        self.data = base / "data"
        self.state_dir = base / "svc"
        self.state_dir.mkdir(parents=True)
        self.port = free_port()
        self.cfg = self.state_dir / "service.json"
        self.cfg.write_text(
            json.dumps(
                {
                    "root": str(self.root),
                    "data_dir": str(self.data),
                    "state_dir": str(self.state_dir),
                    "port": str(self.port),
                    "public_key": str(artifacts.pub),
                }
            )
        )

    @property
    def db(self) -> Path:
        return self.data / "appliance.sqlite3"

    def flags(self) -> list[str]:
        svc = f"{sys.executable} {SERVICE}"
        return [
            "--root", str(self.root),
            "--data-dir", str(self.data),
            "--public-key", str(self.artifacts.pub),
            "--restart-command", f"{svc} restart {self.cfg}",
            "--stop-command", f"{svc} stop {self.cfg}",
            "--health-url", f"http://127.0.0.1:{self.port}/ready",
            "--trial-deadline", "60",
        ]  # fmt: skip

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
        env["APPLIANCE_LOG_FORMAT"] = "json"
        env.update(extra or {})
        return env

    def ota(
        self, *args: str, env: dict[str, str] | None = None, flags: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "appliance.ota", args[0], *(self.flags() if flags else []), *args[1:]]
        return subprocess.run(
            cmd, env=self.env(env), capture_output=True, text=True, timeout=120, check=False
        )

    def service(self, action: str) -> None:
        subprocess.run(
            [sys.executable, str(SERVICE), action, str(self.cfg)], env=self.env(), check=True, timeout=60
        )

    def started_versions(self) -> list[str]:
        path = self.state_dir / "started.jsonl"
        if not path.exists():
            return []
        return [json.loads(line)["version"] for line in path.read_text().splitlines()]

    def current(self) -> str | None:
        link = self.root / "current"
        return os.path.basename(os.readlink(link)) if os.path.lexists(link) else None

    def slots(self) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "appliance.ota", "slots", "--json", "--root", str(self.root)],
            env=self.env(), capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    # database --------------------------------------------------------------------------------------

    def mark(self, label: str) -> None:
        from appliance.store import open_database

        db = open_database(self.db)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS ota_marker (label TEXT NOT NULL)")
            db.execute("INSERT INTO ota_marker (label) VALUES (?)", (label,))
        finally:
            db.close()

    def marks(self, path: Path | None = None) -> list[str]:
        from appliance.store import open_database

        db = open_database(path or self.db)
        try:
            assert db.quick_check() == ["ok"]
            return [str(r[0]) for r in db.execute("SELECT label FROM ota_marker ORDER BY rowid")]
        finally:
            db.close()

    def install_first(self) -> None:
        done = self.ota("update", str(self.artifacts.v1.manifest))
        assert done.returncode == 0, done.stderr
        self.mark("v1-data")
        self.service("restart")


@pytest.fixture
def rig(tmp_path: Path, artifacts: Artifacts) -> Iterator[Rig]:
    r = Rig(tmp_path, artifacts)
    try:
        yield r
    finally:
        r.service("stop")


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """Everything under ``root`` (links by target, files by size+mtime) for "nothing changed" checks."""
    out: dict[str, tuple[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = ("link:" + os.readlink(path), 0)
            elif path.is_file():
                st = path.stat()
                out[rel] = ("file", st.st_size * 1_000_000_000 + st.st_mtime_ns % 1_000_000_000)
            else:
                out[rel] = ("dir", 0)
    return out


def copy_release(files: ReleaseFiles, dest: Path) -> ReleaseFiles:
    dest.mkdir(parents=True, exist_ok=True)
    for p in (files.archive, files.manifest, files.signature):
        shutil.copy2(p, dest / p.name)
    return ReleaseFiles(dest / files.archive.name, dest / files.manifest.name, dest / files.signature.name)
