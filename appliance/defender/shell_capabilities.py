"""Per-program capability scoring for command risk (sans-IO): network clients, deletes, permissions,
inline interpreter code and write targets. Called by :mod:`appliance.defender.shell_risk` for each command."""

from __future__ import annotations

import re

from appliance.defender.shell_parse import SimpleCommand, _Walk
from appliance.defender.shell_tables import (
    _AWKS,
    _CREDENTIALS,
    _DECODE_CODE,
    _DISK_DEVICE,
    _ESCAPE,
    _LIB_CODE,
    _NET_CODE,
    _NET_DEVICE,
    _OUTPUT_OPT_RE,
    _PERSISTENCE,
    _REVERSE_CODE,
    _ROOTISH,
    _SAFE_WRITE,
    _SHELL_PATH,
    _SOCKET_CODE,
    _WRITE_CODE,
)

_LOOPBACK = re.compile(r"(?:https?://)?(?:localhost|127\.0\.0\.1|\[::1\])(?::\d+)?\S*")
_REMOTE_HOST = re.compile(r"https?://|@|[a-z0-9-]+\.[a-z]{2,}")
_NET_RE = re.compile(
    r"(?:^|[\s;|&(`'\"/])(?:curl|wget|nc|ncat|netcat|socat|telnet|fetch|lwp-download|aria2c"
    r"|invoke-webrequest|iwr)\b|https?://|ftp://|/dev/(?:tcp|udp)/",
    re.IGNORECASE,
)


def _path_class(path: str, safe: tuple[str, ...]) -> str:
    """Classify a write target: null, network, disk, persistence, credentials, outside, inside."""
    p = path.strip().strip("'\"")
    lower = p.lower()
    if not p or p.startswith("&") or p.isdigit() or p == "-":
        return "null"
    if _NET_DEVICE.match(lower):
        return "network"
    if _DISK_DEVICE.match(lower):
        return "disk"
    if _PERSISTENCE.search(lower):
        return "persistence"
    if _CREDENTIALS.search(lower):
        return "credentials"
    if _SAFE_WRITE.match(lower):
        return "null"
    if lower.startswith(("~", "$home", "${home}", "/")):
        if any(lower.startswith(prefix) for prefix in safe):
            return "inside"
        return "outside"
    return "inside"


def _write_target(cmd: SimpleCommand, target: str, walk: _Walk, safe: tuple[str, ...], via: str) -> None:
    cls = _path_class(target, safe)
    if cls == "network":
        walk.add("network.dev_tcp", "network", 0.75, target)
    elif cls == "disk":
        walk.add("destructive.disk_write", "destructive", 1.0, target, hard=True)
    elif cls == "persistence":
        walk.add("persistence.write", "persistence", 1.0, target, hard=True)
    elif cls == "credentials":
        walk.add("credentials.write", "credentials", 0.8, target)
    elif cls == "outside":
        walk.add(f"file_write.outside_workspace.{via}", "file_write", 0.5, target)


def _score_code(
    prog: str, code: str, cmd: SimpleCommand, walk: _Walk, *, depth: int, safe: tuple[str, ...]
) -> None:
    """Score inline interpreter code by the APIs it touches."""
    lower = code.lower()
    base = 0.15 if prog in _AWKS else 0.3
    walk.add("code.inline", "code", base, code[:60])
    socket = _SOCKET_CODE.search(lower)
    if socket and _REVERSE_CODE.search(lower):
        walk.add("network.reverse_shell_code", "reverse_shell", 1.0, code[:60], hard=True)
    elif socket:
        walk.add("network.socket_code", "network", 0.6, code[:60])
    if _ESCAPE.search(lower) or _SHELL_PATH.search(lower):
        walk.add("shell.code_exec", "shell", 0.6, code[:60])
    if _WRITE_CODE.search(lower):
        walk.add("file_write.code", "file_write", 0.5, code[:60])
    if _NET_CODE.search(lower):
        walk.add("network.code_fetch", "network", 0.5, code[:60])
        if re.search(r"\bexec\b|\beval\b|system|popen|subprocess", lower):
            walk.add("download_exec.code", "download_exec", 1.0, code[:60], hard=True)
    if _LIB_CODE.search(lower):
        walk.add("library_load.code", "library_load", 0.55, code[:60])
    if _DECODE_CODE.search(lower) and re.search(r"\bexec\b|\beval\b|system|popen|subprocess", lower):
        walk.add("obfuscation.decode_exec_code", "obfuscation", 1.0, code[:60], hard=True)
    if _CREDENTIALS.search(lower):
        walk.add("credentials.code_read", "credentials", 0.6, code[:60])
    if re.search(r"os\.set[re]?uid|setuid|posix\.setuid|process\.setuid|chmod\s*\(.*[46]7[0-7][0-7]", lower):
        walk.add("privilege.setuid_code", "privilege", 0.7, code[:60])
    if prog in _AWKS and re.search(r"/inet/|\|&", lower):
        walk.add("network.awk_socket", "network", 0.7, code[:60])
        if "sh" in lower or "getline" in lower:
            walk.add("network.reverse_shell_code", "reverse_shell", 1.0, code[:60], hard=True)
    if prog in _AWKS and re.search(r"print[^;{}]*>\s*\"?/", lower):
        walk.add("file_write.code", "file_write", 0.5, code[:60])


def _score_network(
    prog: str,
    args: tuple[str, ...],
    lowered: tuple[str, ...],
    cmd: SimpleCommand,
    walk: _Walk,
    safe: tuple[str, ...],
) -> None:
    joined = " ".join(lowered)
    if prog in ("nc", "ncat", "netcat") or (prog == "busybox" and args and args[0] == "nc"):
        exec_flag = any(
            a in ("-e", "-c", "--exec", "--sh-exec", "--lua-exec")
            or (a.startswith("-") and not a.startswith("--") and ("e" in a[1:] or "c" in a[1:]))
            for a in lowered
        )
        listen = any(
            a in ("-l", "--listen") or (a.startswith("-") and not a.startswith("--") and "l" in a[1:])
            for a in lowered
        )
        if exec_flag:
            rule = "network.bind_shell" if listen else "network.reverse_shell"
            walk.add(rule, "reverse_shell", 1.0, " ".join((prog, *args))[:60], hard=True)
        elif listen:
            walk.add("network.listener", "network", 0.6, " ".join((prog, *args))[:60])
        else:
            walk.add("network.raw_socket", "network", 0.55, " ".join((prog, *args))[:60])
        return
    if prog == "socat":
        if re.search(r"\b(?:exec|system):", joined):
            if re.search(r"tcp|udp|openssl|sctp|socks|proxy", joined):
                listen = "listen" in joined
                rule = "network.bind_shell" if listen else "network.reverse_shell"
                walk.add(rule, "reverse_shell", 1.0, joined[:60], hard=True)
            else:
                walk.add("shell.socat_exec", "shell", 0.6, joined[:60])
        elif re.search(r"tcp|udp|openssl|sctp", joined):
            walk.add("network.raw_socket", "network", 0.55, joined[:60])
            if re.search(r"file:/dev/(?:tty|pts)|pty|stdio", joined) and re.search(r"listen|tcp:", joined):
                walk.add("network.remote_terminal", "reverse_shell", 1.0, joined[:60], hard=True)
        return
    if prog == "telnet":
        walk.add("network.raw_socket", "network", 0.5, " ".join(args)[:60])
        return
    if prog == "openssl":
        if any(a in ("s_client", "s_server") for a in lowered):
            walk.add("network.raw_socket", "network", 0.55, joined[:60])
        return
    if prog in ("curl", "wget", "aria2c", "lftp", "fetch", "http", "xh", "httpie"):
        upload = (
            any(
                a in ("-t", "--upload-file", "-f", "--form", "--post-file", "--body-file", "--put", "-d@")
                or a.startswith(("--post-file=", "--body-file=", "-d@", "--data=@", "--data-binary=@"))
                for a in lowered
            )
            or any(a.startswith("@") for a in lowered)
            or re.search(r"(?:-d|--data(?:-binary|-raw)?) @", joined)
        )
        if upload:
            walk.add("network.upload", "network", 0.55, joined[:60])
        if any(
            a.startswith(
                ("--use-askpass", "--on-download-complete", "--on-bt-download-complete", "-e", "--execute")
            )
            for a in lowered
        ):
            walk.add("shell.download_hook", "shell", 0.6, joined[:60])
        for i, a in enumerate(args):
            out_opts = (
                "-o",
                "-O",
                "--output",
                "--output-document",
                "-P",
                "--directory-prefix",
                "-d",
                "--dir",
            )
            if a in out_opts and i + 1 < len(args):
                _write_target(cmd, args[i + 1], walk, safe, "download")
            m = _OUTPUT_OPT_RE.match(a)
            if m:
                _write_target(cmd, next(g for g in m.groups() if g), walk, safe, "download")
        if (
            (
                any(a in ("-x", "--request") for a in lowered)
                and any(a in ("post", "put", "patch") for a in lowered)
            )
            or (
                prog == "curl"
                and any(a.startswith(("--data", "-d")) and a not in ("-d", "--dir") for a in lowered)
            )
            or any(a.startswith(("--post-data", "--body-data")) for a in lowered)
        ):
            walk.add("network.post_data", "network", 0.5, joined[:60])
        if re.search(r"\b(?:gopher|dict|file|ldap|smb|telnet|tftp|ftp|scp|sftp)://", joined):
            walk.add("network.unusual_scheme", "network", 0.55, joined[:60])
        walk.add("network.fetch", "network", 0.15, joined[:60])
        return
    if prog in (
        "finger",
        "hping3",
        "ab",
        "lwp-download",
        "lwp-request",
        "lwp-mirror",
        "nmap",
        "masscan",
        "ngrok",
        "cloudflared",
        "chisel",
        "frpc",
        "rlogin",
        "rsh",
    ):
        weight = (
            0.2 if _LOOPBACK.search(joined) and not _REMOTE_HOST.search(_LOOPBACK.sub("", joined)) else 0.5
        )
        walk.add("network.raw_socket", "network", weight, joined[:60])
        return
    if prog == "socket":
        walk.add("network.raw_socket", "network", 0.55, joined[:60])
        if any(_SHELL_PATH.search(a) or a.startswith(("-p", "-vp", "-qvp", "-svp")) for a in lowered) and any(
            _SHELL_PATH.search(a) for a in lowered
        ):
            walk.add("network.reverse_shell", "reverse_shell", 1.0, joined[:60], hard=True)
        return
    if prog in ("scp", "sftp", "ftp", "tftp", "smbclient", "lftp", "ncftp", "sshpass"):
        walk.add("network.transfer", "network", 0.5, joined[:60])
        return
    if prog == "rsync":
        if any(":" in a and not a.startswith("-") for a in args):
            walk.add("network.transfer", "network", 0.5, joined[:60])
        return
    if prog == "whois" and any(a in ("-h", "-p") for a in lowered):
        walk.add("network.raw_socket", "network", 0.5, joined[:60])
        return
    if prog == "ssh":
        for i, a in enumerate(args):
            if (
                a == "-o"
                and i + 1 < len(args)
                and re.match(r"(?i)(?:proxycommand|localcommand|permitlocalcommand)", args[i + 1])
            ):
                walk.add("shell.ssh_command_option", "shell", 0.6, args[i + 1][:60])
            if a.lower().startswith(("-oproxycommand", "-olocalcommand")):
                walk.add("shell.ssh_command_option", "shell", 0.6, a[:60])
            if a in ("-R", "-D", "-w") or (a == "-L" and i + 1 < len(args)):
                walk.add("network.tunnel", "network", 0.5, " ".join(args[i : i + 2]))


def _score_delete(prog: str, args: tuple[str, ...], walk: _Walk, safe: tuple[str, ...]) -> None:
    flags = set()
    targets = []
    for a in args:
        if a.startswith("--"):
            flags.add(a)
        elif a.startswith("-") and len(a) > 1:
            flags.update("-" + ch for ch in a[1:])
        else:
            targets.append(a)
    recursive = bool(flags & {"-r", "-R", "--recursive"})
    force = bool(flags & {"-f", "--force"})
    if "--no-preserve-root" in flags:
        walk.add("destructive.no_preserve_root", "destructive", 1.0, " ".join(args)[:60], hard=True)
    for target in targets:
        lower = target.lower()
        if _ROOTISH.match(lower) and (recursive or prog == "shred"):
            walk.add("destructive.recursive_delete_root", "destructive", 1.0, f"{prog} {target}", hard=True)
        elif _PERSISTENCE.search(lower) or _CREDENTIALS.search(lower):
            walk.add("destructive.delete_sensitive", "destructive", 0.7, f"{prog} {target}")
        elif _path_class(target, safe) == "outside":
            weight = 0.55 if recursive else 0.45
            walk.add("destructive.delete_outside_workspace", "destructive", weight, f"{prog} {target}")
        elif recursive and force and target in (".", "./", "*", "./*"):
            walk.add("destructive.delete_workspace", "destructive", 0.55, f"{prog} {target}")
    if prog == "shred":
        walk.add("destructive.shred", "destructive", 0.5, " ".join(args)[:40])


def _score_perm(prog: str, args: tuple[str, ...], walk: _Walk) -> None:
    joined = " ".join(args)
    recursive = any(a in ("-R", "--recursive") or (a.startswith("-") and "R" in a) for a in args)
    targets = [a for a in args if not a.startswith("-")]
    if prog == "chmod":
        mode = targets[0] if targets else ""
        paths = targets[1:]
        if re.search(r"[ugoa]*\+[rwxXt]*s|^[2467][0-7]{3}$", mode):
            walk.add("privilege.setuid_bit", "privilege", 0.75, joined[:60])
        if re.search(r"777|o\+w|a\+w|\+w$|666", mode) and any(
            _ROOTISH.match(p.lower()) or p.startswith("/") for p in paths
        ):
            walk.add("destructive.world_writable", "destructive", 0.8 if recursive else 0.55, joined[:60])
        if recursive and any(_ROOTISH.match(p.lower()) for p in paths):
            walk.add("destructive.recursive_permissions_root", "destructive", 0.85, joined[:60])
        if any(_PERSISTENCE.search(p.lower()) or _CREDENTIALS.search(p.lower()) for p in paths):
            walk.add("privilege.sensitive_permissions", "privilege", 0.55, joined[:60])
    else:
        paths = targets[1:] if prog != "chattr" else targets
        if recursive and any(_ROOTISH.match(p.lower()) for p in paths):
            walk.add("destructive.recursive_permissions_root", "destructive", 0.85, joined[:60])
        elif any(p.startswith("/") and not _SAFE_WRITE.match(p) for p in paths) or (
            targets and targets[0].split(":")[0] in ("root", "0")
        ):
            walk.add("privilege.ownership_change", "privilege", 0.5, joined[:60])


def _scan_arg_code(arg: str, lower: str, walk: _Walk) -> None:
    """A long argument may carry a program (echo '...' > x.go, latex, make --eval): scan it as code."""
    if (
        _SOCKET_CODE.search(lower)
        and _REVERSE_CODE.search(lower)
        and (
            "connect" in lower
            or "listen" in lower
            or "bind" in lower
            or re.search(r"\bexec\b|\beval\b", lower)
        )
    ):
        walk.add("network.reverse_shell_code", "reverse_shell", 1.0, arg[:60], hard=True)
    if _WRITE_CODE.search(lower) and ("/" in lower or "output" in lower):
        walk.add("file_write.code", "file_write", 0.5, arg[:60])
