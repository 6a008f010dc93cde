"""Sans-IO policy tests: every mount, egress and run rule, with a fake file system as the resolver."""

from __future__ import annotations

import posixpath

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.errors import ConfigError, Forbidden
from appliance.sandbox.output import TRUNCATION_MARKER, OutputCap
from appliance.sandbox.policy import (
    EXTRA_TARGET_ROOT,
    SHARED_TARGET,
    WORKSPACE_TARGET,
    AllowlistError,
    EgressAllowlist,
    Limits,
    Mount,
    MountAllowlist,
    MountKind,
    MountRefused,
    MountRejection,
    MountRequest,
    NetMode,
    ResolvedPath,
    RunSpec,
    SandboxRefused,
    blocked_reason,
    build_run_spec,
    egress_allows,
    parse_egress_allowlist,
    parse_mount_allowlist,
    resolve_mounts,
    validate_group_folder,
)

HOME = "/home/u"
DATA = "/home/u/.local/share/appliance"


@attrs.define
class FakeFS:
    """Directories, files and symlinks; ``resolve`` behaves like ``realpath`` + stat + child listing."""

    dirs: set[str] = attrs.Factory(set)
    files: set[str] = attrs.Factory(set)
    links: dict[str, str] = attrs.Factory(dict)

    def resolve(self, path: str) -> ResolvedPath:
        parts = [p for p in path.split("/") if p]
        current = "/"
        hops = 0
        while parts:
            part = parts.pop(0)
            candidate = posixpath.normpath(posixpath.join(current, part))
            if candidate in self.links:
                hops += 1
                assert hops < 40
                target = self.links[candidate]
                target = target if target.startswith("/") else posixpath.join(current, target)
                parts = [p for p in target.split("/") if p] + parts
                current = "/"
                continue
            current = candidate
        exists = current in self.dirs or current in self.files
        children = tuple(
            sorted(
                (posixpath.basename(p), p in self.dirs)
                for p in self.dirs | self.files
                if posixpath.dirname(p) == current
                and blocked_reason(posixpath.basename(p), _PATTERNS, ()) is not None
            )
        )
        return ResolvedPath(current, exists, current in self.dirs, children)


_PATTERNS = MountAllowlist().patterns()


def _fs() -> FakeFS:
    fs = FakeFS()
    for d in (
        "/",
        "/home",
        HOME,
        f"{HOME}/ws",
        f"{HOME}/ws/main",
        f"{HOME}/ws/fam",
        f"{HOME}/ws/shared",
        f"{HOME}/projects",
        f"{HOME}/projects/app",
        f"{HOME}/projects/.ssh",
        f"{HOME}/.aws",
        f"{HOME}/.local",
        f"{HOME}/.local/share",
        DATA,
        f"{DATA}/keys",
        "/etc",
        "/srv/outside",
    ):
        fs.dirs.add(d)
    fs.files.add(f"{HOME}/projects/app/.env")
    fs.files.add(f"{HOME}/projects/app/README")
    fs.links[f"{HOME}/projects/aws-link"] = f"{HOME}/.aws"
    fs.links[f"{HOME}/projects/out-link"] = "/srv/outside"
    fs.links[f"{HOME}/projects/app-link"] = "app"
    return fs


ALLOW = MountAllowlist(roots=(parse_mount_allowlist("allow ~/projects rw", "t").roots[0],))


def _resolve(
    requests: tuple[MountRequest, ...] = (), *, group: str = "main", is_main: bool = True, **kw: object
) -> tuple[tuple[Mount, ...], tuple[MountRejection, ...]]:
    fs = kw.pop("fs", None) or _fs()
    args: dict[str, object] = {
        "group": group,
        "is_main": is_main,
        "workspace": f"{HOME}/ws/{group}",
        "shared": f"{HOME}/ws/shared",
        "requests": requests,
        "allowlist": ALLOW,
        "resolver": fs.resolve,  # type: ignore[attr-defined]
        "home": HOME,
        "protected": (DATA, f"{DATA}/keys"),
    }
    args.update(kw)
    return resolve_mounts(**args)  # type: ignore[arg-type]


def _by_target(mounts: tuple[Mount, ...]) -> dict[str, Mount]:
    return {m.target: m for m in mounts}


# ------------------------------------------------------------------------------------------ workspace


def test_workspace_is_the_only_rw_mount_and_shared_is_rw_for_main() -> None:
    mounts, rejected = _resolve()
    by = _by_target(mounts)
    assert not rejected
    assert by[WORKSPACE_TARGET] == Mount(MountKind.BIND, f"{HOME}/ws/main", WORKSPACE_TARGET, readonly=False)
    assert by[SHARED_TARGET].readonly is False


def test_non_main_group_gets_shared_read_only() -> None:
    mounts, _ = _resolve(group="fam", is_main=False)
    assert _by_target(mounts)[SHARED_TARGET].readonly is True
    assert _by_target(mounts)[WORKSPACE_TARGET].readonly is False


def test_missing_workspace_is_refused() -> None:
    with pytest.raises(MountRefused, match="does not exist"):
        _resolve(group="nope")


def test_workspace_inside_the_data_dir_is_refused() -> None:
    with pytest.raises(MountRefused, match="protected"):
        _resolve(workspace=f"{DATA}/keys")


@pytest.mark.parametrize("name", ["main", "family-chat", "Team_42"])
def test_valid_group_folders(name: str) -> None:
    assert validate_group_folder(name) == name


@pytest.mark.parametrize(
    "name", ["../../etc", "/tmp", "global", "GLOBAL", "", " a", "a" * 65, "a/b", "a..b/"]
)
def test_invalid_group_folders(name: str) -> None:
    with pytest.raises(SandboxRefused):
        validate_group_folder(name)


def test_refusals_are_forbidden_errors() -> None:
    assert issubclass(SandboxRefused, Forbidden)
    assert issubclass(AllowlistError, ConfigError)


# ------------------------------------------------------------------------------------------ extra mounts


def test_no_allowlist_blocks_every_extra_mount() -> None:
    _, rejected = _resolve((MountRequest("~/projects/app"),), allowlist=None)
    assert len(rejected) == 1
    assert "no mount allowlist" in rejected[0].reason


def test_allowed_extra_mount_rw_for_main_ro_for_non_main() -> None:
    req = (MountRequest("~/projects/app", readonly=False),)
    main, _ = _resolve(req)
    fam, _ = _resolve(req, group="fam", is_main=False)
    assert _by_target(main)[f"{EXTRA_TARGET_ROOT}/app"].readonly is False
    assert _by_target(fam)[f"{EXTRA_TARGET_ROOT}/app"].readonly is True


def test_non_main_inherit_keeps_rw() -> None:
    allow = parse_mount_allowlist("allow ~/projects rw\nnon-main inherit\n", "t")
    fam, _ = _resolve(
        (MountRequest("~/projects/app", readonly=False),), group="fam", is_main=False, allowlist=allow
    )
    assert _by_target(fam)[f"{EXTRA_TARGET_ROOT}/app"].readonly is False


def test_readonly_root_never_gives_rw() -> None:
    allow = parse_mount_allowlist("allow ~/projects ro", "t")
    mounts, _ = _resolve((MountRequest("~/projects/app", readonly=False),), allowlist=allow)
    assert _by_target(mounts)[f"{EXTRA_TARGET_ROOT}/app"].readonly is True


def test_extra_mounts_default_to_read_only() -> None:
    mounts, _ = _resolve((MountRequest("~/projects/app"),))
    assert _by_target(mounts)[f"{EXTRA_TARGET_ROOT}/app"].readonly is True


@pytest.mark.parametrize(
    ("host_path", "reason"),
    [
        ("~/projects/.ssh", "blocked pattern"),
        ("~/projects/aws-link", "blocked pattern '.aws'"),  # symlink resolved before the check
        ("~/projects/../.aws", "blocked pattern"),  # '..' normalised before the check
        ("~/projects/out-link", "not under an allowed root"),  # symlink escape
        ("~/projects/../../../etc", "not under an allowed root"),
        ("/etc", "not under an allowed root"),
        ("~/projects/missing", "does not exist"),
        ("projects/app", "absolute"),
        (DATA, "blocked pattern|protected"),
        (f"{DATA}/keys", "protected"),
        (HOME, "protected"),  # a parent of the data dir would expose it
    ],
)
def test_extra_mount_rejections(host_path: str, reason: str) -> None:
    _, rejected = _resolve((MountRequest(host_path, container_path="x"),))
    assert len(rejected) == 1
    assert pytest.importorskip("re").search(reason, rejected[0].reason), rejected[0].reason


def test_symlink_to_allowed_dir_mounts_the_resolved_path() -> None:
    mounts, rejected = _resolve((MountRequest("~/projects/app-link", container_path="app"),))
    assert not rejected
    assert _by_target(mounts)[f"{EXTRA_TARGET_ROOT}/app"].source == f"{HOME}/projects/app"


@pytest.mark.parametrize("container_path", ["../x", "repo:rw", "/abs", "a/../../b", "a,ro", "."])
def test_bad_container_paths_are_rejected(container_path: str) -> None:
    _, rejected = _resolve((MountRequest("~/projects/app", container_path=container_path),))
    assert len(rejected) == 1
    assert "container path" in rejected[0].reason


def test_secret_children_are_masked() -> None:
    fs = _fs()
    fs.files.add(f"{HOME}/ws/main/.env")
    fs.dirs.add(f"{HOME}/ws/main/.ssh")
    mounts, _ = _resolve((MountRequest("~/projects/app"),), fs=fs)
    by = _by_target(mounts)
    assert by[f"{WORKSPACE_TARGET}/.env"] == Mount(
        MountKind.MASK, "/dev/null", f"{WORKSPACE_TARGET}/.env", True
    )
    assert by[f"{WORKSPACE_TARGET}/.ssh"].kind is MountKind.TMPFS
    assert by[f"{EXTRA_TARGET_ROOT}/app/.env"].kind is MountKind.MASK


def test_duplicate_targets_are_refused() -> None:
    with pytest.raises(MountRefused, match="share a container path"):
        _resolve((MountRequest("~/projects/app", "app"), MountRequest("~/projects/app-link", "app")))


@given(
    st.lists(st.sampled_from(["..", ".", "app", "x", ".aws", "projects", "out-link", "aws-link"]), max_size=6)
)
def test_accepted_extra_mounts_stay_under_a_root_and_avoid_blocked_names(parts: list[str]) -> None:
    path = "~/projects/" + "/".join(parts)
    mounts, rejected = _resolve((MountRequest(path, container_path="p"),))
    extra = [m for m in mounts if m.target == f"{EXTRA_TARGET_ROOT}/p"]
    if extra:
        assert not rejected
        assert extra[0].source.startswith(f"{HOME}/projects")
        assert blocked_reason(extra[0].source, _PATTERNS, (DATA,)) is None
    for mount in mounts:
        if not mount.readonly:
            assert mount.target in (WORKSPACE_TARGET, SHARED_TARGET) or mount.target.startswith(
                EXTRA_TARGET_ROOT
            )


# ------------------------------------------------------------------------------------------ allowlist files


def test_mount_allowlist_parses() -> None:
    allow = parse_mount_allowlist(
        "# roots\nallow ~/projects rw  # code\nallow /srv/data\nblock password\nnon-main ro\n", "/c/mounts"
    )
    assert [(r.path, r.read_write, r.line) for r in allow.roots] == [
        ("~/projects", True, 2),
        ("/srv/data", False, 3),
    ]
    assert "password" in allow.patterns()
    assert ".ssh" in allow.patterns()
    assert allow.non_main_read_only


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("allow", "/c/mounts:1: expected 'allow PATH [ro|rw]'"),
        ("\nallow ~/x rwx", "/c/mounts:2: expected 'allow PATH [ro|rw]'"),
        ("allow relative/path", "/c/mounts:1: path must be absolute"),
        ("allow /srv/../etc", "/c/mounts:1: path must not contain '..'"),
        ("block a/b", "/c/mounts:1: expected 'block NAME-PATTERN'"),
        ("non-main maybe", "/c/mounts:1: expected 'non-main ro'"),
        ("# ok\n\nmount /x", "/c/mounts:3: unknown keyword 'mount'"),
    ],
)
def test_mount_allowlist_errors_are_one_line_with_file_and_line(text: str, message: str) -> None:
    with pytest.raises(AllowlistError) as info:
        parse_mount_allowlist(text, "/c/mounts")
    assert info.value.one_line().startswith(message)
    assert "\n" not in info.value.message


def test_egress_allowlist_parses_and_matches() -> None:
    allow = parse_egress_allowlist(
        "api.openai.com\n*.example.org:8443  # wildcard\n10.0.0.5:80\n[::1]:9000\n", "/c/egress"
    )
    assert [(r.host, r.port) for r in allow.rules] == [
        ("api.openai.com", 443),
        ("*.example.org", 8443),
        ("10.0.0.5", 80),
        ("::1", 9000),
    ]
    assert egress_allows(allow, "API.openai.com", 443)
    assert not egress_allows(allow, "api.openai.com", 80)
    assert egress_allows(allow, "a.b.example.org", 8443)
    assert egress_allows(allow, "example.org", 8443)
    assert not egress_allows(allow, "evilexample.org", 8443)
    assert egress_allows(allow, "10.0.0.5", 80)
    assert not egress_allows(EgressAllowlist(), "api.openai.com", 443)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("host.example:0", "/c/egress:1: bad port '0'"),
        ("host.example:99999", "/c/egress:1: bad port"),
        ("host.example:http", "/c/egress:1: bad port"),
        ("a.*.example", "/c/egress:1: bad host"),
        ("*example.com", "/c/egress:1: bad host"),
        ("localhost", "/c/egress:1: bad host"),
        ("bad_name.example", "/c/egress:1: bad host"),
        ("\n[::1", "/c/egress:2: bad IPv6"),
        ("a.example b.example", "/c/egress:1: expected one"),
    ],
)
def test_egress_allowlist_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(AllowlistError) as info:
        parse_egress_allowlist(text, "/c/egress")
    assert info.value.one_line().startswith(message)


# ------------------------------------------------------------------------------------------ run spec


def _spec(**kw: object) -> RunSpec:
    args: dict[str, object] = {
        "image": "localhost/appliance-runner:abc",
        "argv": ["true"],
        "mounts": (Mount(MountKind.BIND, "/w", WORKSPACE_TARGET, readonly=False),),
        "limits": Limits(),
        "group": "main",
    }
    args.update(kw)
    return build_run_spec(**args)  # type: ignore[arg-type]


def test_run_spec_defaults_are_locked_down() -> None:
    spec = _spec()
    assert spec.network is NetMode.NONE
    assert spec.read_only_root
    assert spec.cap_drop_all
    assert spec.no_new_privileges
    assert spec.user == "65534:65534"
    assert spec.workdir == WORKSPACE_TARGET
    assert ("appliance.sandbox", "1") in spec.labels


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"argv": []}, "empty command"),
        ({"env": {"API_TOKEN": "x"}}, "looks like a secret"),
        ({"env": {"db_password": "x"}}, "looks like a secret"),
        ({"network": NetMode.ALLOW}, "egress allowlist"),
        ({"user": "0:0"}, "never runs as root"),
        ({"user": "root"}, "never runs as root"),
        ({"mounts": (Mount(MountKind.BIND, "/etc", "/etc", readonly=False),)}, "read-write mount outside"),
    ],
)
def test_run_spec_refusals(kw: dict[str, object], message: str) -> None:
    with pytest.raises(SandboxRefused, match=message):
        _spec(**kw)


def test_network_allow_needs_entries() -> None:
    allow = parse_egress_allowlist("api.example.com", "t")
    spec = _spec(network=NetMode.ALLOW, egress=allow)
    assert spec.network is NetMode.ALLOW
    assert spec.egress == allow


def test_egress_rules_only_travel_with_net_allow() -> None:
    allow = parse_egress_allowlist("api.example.com", "t")
    assert _spec(network=NetMode.NONE, egress=allow).egress == EgressAllowlist()


@pytest.mark.parametrize(
    "kw", [{"cpus": 0}, {"memory_mb": 4}, {"pids": 1}, {"timeout_s": 0}, {"output_cap_bytes": 0}]
)
def test_limits_must_be_positive(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        Limits(**kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ output cap


def test_output_cap_keeps_prefix_and_marks_truncation() -> None:
    cap = OutputCap(5)
    cap.feed(b"abc")
    assert not cap.full
    cap.feed(b"defgh")
    assert cap.full
    assert cap.value() == b"abcde" + TRUNCATION_MARKER
    assert cap.value(marker=False) == b"abcde"


@given(st.lists(st.binary(max_size=50), max_size=20), st.integers(1, 100))
def test_output_cap_never_exceeds_cap(chunks: list[bytes], size: int) -> None:
    cap = OutputCap(size)
    for chunk in chunks:
        cap.feed(chunk)
    joined = b"".join(chunks)
    assert cap.value(marker=False) == joined[:size]
    assert cap.truncated == (len(joined) > size)
