"""Entry point of the ``appliance`` command.

Exit codes (BSD sysexits, documented in the README):
0 ok · 1 a check failed (doctor) · 2 bad command-line usage · 65 bad input data · 66 not found ·
69 unavailable · 70 internal bug · 74 I/O or database error · 75 temporary failure · 77 permission · 78 config.

Any :class:`~appliance.errors.ApplianceError` becomes one line on stderr and its exit code; any other
exception is a bug: one line plus where the traceback was logged, exit 70. Never a bare traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from appliance import __version__
from appliance.errors import ApplianceError, ExitCode

__all__ = ["build_parser", "main"]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; ``argv`` lets it skip importing component commands that are not being run."""
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="Personal AI-assistant gateway for small edge boards (OpenClaw-compatible).",
    )
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--profile", help="embedded (default), dev, or a path to a TOML profile")
        p.add_argument("--config", help="operator config file (TOML), layered over the profile")
        p.add_argument("--data-dir", help="data directory (overrides config)")

    serve = sub.add_parser("serve", help="run the gateway until SIGINT/SIGTERM")
    common(serve)
    serve.add_argument("--port", type=int, help="gateway port (0 picks a free one)")
    serve.add_argument("--bind", help="loopback, lan, or an IP address")

    doctor = sub.add_parser("doctor", help="check config, data dir, database, disk, clock, container engine")
    common(doctor)
    doctor.add_argument("--json", action="store_true", help="machine-readable output")

    status = sub.add_parser("status", help="show what this appliance is and whether its gateway runs")
    common(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")

    version = sub.add_parser("version", help="print the version")
    version.add_argument("--json", action="store_true", help="machine-readable output")

    from appliance.cli import components

    components.add_all(sub, argv)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(_dispatch(args))
    except ApplianceError as exc:
        print(f"appliance: {exc.one_line()}", file=sys.stderr)
        return int(exc.exit_code)
    except BaseExceptionGroup as group:  # trio nurseries wrap errors; report the first typed one
        typed = _first_appliance_error(group)
        if typed is None:
            return _report_bug(group, args.command)
        print(f"appliance: {typed.one_line()}", file=sys.stderr)
        return int(typed.exit_code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return int(ExitCode.OK)
    except Exception as exc:
        return _report_bug(exc, args.command)


def _report_bug(exc: BaseException, command: str) -> int:
    """A bug: the traceback goes to the JSON log, the operator gets one line and exit 70."""
    from appliance.log import get_logger

    get_logger("appliance.cli").exception("command_crashed", exc, command=command)
    print(f"appliance: internal error ({type(exc).__name__}); details in the log above", file=sys.stderr)
    return int(ExitCode.SOFTWARE)


def _first_appliance_error(group: BaseExceptionGroup[BaseException]) -> ApplianceError | None:
    for exc in group.exceptions:
        if isinstance(exc, ApplianceError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_appliance_error(exc)
            if found is not None:
                return found
    return None


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from appliance.cli.lean import lean_serve_imports

        lean_serve_imports()  # before the serve module imports anything: idle RSS is a target
        from appliance.cli.commands.serve import run_serve

        return run_serve(args)
    if args.command == "doctor":
        from appliance.cli.commands.doctor import run_doctor

        return run_doctor(args)
    if args.command == "status":
        from appliance.cli.commands.status import run_status

        return run_status(args)
    if args.command == "version":
        from appliance.cli.commands.version import run_version

        return run_version(args)
    handler = getattr(args, "handler", None)
    if handler is None:  # pragma: no cover - argparse requires a command
        raise SystemExit(ExitCode.USAGE)
    return int(handler(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
