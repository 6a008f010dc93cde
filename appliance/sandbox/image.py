"""Build the runner image locally, reproducibly, FROM scratch; tag it with a content hash.

Rules:
- Nothing is pulled: the rootfs is assembled here from ``image/runner/`` (Containerfile, passwd, group),
  the frozen runner (``appliance/sandbox/runner.py`` through PyInstaller, one folder, built by
  ``image/runner/build-runner.sh`` and cached by a hash of its inputs), and exactly the shared libraries
  ``ldd`` lists for the runner's ELF files (glibc's loader included).
- ``tools = "none"``: nothing else (no shell: a command must be a binary the run mounts).
  ``tools = "shell"``: plus a static busybox and its applets in ``/bin``.
- Modes and ownership are normalised and the build uses ``--timestamp 0``, so the same inputs give the
  same image ID (checked by ``tests/sandbox/test_sandbox_image.py``).
- The tag is ``localhost/appliance-runner:<16 hex of sha256 over the canonical rootfs listing>``; the
  tools choice is part of the rootfs (``/etc/appliance-runner-tools``), so it is part of the tag.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from appliance.errors import ConfigError, SandboxUnavailable
from appliance.log import get_logger

__all__ = [
    "IMAGE_REPO",
    "RUNNER_ENTRY",
    "TOOLS",
    "BuiltImage",
    "build_runner_image",
    "default_context_dir",
    "ensure_runner_bundle",
    "runner_bundle_key",
    "runner_tag",
]

log = get_logger("appliance.sandbox.image")

IMAGE_REPO = "localhost/appliance-runner"
TOOLS = ("none", "shell")
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
RUNNER_DIR = "usr/libexec/appliance-runner"
RUNNER_ENTRY = "/" + RUNNER_DIR + "/appliance-runner"  # the Containerfile's ENTRYPOINT
BUNDLE_ENV = "APPLIANCE_RUNNER_BUNDLE"  # a prebuilt bundle dir (e.g. from a release) instead of building
_SOURCE_ROOT = Path(__file__).resolve().parents[2]
_BUNDLE_INPUTS = (
    "appliance/sandbox/runner.py",
    "image/runner/runner.spec",
    "image/runner/build-runner.sh",
    "image/build-venv.sh",
    "image/requirements-build.txt",
    "requirements.lock",
)


def default_context_dir() -> Path:
    """``image/runner`` of the source tree this package was loaded from."""
    return _SOURCE_ROOT / "image" / "runner"


def runner_bundle_key(root: Path = _SOURCE_ROOT) -> str:
    """16 hex of sha256 over the frozen runner's inputs (sources, spec, locks, machine)."""
    digest = hashlib.sha256(platform.machine().encode() + b"\0")
    for rel in _BUNDLE_INPUTS:
        digest.update(rel.encode() + b"\0")
        with contextlib.suppress(FileNotFoundError):
            digest.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def ensure_runner_bundle(cache_dir: Path | None = None) -> Path:
    """The frozen runner's one-folder bundle, built once per input hash (``build/runner-bundle/<key>``).

    ``$APPLIANCE_RUNNER_BUNDLE`` names a prebuilt bundle instead; a frozen release carries its own in
    ``_internal/runner-bundle`` (image/build-bundle.sh). Blocking (runs PyInstaller, ~5 s).
    Raises :class:`ConfigError` when the build fails or the source tree is not available.
    """
    explicit = os.environ.get(BUNDLE_ENV)
    if explicit:
        bundle = Path(explicit)
        if not (bundle / "appliance-runner").is_file():
            raise ConfigError(f"{BUNDLE_ENV}={explicit} has no appliance-runner executable")
        return bundle
    shipped = _SOURCE_ROOT / "runner-bundle" / "appliance-runner"  # the release bundle (build-bundle.sh)
    if (shipped / "appliance-runner").is_file():
        return shipped
    script = _SOURCE_ROOT / "image" / "runner" / "build-runner.sh"
    if not script.is_file():
        raise ConfigError(f"the runner build script is not available ({script}); set {BUNDLE_ENV}")
    cache = cache_dir or _SOURCE_ROOT / "build" / "runner-bundle"
    out = cache / runner_bundle_key()
    bundle = out / "appliance-runner"
    with _locked(cache / ".lock"):
        if not (bundle / "appliance-runner").is_file():
            proc = subprocess.run([str(script), str(out)], capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not (bundle / "appliance-runner").is_file():
                raise ConfigError(
                    f"freezing the runner failed: {(proc.stderr or proc.stdout).strip()[-300:]}"
                )
            log.info("sandbox_runner_frozen", path=str(bundle))
    return bundle


def _find_busybox(explicit: str | None) -> str:
    for candidate in (explicit, *BUSYBOX_CANDIDATES):
        if candidate and os.path.isfile(candidate):
            out = subprocess.run([candidate, "--help"], capture_output=True, check=False)
            if b"BusyBox" in out.stdout + out.stderr and _is_static(candidate):
                return candidate
    raise ConfigError("no static busybox found: apt-get install -y busybox-static")


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


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


def _shared_libs(binary: str) -> list[str]:
    """Absolute paths ``ldd`` lists for ``binary`` (loader included, vDSO skipped), sorted.

    Raises :class:`ConfigError` when ``ldd`` is missing or a library is not found."""
    try:
        proc = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise ConfigError("ldd not found (Debian package libc-bin)") from exc
    if "not a dynamic executable" in proc.stdout + proc.stderr or "statically linked" in proc.stdout:
        return []
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


def _mkdirs(root: Path, *dirs: tuple[str, int]) -> None:
    for d, mode in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(root / d, mode)


def _add_bundle(root: Path, bundle: Path) -> list[str]:
    """Copy the frozen runner to ``/usr/libexec/appliance-runner`` (dirs 0755, files 0755/0644) and
    return the ELF files in it (their libraries go into the image)."""
    target = root / RUNNER_DIR
    elves: list[str] = []
    for src in sorted(bundle.rglob("*")):
        dest = target / src.relative_to(bundle)
        if src.is_dir() and not src.is_symlink():
            _mkdirs(root, (str(dest.relative_to(root)), 0o755))
        elif src.is_symlink():
            os.symlink(os.readlink(src), dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            executable = _is_elf(src)
            os.chmod(dest, 0o755 if executable else 0o644)
            if executable:
                elves.append(str(src))
    return elves


def _assemble(ctx: Path, source: Path, bundle: Path, tools: str, busybox: str | None) -> None:
    root = ctx / "rootfs"
    _mkdirs(
        root,
        ("etc", 0o755),
        ("usr", 0o755),
        ("usr/libexec", 0o755),
        ("run", 0o755),
        ("run/appliance", 0o755),
        ("workspace", 0o755),
        ("tmp", 0o1777),
    )
    libs: set[str] = set()
    for elf in _add_bundle(root, bundle):
        libs.update(_shared_libs(elf))
    for lib in sorted(libs):
        if not (root / lib.lstrip("/")).exists():
            _add_file(root, lib, lib, 0o755)
    if tools == "shell":
        _mkdirs(root, ("bin", 0o755))
        shutil.copyfile(busybox or _find_busybox(None), root / "bin/busybox")
        os.chmod(root / "bin/busybox", 0o755)
        for applet in _applets(busybox or _find_busybox(None)):
            if not (root / "bin" / applet).exists():
                os.symlink("busybox", root / "bin" / applet)
    (root / "etc/appliance-runner-tools").write_text(tools + "\n")
    os.chmod(root / "etc/appliance-runner-tools", 0o644)
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
    tools: str = "shell",
    busybox: str | None = None,
    bundle: Path | None = None,
    podman: str = "podman",
) -> BuiltImage:
    """Assemble the context in a temp dir and ``podman build --timestamp 0``; return tag and image ID.

    ``podman_env`` must carry our ``CONTAINERS_CONF``. Blocking (freezes the runner when not cached, runs
    podman): call it from a thread in async code. Raises :class:`ConfigError` (bad tools choice, no
    busybox, no context, runner build failed) or :class:`SandboxUnavailable` (podman build failed).
    """
    if tools not in TOOLS:
        raise ConfigError(
            f"sandbox.tools must be one of {', '.join(TOOLS)}, got {tools!r}", key="sandbox.tools"
        )
    source = context_dir or default_context_dir()
    if not (source / "Containerfile").is_file():
        raise ConfigError(f"runner image context not found: {source}")
    bb = _find_busybox(busybox) if tools == "shell" else None
    runner = bundle or ensure_runner_bundle()
    with tempfile.TemporaryDirectory(prefix="appliance-runner-") as tmp:
        ctx = Path(tmp)
        _assemble(ctx, source, runner, tools, bb)
        tag = runner_tag(content_hash(ctx))
        cmd = [podman, "build", "-q", "--timestamp", "0", "--no-cache", "-t", tag, "-f", "Containerfile", "."]
        proc = subprocess.run(cmd, cwd=ctx, env=podman_env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SandboxUnavailable(f"podman build failed: {proc.stderr.strip()[-300:]}")
        image_id = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    log.info("sandbox_image_built", tag=tag, image_id=image_id, tools=tools)
    return BuiltImage(tag, image_id)
