"""Build the runner image locally, reproducibly, FROM scratch; tag it with a content hash.

Rules:
- Nothing is pulled: the rootfs is assembled here from the files in ``image/runner/`` plus a static
  busybox (Debian's ``busybox-static``) for the tool shell, and the host's ``socat`` with exactly the
  shared libraries ``ldd`` lists for it (the runner's relay from its loopback proxy port to the egress
  socket, for ``net allow`` runs; busybox cannot relay TCP to a unix socket).
- Modes and ownership are normalised and the build uses ``--timestamp 0``, so the same inputs give the
  same image ID (checked by ``tests/sandbox/test_image.py``).
- The tag is ``localhost/appliance-runner:<16 hex of sha256 over the canonical rootfs listing>``, so a
  changed runner is a new image and an old tag never silently means new content.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

from appliance.errors import ConfigError, SandboxUnavailable
from appliance.log import get_logger

__all__ = ["IMAGE_REPO", "BuiltImage", "build_runner_image", "default_context_dir", "runner_tag"]

log = get_logger("appliance.sandbox.image")

IMAGE_REPO = "localhost/appliance-runner"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
SOCAT_CANDIDATES = ("/usr/bin/socat", "/bin/socat")
SOCAT_TARGET = "usr/bin/socat"  # the runner entry script calls it by this path


def default_context_dir() -> Path:
    """``image/runner`` of the source tree this package was loaded from."""
    return Path(__file__).resolve().parents[2] / "image" / "runner"


def _find_busybox(explicit: str | None) -> str:
    for candidate in (explicit, *BUSYBOX_CANDIDATES):
        if candidate and os.path.isfile(candidate):
            out = subprocess.run([candidate, "--help"], capture_output=True, check=False)
            if b"BusyBox" in out.stdout + out.stderr and _is_static(candidate):
                return candidate
    raise ConfigError("no static busybox found: apt-get install -y busybox-static")


def _is_static(path: str) -> bool:
    """True when the ELF file has no PT_INTERP header (no dynamic loader needed in the image)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
            return False
        order: Literal["little", "big"] = "little" if head[5] == 1 else "big"
        phoff = int.from_bytes(head[32:40], order)
        phentsize = int.from_bytes(head[54:56], order)
        phnum = int.from_bytes(head[56:58], order)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(int.from_bytes(table[i : i + 4], order) != 3 for i in range(0, len(table), phentsize))


def _find_socat(explicit: str | None) -> str:
    for candidate in (explicit, *SOCAT_CANDIDATES):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError("no socat found (the egress relay): apt-get install -y socat")


def _shared_libs(binary: str) -> list[str]:
    """Absolute paths ``ldd`` lists for ``binary`` (loader included, vDSO skipped), sorted.

    Raises :class:`ConfigError` when ``ldd`` is missing or a library is not found."""
    try:
        proc = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise ConfigError("ldd not found (Debian package libc-bin)") from exc
    if proc.returncode != 0:
        raise ConfigError(f"ldd {binary} failed: {proc.stderr.strip()[:200]}")
    libs: set[str] = set()
    for line in proc.stdout.splitlines():
        if "not found" in line:
            raise ConfigError(f"{binary} needs a library that is not installed: {line.strip()}")
        path = line.split("=>")[-1].strip().split(" (")[0].strip()
        if path.startswith("/"):
            libs.add(path)
    return sorted(libs)


def _add_file(root: Path, source: str, target: str, mode: int) -> None:
    """Copy ``source`` (its content, following links) to ``root/target``, parents 0755."""
    dest = root / target.lstrip("/")
    parts = dest.relative_to(root).parts[:-1]
    for i in range(1, len(parts) + 1):
        d = root.joinpath(*parts[:i])
        if not d.is_dir():
            d.mkdir()
            os.chmod(d, 0o755)
    shutil.copyfile(os.path.realpath(source), dest)
    os.chmod(dest, mode)


def _applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list"], capture_output=True, check=True, text=True).stdout
    return sorted({name for name in out.split() if name and "/" not in name and name != "busybox"})


def _assemble(ctx: Path, source: Path, busybox: str, socat: str) -> None:
    root = ctx / "rootfs"
    for d, mode in (
        ("bin", 0o755),
        ("etc", 0o755),
        ("usr", 0o755),
        ("usr/libexec", 0o755),
        ("run", 0o755),
        ("run/appliance", 0o755),
        ("workspace", 0o755),
        ("tmp", 0o1777),
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(root / d, mode)
    shutil.copyfile(busybox, root / "bin/busybox")
    os.chmod(root / "bin/busybox", 0o755)
    for applet in _applets(busybox):
        os.symlink("busybox", root / "bin" / applet)
    _add_file(root, socat, SOCAT_TARGET, 0o755)
    for lib in _shared_libs(socat):
        _add_file(root, lib, lib, 0o755)
    shutil.copyfile(source / "appliance-runner", root / "usr/libexec/appliance-runner")
    os.chmod(root / "usr/libexec/appliance-runner", 0o755)
    for name in ("passwd", "group"):
        shutil.copyfile(source / name, root / "etc" / name)
        os.chmod(root / "etc" / name, 0o644)
    shutil.copyfile(source / "Containerfile", ctx / "Containerfile")


def content_hash(ctx: Path) -> str:
    """sha256 over (path, type, mode, content or link target) of every file, sorted, + Containerfile."""
    digest = hashlib.sha256()
    digest.update((ctx / "Containerfile").read_bytes())
    root = ctx / "rootfs"
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        digest.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        digest.update(b"\n")
    return digest.hexdigest()


def runner_tag(hash_hex: str) -> str:
    return f"{IMAGE_REPO}:{hash_hex[:16]}"


class BuiltImage:
    __slots__ = ("image_id", "tag")

    def __init__(self, tag: str, image_id: str) -> None:
        self.tag = tag
        self.image_id = image_id


def build_runner_image(
    *,
    podman_env: dict[str, str],
    context_dir: Path | None = None,
    busybox: str | None = None,
    socat: str | None = None,
    podman: str = "podman",
) -> BuiltImage:
    """Assemble the context in a temp dir and ``podman build --timestamp 0``; return tag and image ID.

    ``podman_env`` must carry our ``CONTAINERS_CONF``. Blocking (runs podman): call it from a thread in
    async code. Raises :class:`ConfigError` (no busybox / socat / context) or :class:`SandboxUnavailable`.
    """
    source = context_dir or default_context_dir()
    if not (source / "Containerfile").is_file():
        raise ConfigError(f"runner image context not found: {source}")
    bb = _find_busybox(busybox)
    relay = _find_socat(socat)
    with tempfile.TemporaryDirectory(prefix="appliance-runner-") as tmp:
        ctx = Path(tmp)
        _assemble(ctx, source, bb, relay)
        tag = runner_tag(content_hash(ctx))
        cmd = [podman, "build", "-q", "--timestamp", "0", "--no-cache", "-t", tag, "-f", "Containerfile", "."]
        proc = subprocess.run(cmd, cwd=ctx, env=podman_env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SandboxUnavailable(f"podman build failed: {proc.stderr.strip()[-300:]}")
        image_id = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    log.info("sandbox_image_built", tag=tag, image_id=image_id)
    return BuiltImage(tag, image_id)
