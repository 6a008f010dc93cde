"""Sandbox policy (sans-IO): which mounts, which network, which limits a run gets.

Rules (each one has a unit test in ``tests/sandbox/test_policy.py``):

- The group's workspace is the only read-write mount. Everything else is read-only.
- Extra mounts come only from the mount allowlist file. No file, no extra mounts.
- Paths are resolved (``~``, ``..``, symlinks) *before* any check. Resolution is I/O, so the shell passes a
  ``Resolver``; this module never calls ``os``. A path the resolver cannot find is refused.
- Blocked names (``.ssh``, ``.aws``, ``.gnupg``, ``.env``, ``credentials``, ...) are always refused, as are
  the appliance's own data dir and key dirs, and anything above them (mounting ``/`` would expose them).
- Secret-looking children of an accepted directory (a ``.env`` in a project) are masked.
- Non-main groups get shared data read-only, and extra mounts read-only when the allowlist says so.
- Network is ``none`` unless the profile asks for ``allow``; then only allowlisted host/port pairs, through
  the host's egress proxy.
- The result is one frozen :class:`RunSpec` that both engine backends translate; nothing else reaches
  the engine.

Allowlist files are line based so that every error names ``file:line`` in one line.
"""

from __future__ import annotations

import enum
import ipaddress
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping

import attrs

from appliance.errors import ConfigError, Forbidden

__all__ = [
    "DEFAULT_BLOCKED_PATTERNS",
    "RUNNER_PIPE_DIR",
    "AllowedRoot",
    "AllowlistError",
    "EgressAllowlist",
    "EgressRule",
    "Limits",
    "Mount",
    "MountAllowlist",
    "MountKind",
    "MountRefused",
    "MountRejection",
    "MountRequest",
    "NetMode",
    "ResolvedPath",
    "Resolver",
    "RunSpec",
    "SandboxRefused",
    "build_run_spec",
    "egress_allows",
    "parse_egress_allowlist",
    "parse_mount_allowlist",
    "resolve_mounts",
    "validate_group_folder",
]

DEFAULT_BLOCKED_PATTERNS: tuple[str, ...] = (
    ".ssh",
    ".gnupg",
    ".gpg",
    ".aws",
    ".azure",
    ".gcloud",
    ".kube",
    ".docker",
    "credentials",
    ".env",
    ".netrc",
    ".npmrc",
    ".pypirc",
    "id_rsa",
    "id_ed25519",
    "private_key",
    ".secret",
)

#: Where the runner entry finds the per-run pipes (stdin/stdout/stderr FIFOs) inside the container.
RUNNER_PIPE_DIR = "/run/appliance"
WORKSPACE_TARGET = "/workspace/group"
SHARED_TARGET = "/workspace/shared"
EXTRA_TARGET_ROOT = "/workspace/extra"

_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class SandboxRefused(Forbidden):
    """The policy refused a run or a mount; the message says which rule."""


class MountRefused(SandboxRefused):
    """A mount that must be present (workspace) failed a rule, or changed after it was checked."""


class AllowlistError(ConfigError):
    """An allowlist file has a bad entry; the message is ``file:line: what is wrong``."""


class NetMode(enum.StrEnum):
    NONE = "none"
    ALLOW = "allow"


class MountKind(enum.StrEnum):
    BIND = "bind"
    TMPFS = "tmpfs"
    MASK = "mask"  # hide a host file inside a bind: /dev/null over it


@attrs.frozen
class ResolvedPath:
    """What the shell learned about a path: its real path and whether it exists.

    ``secret_children`` lists direct children whose *names* match a blocked pattern (the shell lists them;
    the policy decides). ``is_dir`` tells a file mask from a directory mask.
    """

    real: str
    exists: bool = True
    is_dir: bool = True
    secret_children: tuple[tuple[str, bool], ...] = ()  # (name, is_dir)


Resolver = Callable[[str], ResolvedPath]


@attrs.frozen
class Mount:
    """One mount as the engine sees it. ``source`` is always a resolved real path (or empty for tmpfs)."""

    kind: MountKind
    source: str
    target: str
    readonly: bool = True
    options: tuple[str, ...] = ()


@attrs.frozen
class MountRequest:
    """An extra mount a group asks for; ``container_path`` defaults to the host path's basename."""

    host_path: str
    container_path: str = ""
    readonly: bool = True


@attrs.frozen
class MountRejection:
    request: MountRequest
    reason: str


@attrs.frozen
class AllowedRoot:
    path: str
    read_write: bool = False
    line: int = 0


@attrs.frozen
class MountAllowlist:
    """Parsed mount allowlist: roots, extra blocked patterns, and the non-main read-only switch."""

    roots: tuple[AllowedRoot, ...] = ()
    blocked_patterns: tuple[str, ...] = ()
    non_main_read_only: bool = True

    def patterns(self) -> tuple[str, ...]:
        return DEFAULT_BLOCKED_PATTERNS + self.blocked_patterns


@attrs.frozen
class EgressRule:
    """``host`` is a lowercase name, ``*.suffix`` for a domain and its subdomains, or an IP literal."""

    host: str
    port: int
    line: int = 0

    def matches(self, host: str, port: int) -> bool:
        if port != self.port:
            return False
        host = host.lower().rstrip(".")
        if self.host.startswith("*."):
            suffix = self.host[1:]
            return host.endswith(suffix) or host == self.host[2:]
        return host == self.host


@attrs.frozen
class EgressAllowlist:
    rules: tuple[EgressRule, ...] = ()


@attrs.frozen
class Limits:
    cpus: float = 1.0
    memory_mb: int = 256
    pids: int = 128
    timeout_s: float = 120.0
    output_cap_bytes: int = 65_536
    tmpfs_mb: int = 16
    nofile: int = 1024
    nproc: int = 4096

    def __attrs_post_init__(self) -> None:
        if not (self.cpus > 0 and self.memory_mb >= 8 and self.pids >= 2 and self.timeout_s > 0):
            raise ValueError("limits must be positive (cpus, memory_mb >= 8, pids >= 2, timeout_s)")
        if self.output_cap_bytes < 1 or self.tmpfs_mb < 1:
            raise ValueError("output cap and tmpfs size must be positive")


@attrs.frozen
class RunSpec:
    """Everything an engine needs for one run. Deliberately holds no secrets: those go over stdin.

    ``env`` is for harmless settings (``TZ``, ``LANG``); :func:`build_run_spec` refuses secret-looking keys.
    """

    image: str
    argv: tuple[str, ...]
    mounts: tuple[Mount, ...]
    network: NetMode = NetMode.NONE
    limits: Limits = attrs.Factory(Limits)
    egress: EgressAllowlist = attrs.Factory(EgressAllowlist)
    user: str = "65534:65534"
    workdir: str = "/"
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    group: str = ""
    read_only_root: bool = True
    cap_drop_all: bool = True
    no_new_privileges: bool = True


# ----------------------------------------------------------------------------------------------- groups


def validate_group_folder(name: str) -> str:
    """Return ``name`` if it is a safe group folder name, else raise :class:`SandboxRefused`.

    Same rule as NanoClaw: ``[A-Za-z0-9][A-Za-z0-9_-]{0,63}``, and ``global`` is reserved.
    """
    if not _GROUP_RE.match(name) or name.lower() == "global":
        raise SandboxRefused(f"invalid group folder name: {name!r}")
    return name


# ----------------------------------------------------------------------------------------------- paths


def _norm(path: str, home: str) -> str:
    """Expand ``~`` and make absolute + normal (lexically). Symlinks are the resolver's job."""
    if path == "~" or path.startswith("~/"):
        path = home + path[1:]
    if not path.startswith("/"):
        raise SandboxRefused(f"mount path must be absolute or start with ~/: {path!r}")
    return posixpath.normpath(path).replace("//", "/")


def _is_under(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root.rstrip("/") + "/")


def blocked_reason(real: str, patterns: Iterable[str], protected: Iterable[str]) -> str | None:
    """Why ``real`` (already resolved) may never be mounted, or None.

    A component equal to or containing a pattern blocks (deliberately broad, as NanoClaw). A protected dir,
    anything inside it, and anything *above* it (its parent would expose it) block too.
    """
    lowered = real.lower()
    for pattern in patterns:
        p = pattern.lower()
        if any(p in part for part in lowered.split("/") if part):
            return f"blocked pattern {pattern!r} in {real}"
    for prot in protected:
        if _is_under(real, prot) or _is_under(prot, real):
            return f"{real} overlaps the appliance's protected dir {prot}"
    return None


def _container_name(request: MountRequest) -> str:
    name = request.container_path or posixpath.basename(request.host_path.rstrip("/"))
    if not name or name.startswith("/") or ":" in name or "," in name or "\x00" in name:
        raise SandboxRefused(f"invalid container path {name!r}")
    if any(part in ("..", ".") for part in name.split("/")):
        raise SandboxRefused(f"invalid container path {name!r}")
    return name


def _masks(resolved: ResolvedPath, target: str, patterns: tuple[str, ...]) -> list[Mount]:
    """Mask secret-looking children of a directory mount (``.env`` in a project)."""
    masks = []
    for child, is_dir in resolved.secret_children:
        if blocked_reason(child, patterns, ()) is None:
            continue
        child_target = posixpath.join(target, child)
        if is_dir:
            masks.append(Mount(MountKind.TMPFS, "", child_target, True, ("size=1k", "mode=000")))
        else:
            masks.append(Mount(MountKind.MASK, "/dev/null", child_target, True))
    return masks


def resolve_mounts(
    *,
    group: str,
    is_main: bool,
    workspace: str,
    shared: str | None,
    requests: Iterable[MountRequest],
    allowlist: MountAllowlist | None,
    resolver: Resolver,
    home: str,
    protected: Iterable[str],
) -> tuple[tuple[Mount, ...], tuple[MountRejection, ...]]:
    """Turn a group's mount needs into engine mounts, refusing what the rules forbid.

    The workspace must pass (else :class:`MountRefused`); extra mounts that fail are returned as rejections
    and the run goes ahead without them. ``protected`` are the appliance's data and key dirs (resolved
    by the caller too). Raises :class:`SandboxRefused` for a bad group name.
    """
    validate_group_folder(group)
    protected_real = tuple(resolver(_norm(p, home)).real for p in protected)
    patterns = allowlist.patterns() if allowlist is not None else DEFAULT_BLOCKED_PATTERNS
    mounts: list[Mount] = []

    ws = resolver(_norm(workspace, home))
    if not ws.exists or not ws.is_dir:
        raise MountRefused(f"workspace {workspace} does not exist")
    reason = blocked_reason(ws.real, patterns, protected_real)
    if reason is not None:
        raise MountRefused(f"workspace refused: {reason}")
    mounts.append(Mount(MountKind.BIND, ws.real, WORKSPACE_TARGET, readonly=False))
    mounts.extend(_masks(ws, WORKSPACE_TARGET, patterns))

    if shared is not None:
        sh = resolver(_norm(shared, home))
        if sh.exists and sh.is_dir and blocked_reason(sh.real, patterns, protected_real) is None:
            mounts.append(Mount(MountKind.BIND, sh.real, SHARED_TARGET, readonly=not is_main))
            mounts.extend(_masks(sh, SHARED_TARGET, patterns))

    rejections: list[MountRejection] = []
    for request in requests:
        try:
            mounts.extend(_extra_mount(request, is_main, allowlist, resolver, home, protected_real, patterns))
        except SandboxRefused as exc:
            rejections.append(MountRejection(request, exc.message))
    targets = [m.target for m in mounts]
    if len(set(targets)) != len(targets):
        raise MountRefused("two mounts share a container path")
    return tuple(mounts), tuple(rejections)


def _extra_mount(
    request: MountRequest,
    is_main: bool,
    allowlist: MountAllowlist | None,
    resolver: Resolver,
    home: str,
    protected_real: tuple[str, ...],
    patterns: tuple[str, ...],
) -> list[Mount]:
    if allowlist is None:
        raise SandboxRefused("no mount allowlist: extra mounts are disabled")
    name = _container_name(request)
    resolved = resolver(_norm(request.host_path, home))
    if not resolved.exists:
        raise SandboxRefused(f"{request.host_path} does not exist")
    reason = blocked_reason(resolved.real, patterns, protected_real)
    if reason is not None:
        raise SandboxRefused(reason)
    root = None
    for candidate in allowlist.roots:
        root_resolved = resolver(_norm(candidate.path, home))
        if root_resolved.exists and _is_under(resolved.real, root_resolved.real):
            root = candidate
            break
    if root is None:
        raise SandboxRefused(f"{resolved.real} is not under an allowed root")
    read_write = (
        not request.readonly and root.read_write and not (allowlist.non_main_read_only and not is_main)
    )
    target = posixpath.join(EXTRA_TARGET_ROOT, name)
    return [
        Mount(MountKind.BIND, resolved.real, target, readonly=not read_write),
        *(_masks(resolved, target, patterns) if resolved.is_dir else ()),
    ]


# ----------------------------------------------------------------------------------------------- files


def _lines(text: str) -> Iterable[tuple[int, list[str]]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            yield number, line.split()


def parse_mount_allowlist(text: str, source: str) -> MountAllowlist:
    """Parse a mount allowlist file. Raises :class:`AllowlistError` naming ``source:line``.

    Format, one entry a line, ``#`` starts a comment::

        allow ~/projects rw      # a root; rw or ro (default ro)
        block password           # an extra blocked name pattern
        non-main ro              # ro (default) or inherit: non-main groups' extra mounts forced ro
    """
    roots: list[AllowedRoot] = []
    blocked: list[str] = []
    non_main_ro = True
    for number, words in _lines(text):
        where = f"{source}:{number}"
        keyword, args = words[0], words[1:]
        if keyword == "allow":
            if len(args) not in (1, 2) or (len(args) == 2 and args[1] not in ("ro", "rw")):
                raise AllowlistError(f"{where}: expected 'allow PATH [ro|rw]'")
            path = args[0]
            if not (path.startswith(("/", "~/")) or path == "~"):
                raise AllowlistError(f"{where}: path must be absolute or start with ~/: {path!r}")
            if any(part == ".." for part in path.split("/")):
                raise AllowlistError(f"{where}: path must not contain '..': {path!r}")
            roots.append(AllowedRoot(path, len(args) == 2 and args[1] == "rw", number))
        elif keyword == "block":
            if len(args) != 1 or "/" in args[0]:
                raise AllowlistError(f"{where}: expected 'block NAME-PATTERN' (no '/')")
            blocked.append(args[0])
        elif keyword == "non-main":
            if args not in (["ro"], ["inherit"]):
                raise AllowlistError(f"{where}: expected 'non-main ro' or 'non-main inherit'")
            non_main_ro = args == ["ro"]
        else:
            raise AllowlistError(f"{where}: unknown keyword {keyword!r} (allow, block, non-main)")
    return MountAllowlist(tuple(roots), tuple(blocked), non_main_ro)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return True
    name = host[2:] if host.startswith("*.") else host
    labels = name.split(".")
    return len(name) <= 253 and len(labels) >= 2 and all(_LABEL_RE.match(label) for label in labels)


def parse_egress_allowlist(text: str, source: str) -> EgressAllowlist:
    """Parse an egress allowlist: ``host[:port]`` a line (default port 443).

    ``*.example.com`` allows the domain and its subdomains; IPv6 literals go in brackets (``[::1]:8080``).
    Raises :class:`AllowlistError` naming ``source:line``.
    """
    rules: list[EgressRule] = []
    for number, words in _lines(text):
        where = f"{source}:{number}"
        if len(words) != 1:
            raise AllowlistError(f"{where}: expected one 'host[:port]' entry per line")
        entry = words[0].lower()
        port_text = "443"
        if entry.startswith("["):
            host, sep, rest = entry[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise AllowlistError(f"{where}: bad IPv6 entry {words[0]!r}")
            port_text = rest[1:] or port_text
        elif entry.count(":") == 1:
            host, port_text = entry.split(":")
        else:
            host = entry
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise AllowlistError(f"{where}: bad port {port_text!r} (1-65535)")
        if "*" in host[1:] or (host.startswith("*") and not host.startswith("*.")) or not _valid_host(host):
            raise AllowlistError(f"{where}: bad host {host!r} (name, *.domain or IP)")
        rules.append(EgressRule(host, int(port_text), number))
    return EgressAllowlist(tuple(rules))


def egress_allows(allowlist: EgressAllowlist, host: str, port: int) -> bool:
    """Whether the egress proxy may connect to ``host:port``."""
    return any(rule.matches(host, port) for rule in allowlist.rules)


# ----------------------------------------------------------------------------------------------- runs

_SECRET_ENV = re.compile(r"(token|secret|passw|key|auth|cookie|credential)", re.I)


def build_run_spec(
    *,
    image: str,
    argv: Iterable[str],
    mounts: Iterable[Mount],
    limits: Limits,
    group: str,
    network: NetMode = NetMode.NONE,
    egress: EgressAllowlist | None = None,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    user: str = "65534:65534",
) -> RunSpec:
    """Assemble the one :class:`RunSpec` both backends translate.

    Raises :class:`SandboxRefused` for an empty command, secret-looking env keys (secrets go over stdin),
    ``allow`` networking without any allowlist entry, or a root user.
    """
    argv = tuple(argv)
    if not argv or not argv[0]:
        raise SandboxRefused("empty command")
    env_items = tuple(sorted((env or {}).items()))
    for key, _ in env_items:
        if _SECRET_ENV.search(key):
            raise SandboxRefused(f"env key {key!r} looks like a secret: pass secrets over stdin")
    if network is NetMode.ALLOW and (egress is None or not egress.rules):
        raise SandboxRefused("network 'allow' needs a non-empty egress allowlist")
    if user.split(":")[0] in ("0", "root", ""):
        raise SandboxRefused("the sandbox never runs as root")
    mounts = tuple(mounts)
    for mount in mounts:
        allowed_rw = (WORKSPACE_TARGET, SHARED_TARGET)
        if (
            mount.kind is MountKind.BIND
            and not mount.readonly
            and mount.target not in allowed_rw
            and not mount.target.startswith(EXTRA_TARGET_ROOT + "/")
        ):
            raise SandboxRefused(f"read-write mount outside the workspace: {mount.target}")
    all_labels = {"appliance.sandbox": "1", "appliance.group": group, **(labels or {})}
    return RunSpec(
        image=image,
        argv=argv,
        mounts=mounts,
        network=network,
        limits=limits,
        egress=egress if network is NetMode.ALLOW and egress is not None else EgressAllowlist(),
        user=user,
        workdir=WORKSPACE_TARGET if any(m.target == WORKSPACE_TARGET for m in mounts) else "/",
        env=env_items,
        labels=tuple(sorted(all_labels.items())),
        group=group,
    )
