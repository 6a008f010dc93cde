"""Command-risk scoring (sans-IO): parse a shell command with tree-sitter-bash, then score what it would do.

Why a parser: text matching is bypassed by quoting, escapes, substitutions, chaining and env prefixes (Claude
Code's and OpenClaw's changelogs are full of such fixes). We parse into simple commands, de-quote their words,
unwrap ``sudo``/``env``/``sh -c``/``eval`` and score each command, then the pipeline and list as a whole.

Rules:
- A reason is ``hard`` when it must block whatever else is true: reverse or bind shells, download-and-execute,
  decode-and-execute, fork bombs, disk writes, persistence into rc/cron/ssh files, recursive deletes of the
  root or home, credential reads sent to the network.
- Every other reason has a weight; the command's score is the noisy-or of every reason of every segment, so a
  chain is judged as a whole (``safe && bad`` is as bad as ``bad``).
- The capability tables are our own common knowledge of Unix binaries, not derived from any GPL data set.
- Unparseable input or input that is too deep is scored for review, never allowed silently.
- tree-sitter is imported lazily (cold start) and one parser is kept per thread (parsers are not thread-safe).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from appliance.defender.normalise import fold_homoglyphs
from appliance.defender.scoring import noisy_or
from appliance.defender.shell_capabilities import (
    _NET_RE,
    _path_class,
    _scan_arg_code,
    _score_code,
    _score_delete,
    _score_network,
    _score_perm,
    _write_target,
)
from appliance.defender.shell_parse import (
    SimpleCommand,
    _basename,
    _collect,
    _Walk,
    parse_command,
)
from appliance.defender.shell_tables import (
    _AWKS,
    _COPY_LIKE,
    _CREDENTIALS,
    _ENV_HOOK_NAME,
    _ESCAPE,
    _HEX_ESCAPES,
    _INFO_PROGRAMS,
    _INLINE_FLAGS,
    _LOCAL_PACKAGE,
    _MAX_CHARS,
    _MAX_DEPTH,
    _NET_DEVICE,
    _OUTPUT_OPT_NAME,
    _OUTPUT_OPT_RE,
    _OUTPUT_OPTS,
    _PACKAGE_MANAGERS,
    _READERS,
    _ROOTISH,
    _SHELL_PATH,
    _SHELL_WORD,
    _SUBCOMMAND_SHELL,
    _SYSTEM_PREFIXES,
    _WRAPPER_ARG_OPTS,
    DANGEROUS_ENV,
    DISK,
    INTERACTIVE,
    INTERPRETERS,
    NETWORK,
    PRIVILEGE,
    SERVERS,
    SHELLS,
    WRAPPERS,
)
from appliance.defender.verdicts import CommandScore, Reason

__all__ = ["SimpleCommand", "parse_command", "score_command"]

# --------------------------------------------------------------------------------------------- scoring


def score_command(command: str, *, workspace: Iterable[str] = ()) -> CommandScore:
    """Parse and score ``command``. ``workspace`` lists absolute path prefixes the agent may write to
    (``/tmp`` is always allowed); relative paths count as inside the workspace."""
    walk = _Walk()
    text = command
    if not text.isascii():
        folded = fold_homoglyphs(unicodedata.normalize("NFKC", text))
        if folded != text:
            walk.add("obfuscation.unicode", "obfuscation", 0.5, text[:40])
        text = folded
    if len(text) > _MAX_CHARS:
        walk.add("parse.too_long", "parse", 0.5)
        text = text[:_MAX_CHARS]
    safe = tuple(p.rstrip("/") + "/" for p in workspace if p.startswith("/"))
    _score_source(text, walk, depth=0, safe=safe)
    programs = tuple(dict.fromkeys(c.program for c in walk.commands if c.program))
    top = [c for c in walk.commands if not c.nested]
    return CommandScore(
        score=1.0 if walk.hard else noisy_or(r.weight for r in walk.reasons),
        reasons=_dedupe(walk.reasons),
        hard=walk.hard,
        programs=programs,
        parsed=not walk.error,
        argvs=tuple(c.argv for c in top if c.argv),
        dynamic=any(c.name_dynamic or c.substitutions or c.nested for c in walk.commands) or "$" in text,
    )


def _dedupe(reasons: list[Reason]) -> tuple[Reason, ...]:
    seen: dict[str, Reason] = {}
    for reason in reasons:
        current = seen.get(reason.rule)
        if current is None or reason.weight > current.weight:
            seen[reason.rule] = reason
    return tuple(seen.values())


def _score_source(text: str, walk: _Walk, *, depth: int, safe: tuple[str, ...]) -> None:
    if depth > _MAX_DEPTH:
        walk.add("parse.too_deep", "parse", 0.6)
        return
    start = len(walk.commands)
    try:
        _collect(text, walk, depth=depth)
    except (ValueError, RecursionError):
        walk.add("parse.failed", "parse", 0.6)
        return
    commands = walk.commands[start:]
    if walk.error and depth == 0:
        walk.add("parse.incomplete", "parse", 0.5)
    if depth == 0 and "\n" in text.strip():
        # Lines after the first may be input typed into an interactive program: scan them as code too.
        _scan_arg_code(text, text.lower(), walk)
    for name, body in walk.functions.items():
        if re.search(rf"(?:^|[\s;|&{{(]){re.escape(name)}\s*(?:\||&)", body) and "&" in body:
            walk.add("destructive.fork_bomb", "destructive", 1.0, f"{name}() {{ {body} }}", hard=True)
    for cmd in commands:
        _score_simple(cmd, walk, depth=depth, safe=safe)
    _score_pipelines(commands, walk)


def _unwrap(argv: tuple[str, ...]) -> tuple[list[str], tuple[str, ...]]:
    """Strip wrapper programs (sudo, env, nice, xargs ...) and return (wrappers, real argv)."""
    wrappers: list[str] = []
    rest = list(argv)
    for _ in range(6):
        if not rest:
            break
        prog = _basename(rest[0])
        if prog == "command" and any(a in ("-v", "-V") for a in rest[1:2]):
            break
        if prog not in WRAPPERS or ("/" in rest[0] and not rest[0].startswith(_SYSTEM_PREFIXES)):
            break
        if prog in ("busybox", "toybox") and len(rest) > 1 and _basename(rest[1]) not in WRAPPERS | SHELLS:
            wrappers.append(prog)
            rest = rest[1:]
            continue
        wrappers.append(prog)
        opts_with_arg = _WRAPPER_ARG_OPTS.get(prog, frozenset())
        i = 1
        positional_skipped = False
        while i < len(rest):
            word = rest[i]
            if prog == "env" and "=" in word and not word.startswith("-"):
                i += 1
                continue
            if prog in ("timeout", "flock") and not positional_skipped and not word.startswith("-"):
                positional_skipped = True
                i += 1  # timeout's duration, flock's lock file
                continue
            if word == "--":
                i += 1
                break
            if word.startswith("-"):
                i += 2 if word in opts_with_arg else 1
                continue
            break
        rest = rest[i:]
    return wrappers, tuple(rest)


def _inline_code(prog: str, args: tuple[str, ...]) -> str | None:
    flags = _INLINE_FLAGS.get(prog)
    if prog in _AWKS:
        for arg in args:
            if not arg.startswith("-"):
                return arg
        return None
    if not flags:
        return None
    for i, arg in enumerate(args):
        lower = arg.lower()
        for flag in flags:
            if lower == flag and i + 1 < len(args):
                return args[i + 1]
            if len(flag) == 2 and lower.startswith(flag) and len(arg) > 2 and not lower.startswith("--"):
                return arg[2:]
    return None


def _score_simple(cmd: SimpleCommand, walk: _Walk, *, depth: int, safe: tuple[str, ...]) -> None:
    for name, value in cmd.assignments:
        if (
            not DANGEROUS_ENV.match(name)
            and _ENV_HOOK_NAME.search(name)
            and (value.startswith(("/", "./", "~")) or _SHELL_PATH.search(value) or " " in value)
        ):
            walk.add("env.command_hook", "env", 0.55, f"{name}={value}"[:60])
        if _SHELL_PATH.search(value) or _ESCAPE.search(value.lower()):
            walk.add("shell.shell_in_env", "shell", 0.6, f"{name}={value}"[:60])
        if DANGEROUS_ENV.match(name):
            weight = 0.35 if name == "PATH" and "$PATH" not in value and "/tmp" not in value else 0.6
            walk.add("env.dangerous_variable", "env", weight, f"{name}={value}")
            if value.endswith(".so") or ".so." in value:
                walk.add("library_load.preload", "library_load", 0.7, f"{name}={value}")
    for op, target in cmd.redirects:
        if op in (">", ">>", ">|", "&>", "&>>", ">&", "<>"):
            _write_target(cmd, target, walk, safe, "redirect")
            if _NET_DEVICE.match(target.lower()) and (
                cmd.program in SHELLS or cmd.program in INTERPRETERS or op in (">&", "&>", "<>")
            ):
                walk.add("network.reverse_shell", "reverse_shell", 1.0, f"{op} {target}", hard=True)
        elif op in ("<", "<&", "<<<"):
            lower = target.lower()
            if _NET_DEVICE.match(lower):
                walk.add("network.dev_tcp", "network", 0.75, target)
                if cmd.program in SHELLS or cmd.program in INTERPRETERS:
                    walk.add("network.reverse_shell", "reverse_shell", 1.0, f"{op} {target}", hard=True)
            elif _CREDENTIALS.search(lower):
                walk.add("credentials.read", "credentials", 0.6, target)
    if not cmd.argv:
        return
    if cmd.name_dynamic:
        walk.add("obfuscation.dynamic_command_name", "obfuscation", 0.6, cmd.argv[0])
        if any(_NET_RE.search(s) for s in cmd.substitutions):
            walk.add("download_exec.substitution", "download_exec", 1.0, cmd.argv[0], hard=True)
        if cmd.argv[0].startswith("${!"):
            walk.add("obfuscation.indirection", "obfuscation", 0.6, cmd.argv[0])
    if cmd.name_escaped and not cmd.name_dynamic:
        walk.add("obfuscation.quoted_command_name", "obfuscation", 0.35, cmd.raw[:40])
    if not cmd.argv[0].isascii():
        walk.add("obfuscation.non_ascii_command", "obfuscation", 0.5, cmd.argv[0])
    for arg in cmd.argv:
        if arg.startswith("${!"):
            walk.add("obfuscation.indirection", "obfuscation", 0.5, arg)
    if "$'" in cmd.raw and _HEX_ESCAPES.search(cmd.raw):
        walk.add("obfuscation.ansi_c_escapes", "obfuscation", 0.45, cmd.raw[:40])
    for sub in cmd.substitutions:
        if _NET_RE.search(sub) and cmd.program in SHELLS | INTERPRETERS | {"eval", "source", "."}:
            walk.add("download_exec.substitution", "download_exec", 1.0, sub, hard=True)
    wrappers, argv = _unwrap(cmd.argv)
    for wrapper in wrappers:
        if wrapper in ("systemd-run", "start-stop-daemon", "script", "unbuffer", "openvt", "setsid"):
            walk.add(
                "exec.detached_wrapper", "exec", 0.3 if wrapper == "setsid" else 0.5, " ".join(cmd.argv[:3])
            )
            if any(a in ("-s", "--shell", "-S") for a in cmd.argv[1:3]):
                walk.add("shell.interactive", "shell", 0.6, " ".join(cmd.argv[:3]))
        privilege = PRIVILEGE.get(wrapper)
        if privilege is not None:
            walk.add(f"privilege.{wrapper}", "privilege", privilege, " ".join(cmd.argv[:3]))
    if wrappers and not argv:
        if wrappers[-1] in PRIVILEGE or wrappers[-1] in ("env", "exec"):
            if (wrappers[-1] in ("su", "sudo", "doas", "pkexec") and len(cmd.argv) <= 2) or wrappers[
                -1
            ] == "su":
                walk.add("shell.privileged_session", "shell", 0.6, " ".join(cmd.argv[:3]))
            if wrappers[-1] == "env" and len(cmd.argv) == 1:
                walk.add("credentials.env_dump", "credentials", 0.35 if cmd.pipeline >= 0 else 0.5, "env")
        if "-s" in cmd.argv or "-i" in cmd.argv:
            walk.add("shell.privileged_session", "shell", 0.6, " ".join(cmd.argv[:3]))
        return
    if not argv:
        return
    prog = _basename(argv[0])
    args = argv[1:]
    lowered = tuple(a.lower() for a in args)
    if wrappers and wrappers[0] == "xargs" and prog in SHELLS | INTERPRETERS:
        walk.add("shell.xargs_interpreter", "shell", 0.6, " ".join(cmd.argv[:4]))
    if wrappers and ("su" in wrappers) and "-c" in cmd.argv:
        idx = cmd.argv.index("-c")
        if idx + 1 < len(cmd.argv):
            _score_source(cmd.argv[idx + 1], walk, depth=depth + 1, safe=safe)
    # --- program-specific capabilities --------------------------------------------------------------
    if prog in PRIVILEGE and prog not in WRAPPERS:
        walk.add(f"privilege.{prog}", "privilege", PRIVILEGE[prog], " ".join(argv[:3]))
    if prog == "eval":
        walk.add("obfuscation.eval", "obfuscation", 0.55, " ".join(argv[:4]))
        _score_source(" ".join(args), walk, depth=depth + 1, safe=safe)
    elif prog in ("source", "."):
        if cmd.process_inputs or any(a.startswith(("/dev/", "<(")) for a in args):
            walk.add("shell.source_stream", "shell", 0.6, " ".join(argv[:3]))
    elif prog in SHELLS and prog not in ("busybox", "toybox"):
        _score_shell(prog, args, cmd, walk, depth=depth, safe=safe)
    elif prog in INTERPRETERS:
        _score_interpreter(prog, args, cmd, walk, depth=depth, safe=safe)
    if prog in NETWORK:
        _score_network(prog, args, lowered, cmd, walk, safe)
    weight = INTERACTIVE.get(prog, 0.0)
    if prog in ("less", "more", "most", "pg", "man", "vi", "vim", "nvim", "view", "nano", "emacs") and any(
        not a.startswith("-") for a in args
    ):
        weight = min(weight, 0.35)
    if weight and not (prog in ("sqlite3", "mysql", "psql") and len(args) > 1):
        walk.add("shell.interactive_program", "shell", weight, " ".join(argv[:3]))
    if prog in ("vi", "vim", "nvim", "ed", "ex", "nano", "emacs", "pico", "joe") and any(
        _path_class(a, safe) == "outside" for a in args if not a.startswith(("-", "+"))
    ):
        walk.add("file_write.editor_outside_workspace", "file_write", 0.5, " ".join(argv[:3]))
    if prog in ("screen", "tmux", "run-parts"):
        walk.add("shell.terminal_wrapper", "shell", 0.5, " ".join(argv[:3]))
    if prog == "getent" and any(a in ("shadow", "gshadow") for a in lowered):
        walk.add("credentials.read", "credentials", 0.6, " ".join(argv[:3]))
    if prog == "sysctl" and any("=" in a for a in args):
        walk.add("privilege.sysctl_write", "privilege", 0.55, " ".join(argv[:3]))
    if (
        any(
            a in ("--listen", "tunnel", "proxy", "httpd", "0.0.0.0", "-s")
            or a.startswith(("--listen=", "--address=0.0.0.0", "0.0.0.0:", "--http=", "--https="))
            for a in lowered
        )
        and prog not in NETWORK
        and (
            prog in INTERPRETERS
            or any(
                a in ("tunnel", "proxy", "httpd", "serve", "--listen")
                or "0.0.0.0" in a
                or a.startswith(("--http=", "--listen="))
                for a in lowered
            )
        )
    ):
        walk.add("network.listener", "network", 0.5, " ".join(argv[:4]))
    if any(
        a.startswith(
            (
                "--rsh-command",
                "--rsync-path",
                "--use-compress-program",
                "--to-command",
                "--checkpoint-action",
                "--info-script",
                "--new-volume-script",
                "--password-command",
                "--editor",
                "--unzip-command",
                "-tt",
            )
        )
        and prog in ("tar", "restic", "rsync", "pip", "pip3", "zip")
        for a in lowered
    ):
        walk.add("exec.command_option", "exec", 0.5, " ".join(argv[:4]))
    if prog in ("tar", "restic", "rclone", "borg") and any(
        re.match(r"^[\w.-]+@[\w.-]+:|^(?:rest|sftp|s3):", a) for a in lowered
    ):
        walk.add("network.transfer", "network", 0.5, " ".join(argv[:4]))
    if prog in SERVERS or (
        prog in ("python", "pypy") and any(a in ("http.server", "smtpd", "pyftpdlib") for a in lowered)
    ):
        walk.add("network.listener", "network", 0.55, " ".join(argv[:4]))
    if prog == "sed":
        script = next((a for a in args if not a.startswith("-")), "")
        if re.search(r"(?:^|[;/{}\s])e(?:\s|$|;)|/e$|/[gpi]*e[gpi]*$", script):
            walk.add("shell.sed_execute", "shell", 0.6, script[:40])
        if re.search(r"(?:^|[;/{}\s])w\s+/|/w\s+/", script):
            walk.add("file_write.sed_w", "file_write", 0.5, script[:40])
    operands = [a for a in args if not a.startswith("-") or a == "-"]
    if any(
        a.startswith(("--unsafe", "--dangerous", "--insecure-exec", "--allow-root", "--no-sandbox"))
        for a in lowered
    ):
        walk.add("option.unsafe", "option", 0.5, " ".join(argv[:4]))
    if prog in ("iptables", "ip6tables", "nft", "ufw", "firewall-cmd", "iptables-restore") and any(
        a
        in (
            "-a",
            "-i",
            "-d",
            "-r",
            "-p",
            "add",
            "insert",
            "delete",
            "allow",
            "deny",
            "--add-port",
            "--add-rule",
        )
        for a in lowered
    ):
        walk.add("privilege.firewall_change", "privilege", 0.5, " ".join(argv[:4]))
    if (
        len(operands) >= 2
        and prog not in _READERS
        and prog not in _COPY_LIKE
        and prog not in NETWORK
        and _path_class(operands[-1], safe) == "outside"
        and operands[-1].startswith(("/", "~"))
    ):
        walk.add("file_write.positional_outside_workspace", "file_write", 0.5, " ".join(argv[:4]))
    if prog in DISK or prog.startswith("mkfs"):
        walk.add("destructive.disk_format", "destructive", 1.0, " ".join(argv[:3]), hard=True)
    if prog == "dd":
        for arg in args:
            if arg.startswith("of="):
                _write_target(cmd, arg[3:], walk, safe, "dd")
            if arg.startswith("if=") and _CREDENTIALS.search(arg[3:].lower()):
                walk.add("credentials.read", "credentials", 0.6, arg)
    if prog in ("rm", "shred", "unlink", "rmdir", "srm"):
        _score_delete(prog, args, walk, safe)
    if prog == "find" and any(
        a in ("-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprintf", "-fls") for a in args
    ):
        if "-delete" in args and args and _ROOTISH.match(args[0]):
            walk.add("destructive.find_delete_root", "destructive", 0.9, " ".join(argv[:4]))
        idx = next((i for i, a in enumerate(args) if a in ("-exec", "-execdir", "-ok", "-okdir")), -1)
        if idx >= 0:
            inner = []
            for a in args[idx + 1 :]:
                if a in (";", "+", "\\;"):
                    break
                inner.append(a)
            if inner:
                _score_inner_argv(tuple(inner), cmd, walk, depth=depth, safe=safe)
        for i, a in enumerate(args):
            if a in ("-fprint", "-fprintf", "-fls") and i + 1 < len(args):
                _write_target(cmd, args[i + 1], walk, safe, "option")
    if prog in ("chmod", "chown", "chgrp", "chattr", "setfacl"):
        _score_perm(prog, args, walk)
    if prog in ("crontab", "at", "batch") and (not set(lowered) <= {"-l", "-u", "--list"} or not args):
        walk.add("persistence.scheduler", "persistence", 0.65, " ".join(argv[:3]))
    if prog in ("systemctl", "launchctl", "update-rc.d", "chkconfig", "rc-update", "service"):
        verbs = {
            "enable",
            "link",
            "load",
            "bootstrap",
            "add",
            "defaults",
            "edit",
            "set-default",
            "daemon-reload",
            "preset",
            "reenable",
            "--now",
        }
        if any(a in verbs for a in lowered):
            walk.add("persistence.service", "persistence", 0.65, " ".join(argv[:3]))
        elif any(
            a in ("stop", "disable", "mask", "kill", "isolate", "poweroff", "reboot", "halt") for a in lowered
        ):
            walk.add("destructive.service_stop", "destructive", 0.55, " ".join(argv[:3]))
    if prog in ("systemd-run", "systemd-nspawn"):
        walk.add("shell.systemd_run", "shell", 0.6, " ".join(argv[:3]))
    if prog in ("shutdown", "reboot", "halt", "poweroff", "init", "telinit", "kexec"):
        walk.add("destructive.power", "destructive", 0.6, " ".join(argv[:2]))
    if prog in ("kill", "pkill", "killall", "killall5") and (
        "-1" in args[1:] or prog == "killall5" or (args and args[-1] in ("-1", "1"))
    ):
        walk.add("destructive.kill_all", "destructive", 0.7, " ".join(argv[:3]))
    if prog in ("iptables", "ip6tables", "nft", "ufw", "firewall-cmd") and any(
        a in ("-f", "--flush", "flush", "disable", "-x", "--delete-chain", "-p") for a in lowered
    ):
        walk.add("destructive.firewall", "destructive", 0.6, " ".join(argv[:3]))
    if prog in ("mount", "umount", "swapoff", "losetup", "cryptsetup"):
        walk.add("privilege.mount", "privilege", 0.5, " ".join(argv[:3]))
    if prog in ("env", "printenv", "export", "declare", "set", "compgen") and (
        not args or set(lowered) <= {"-p", "-x", "-a", "-v", "-0", "--null"}
    ):
        # Filtered dumps (env | grep NAME) expose less than a full dump.
        walk.add("credentials.env_dump", "credentials", 0.35 if cmd.pipeline >= 0 else 0.5, prog)
    if prog in ("history", "fc") and (not args or "-r" not in lowered):
        walk.add("credentials.history", "credentials", 0.3, prog)
    if prog in ("docker", "podman", "nerdctl", "kubectl", "lxc") and any(
        a in ("--privileged", "--pid=host", "--net=host", "--network=host")
        or a.startswith(("-v/:", "-v=/:"))
        or a in ("/:/mnt", "/:/host")
        or a.startswith("/:/")
        for a in lowered
    ):
        walk.add("privilege.container_escape", "privilege", 0.65, " ".join(argv[:4]))
    if prog in ("docker", "podman") and "exec" in lowered and any(a in SHELLS for a in lowered):
        walk.add("shell.container_shell", "shell", 0.5, " ".join(argv[:4]))
    if (prog == "ldconfig" or any(a.endswith((".so", ".dylib")) or ".so." in a for a in args)) and (
        prog not in _SO_INSPECTORS
    ):
        walk.add("library_load.shared_object", "library_load", 0.55, " ".join(argv[:4]))
    # --- generic features over every argument --------------------------------------------------------
    _score_args(prog, argv, cmd, walk, depth=depth, safe=safe)


_SO_INSPECTORS = frozenset(
    [
        "ls",
        "file",
        "ldd",
        "nm",
        "objdump",
        "readelf",
        "strings",
        "cp",
        "mv",
        "find",
        "stat",
        "sha256sum",
        "md5sum",
        "strip",
        "rm",
        "echo",
        "cat",
    ]
)


def _score_shell(
    prog: str, args: tuple[str, ...], cmd: SimpleCommand, walk: _Walk, *, depth: int, safe: tuple[str, ...]
) -> None:
    inline = None
    for i, arg in enumerate(args):
        if arg == "-c" or (arg.startswith("-") and not arg.startswith("--") and "c" in arg[1:]):
            if i + 1 < len(args):
                inline = args[i + 1]
            break
        if not arg.startswith("-"):
            break
    if inline is not None:
        walk.add("shell.inline", "shell", 0.3, inline[:60])
        _score_source(inline, walk, depth=depth + 1, safe=safe)
        return
    operands = [a for a in args if not a.startswith("-") and not a.startswith("+")]
    if cmd.process_inputs:
        if any(_NET_RE.search(p) for p in cmd.process_inputs):
            walk.add("download_exec.process_substitution", "download_exec", 1.0, cmd.raw[:60], hard=True)
        else:
            walk.add("shell.process_substitution", "shell", 0.6, cmd.raw[:60])
        return
    if not operands:
        if cmd.position > 0:
            return  # stdin of a pipeline: judged with the pipeline
        if any(op.startswith("<") and _NET_DEVICE.match(t.lower()) for op, t in cmd.redirects):
            return
        walk.add("shell.interactive", "shell", 0.6, " ".join((prog, *args))[:40])
        if any(a in ("-p", "-i") for a in args):
            walk.add("shell.privileged_flag", "shell", 0.3, " ".join(args)[:20])
    elif operands[0].startswith("/dev/") or operands[0] in ("-", "/dev/stdin"):
        walk.add("shell.stream_script", "shell", 0.6, operands[0])


def _score_interpreter(
    prog: str, args: tuple[str, ...], cmd: SimpleCommand, walk: _Walk, *, depth: int, safe: tuple[str, ...]
) -> None:
    code = _inline_code(prog, args)
    if code is None:
        if cmd.process_inputs and any(_NET_RE.search(p) for p in cmd.process_inputs):
            walk.add("download_exec.process_substitution", "download_exec", 1.0, cmd.raw[:60], hard=True)
        if prog in _AWKS:
            return
        if (
            (not args or set(args) <= {"-i", "-q", "-u", "-", "-I", "-E", "-s"})
            and cmd.position == 0
            and prog != "gdb"
        ):
            walk.add("shell.interpreter_session", "shell", 0.5, prog)
        if prog == "gdb" and any(a.startswith(("-ex", "--ex", "-x")) for a in args):
            walk.add("shell.debugger_script", "shell", 0.5, " ".join(args)[:40])
        return
    _score_code(prog, code, cmd, walk, depth=depth, safe=safe)


def _score_inner_argv(
    argv: tuple[str, ...], cmd: SimpleCommand, walk: _Walk, *, depth: int, safe: tuple[str, ...]
) -> None:
    """A command run by another program (find -exec, xargs): score it as its own simple command."""
    inner = SimpleCommand(argv=argv, pipeline=-1, position=0, nested=True, raw=" ".join(argv))
    _score_simple(inner, walk, depth=depth + 1, safe=safe)
    if argv and _basename(argv[0]) in SHELLS | INTERPRETERS:
        walk.add("shell.spawned_by_program", "shell", 0.6, " ".join(argv)[:60])


def _score_args(
    prog: str, argv: tuple[str, ...], cmd: SimpleCommand, walk: _Walk, *, depth: int, safe: tuple[str, ...]
) -> None:
    args = argv[1:]
    info = prog in _INFO_PROGRAMS
    for i, arg in enumerate(argv):
        lower = arg.lower()
        if i == 0:
            if (
                lower.startswith("/")
                and not lower.startswith(_SYSTEM_PREFIXES)
                and not any(lower.startswith(prefix) for prefix in safe)
            ):
                walk.add("exec.unusual_path", "exec", 0.5, arg[:60])
            if _SHELL_PATH.search(lower) and prog not in SHELLS:
                walk.add("shell.shell_path_command", "shell", 0.6, arg)
            if lower.startswith("!"):
                walk.add("shell.escape_command", "shell", 0.6, arg)
            continue
        shebang = lower.startswith("#!") and "\n" not in lower.strip()
        if _SHELL_PATH.search(lower) and not shebang:
            walk.add("shell.shell_in_argument", "shell", 0.6, arg[:60])
        if len(arg) > 12 and not shebang:
            _scan_arg_code(arg, lower, walk)
        if not info:
            if _SHELL_PATH.search(lower):
                pass
            elif (
                _basename(arg) in SHELLS
                and prog not in SHELLS
                and "/" not in arg.rstrip("/")[:-1]
                and _basename(arg) not in ("busybox", "toybox")
            ):
                walk.add("shell.shell_in_argument", "shell", 0.6, arg[:60])
            elif _SHELL_WORD.search(lower) and any(ch in arg for ch in " ;|&'\"(=!"):
                walk.add("shell.shell_in_argument", "shell", 0.55, arg[:60])
            if _ESCAPE.search(lower):
                walk.add("shell.escape_in_argument", "shell", 0.55, arg[:60])
            if i == 1 and lower in _SUBCOMMAND_SHELL and prog not in ("git", "docker", "podman", "kubectl"):
                walk.add("shell.subcommand", "shell", 0.5, f"{prog} {arg}")
            if i == 1 and lower == "tunnel":
                walk.add("network.remote_access_tunnel", "reverse_shell", 1.0, f"{prog} {arg}", hard=True)
        elif _ESCAPE.search(lower) and prog in ("echo", "printf"):
            walk.add("shell.escape_in_argument", "shell", 0.55, arg[:60])
        if "src=/," in lower or "source=/," in lower or lower.startswith(("/:/", "-v/:/")):
            walk.add("privilege.host_root_mount", "privilege", 0.65, arg[:60])
        if prog in _PACKAGE_MANAGERS and _LOCAL_PACKAGE.search(lower):
            walk.add("privilege.local_package_install", "privilege", 0.55, arg[:60])
            if (
                _basename(arg) in INTERPRETERS - _AWKS
                and prog not in INTERPRETERS
                and prog not in _COPY_LIKE
                and i == 1
                and prog in WRAPPERS
            ):
                walk.add("shell.interpreter_via_wrapper", "shell", 0.4, arg[:60])
        if _NET_DEVICE.search(lower) or "/dev/tcp/" in lower or "/dev/udp/" in lower:
            walk.add("network.dev_tcp", "network", 0.75, arg[:60])
            if _SHELL_PATH.search(lower) or _SHELL_WORD.search(lower) or prog in SHELLS:
                walk.add("network.reverse_shell", "reverse_shell", 1.0, arg[:60], hard=True)
        if _CREDENTIALS.search(lower) and prog not in (
            "chmod",
            "ls",
            "mkdir",
            "stat",
            "test",
            "[",
            "ssh-keygen",
            "ssh",
            "ssh-add",
            "ssh-copy-id",
            "touch",
            "rm",
        ):
            walk.add("credentials.read", "credentials", 0.6, arg[:60])
        m = _OUTPUT_OPT_RE.match(arg)
        if m and prog not in ("curl", "wget", "dd"):
            _write_target(cmd, next(g for g in m.groups() if g), walk, safe, "option")
        elif arg.startswith("-") and "=" in arg and prog not in ("curl", "wget", "dd"):
            opt, _, value = arg.partition("=")
            if _OUTPUT_OPT_NAME.match(opt):
                _write_target(cmd, value, walk, safe, "option")
            if _ENV_HOOK_NAME.search(opt) and (value.startswith(("/", "./", "~", "|")) or " " in value):
                walk.add("exec.command_option", "exec", 0.5, arg[:60])
        elif (
            arg.startswith("-")
            and i + 1 < len(argv)
            and _OUTPUT_OPT_NAME.match(arg)
            and arg not in _OUTPUT_OPTS
            and prog not in ("curl", "wget", "dd", "git", "grep", "rg", "tar", "ssh")
        ):
            _write_target(cmd, argv[i + 1], walk, safe, "option")
        if (i > 0 and "=|/" in lower) or lower.startswith("|/"):
            walk.add("exec.pipe_hook", "exec", 0.6, arg[:60])
        if i > 0 and not arg.startswith("-") and "=" in arg:
            key, _, value = arg.partition("=")
            if _ENV_HOOK_NAME.search(key) and value.startswith(("/", "./", "~")):
                walk.add("exec.command_option", "exec", 0.5, arg[:60])
        if (
            arg in _OUTPUT_OPTS
            and i + 1 < len(argv)
            and prog
            not in (
                "curl",
                "wget",
                "grep",
                "rg",
                "ls",
                "git",
                "tar",
                "cut",
                "tr",
                "head",
                "tail",
                "ps",
                "find",
                "xargs",
                "ssh",
                "nc",
                "df",
                "du",
                "date",
                "ln",
                "rm",
                "docker",
                "podman",
                "tsckubectl",
                "tmux",
                "tee",
            )
        ):
            _write_target(cmd, argv[i + 1], walk, safe, "option")
    if prog in _COPY_LIKE and len(args) >= 1:
        operands = [a for a in args if not a.startswith("-")]
        if prog == "tee":
            targets = operands
        elif prog == "sed":
            targets = operands[1:] if any(a.startswith("-i") or a == "--in-place" for a in args) else []
        elif prog in ("touch", "truncate"):
            targets = operands
        elif prog == "tar":
            idx = next((k for k, a in enumerate(args) if a in ("-C", "--directory")), -1)
            targets = [args[idx + 1]] if 0 <= idx < len(args) - 1 else []
        elif prog in ("unzip", "7z"):
            idx = next((k for k, a in enumerate(args) if a == "-d"), -1)
            targets = (
                [args[idx + 1]] if 0 <= idx < len(args) - 1 else [a[2:] for a in args if a.startswith("-o")]
            )
        elif prog in ("cp", "mv", "install", "ln", "rsync", "patch"):
            targets = operands[-1:] if len(operands) >= 2 or prog == "patch" else []
        else:
            targets = []
        for target in targets:
            _write_target(cmd, target, walk, safe, prog)
        if prog in ("cp", "mv", "rsync", "tar", "zip", "7z") and any(
            _CREDENTIALS.search(a.lower()) for a in operands
        ):
            walk.add("credentials.copy", "credentials", 0.6, " ".join(operands)[:60])


def _score_pipelines(commands: list[SimpleCommand], walk: _Walk) -> None:
    """Judge each pipeline as a whole: fetch|shell, decode|shell, shell|network (reverse shell),
    secrets|network (exfiltration)."""
    groups: dict[int, list[SimpleCommand]] = {}
    for cmd in commands:
        if cmd.pipeline >= 0:
            groups.setdefault(cmd.pipeline, []).append(cmd)
    any_net = any(_unwrapped_prog(c) in NETWORK for c in commands)
    any_secret = any(
        any(_CREDENTIALS.search(a.lower()) for a in c.argv[1:])
        or (bool(c.argv) and _basename(c.argv[0]) in ("env", "printenv") and len(c.argv) == 1)
        or any(_CREDENTIALS.search(t.lower()) for op, t in c.redirects if op.startswith("<"))
        for c in commands
    )
    if any_net and any_secret:
        walk.add("exfiltration.credentials_to_network", "exfiltration", 1.0, "", hard=True)
    for members in groups.values():
        members.sort(key=lambda c: c.position)
        progs = [_unwrapped_prog(c) for c in members]
        for i, cmd in enumerate(members):
            prog = progs[i]
            if i == 0:
                continue
            stdin_exec = (
                (prog in SHELLS and not _has_operand(cmd))
                or (
                    prog in INTERPRETERS - _AWKS
                    and _inline_code(prog, _unwrap(cmd.argv)[1][1:]) is None
                    and not _has_operand(cmd)
                )
                or prog in ("eval", "source", ".")
            )
            upstream = progs[:i]
            if stdin_exec:
                if any(p in NETWORK for p in upstream) or any(
                    _NET_RE.search(" ".join(c.argv)) for c in members[:i]
                ):
                    if any(p in ("nc", "ncat", "netcat", "telnet", "socat", "openssl") for p in upstream):
                        walk.add("network.reverse_shell", "reverse_shell", 1.0, " | ".join(progs), hard=True)
                    else:
                        walk.add("download_exec.pipe", "download_exec", 1.0, " | ".join(progs), hard=True)
                elif any(_is_decoder(c) for c in members[:i]):
                    walk.add("obfuscation.decode_exec", "obfuscation", 1.0, " | ".join(progs), hard=True)
                else:
                    walk.add("shell.pipe_to_interpreter", "shell", 0.6, " | ".join(progs))
            if prog in NETWORK and any(p in SHELLS | INTERPRETERS for p in upstream):
                walk.add("network.reverse_shell", "reverse_shell", 1.0, " | ".join(progs), hard=True)
            reads_stdin = prog in ("nc", "ncat", "netcat", "socat", "telnet", "ssh", "openssl") or (
                prog in ("curl", "wget")
                and any(a in ("@-", "-t", "-") or a.endswith("@-") for a in (x.lower() for x in cmd.argv))
            )
            if reads_stdin and any(
                p in ("cat", "tar", "zip", "gzip", "base64", "xxd", "echo", "printf") for p in upstream
            ):
                walk.add("network.upload_pipe", "network", 0.55, " | ".join(progs))


def _unwrapped_prog(cmd: SimpleCommand) -> str:
    _, argv = _unwrap(cmd.argv)
    return _basename(argv[0]) if argv else ""


def _has_operand(cmd: SimpleCommand) -> bool:
    _, argv = _unwrap(cmd.argv)
    return any(not a.startswith("-") for a in argv[1:])


def _is_decoder(cmd: SimpleCommand) -> bool:
    _, argv = _unwrap(cmd.argv)
    if not argv:
        return False
    prog = _basename(argv[0])
    lowered = [a.lower() for a in argv[1:]]
    if prog in ("base64", "base32"):
        return any(a in ("-d", "--decode", "-D") for a in lowered)
    if prog == "xxd":
        return any(a.startswith("-r") for a in lowered)
    if prog == "openssl":
        return "-d" in lowered or "base64" in lowered
    if prog in ("printf", "echo"):
        return any(_HEX_ESCAPES.search(a) for a in argv[1:])
    return prog in ("uudecode", "rev", "gunzip", "zcat", "gzip") and (prog != "gzip" or "-d" in lowered)
