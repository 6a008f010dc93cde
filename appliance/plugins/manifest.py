"""``plugin.toml``: what an installed plugin is and how to run it, parsed sans-IO.

Each enabled plugin is a directory ``<plugins.dir>/<name>/`` holding ``plugin.toml``::

    description = "Bridge to the team chat"
    kind = "channel"                      # or "tools"
    command = ["./run", "--verbose"]      # argv; a first word with a "/" is relative to the plugin dir
    env = ["TEAMCHAT_TOKEN"]              # variables passed from the appliance's environment
    capabilities = ["channel.poll", "channel.ack", "channel.send"]   # methods the host may call

    [channel]                             # kind = "channel" only
    allow_sender_ids = ["U123"]
    allow_chat_ids = []
    allow_all = false
    require_mention_in_groups = true
    max_message_chars = 4000
    poll_timeout_s = 25

Rules:
- every key is checked; an unknown key, a wrong type or a bad value raises :class:`PluginManifestError`
  (a :class:`~appliance.errors.ConfigError`, exit 78) naming the file and the key, in one line;
- ``capabilities`` is the operator's grant: the plugin is refused at handshake if it declares more. For a
  channel it defaults to (and must include) ``channel.poll``, ``channel.ack`` and ``channel.send``; for
  tools it defaults to ``tools.list`` and ``tools.call`` (without them the plugin offers the agent no
  tools);
- the plugin gets no environment but a minimal base (``PATH``, locale, ``TZ``) plus the names in ``env``:
  the gateway's own secrets never reach it unless listed;
- this module reads no file and calls no ``os``: the caller passes the text and the paths.
"""

from __future__ import annotations

import enum
import posixpath
import re
import tomllib
from collections.abc import Mapping
from typing import Any

import attrs

from appliance.errors import ConfigError

__all__ = [
    "CHANNEL_METHODS",
    "MANIFEST_FILE",
    "TOOL_METHODS",
    "ChannelOptions",
    "PluginDefinition",
    "PluginKind",
    "PluginManifestError",
    "check_plugin_name",
    "parse_manifest",
    "resolve_argv0",
]

MANIFEST_FILE = "plugin.toml"
CHANNEL_METHODS = ("channel.ack", "channel.poll", "channel.send")
#: the default grant of a ``kind = "tools"`` plugin (see :mod:`appliance.plugins.tool_wire`)
TOOL_METHODS = ("tools.call", "tools.list")

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CAPABILITY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


class PluginManifestError(ConfigError):
    """A ``plugin.toml`` (or the ``plugins.enabled`` name pointing at it) is wrong."""


class PluginKind(enum.StrEnum):
    CHANNEL = "channel"
    TOOLS = "tools"


@attrs.frozen
class ChannelOptions:
    """How a channel plugin's messages are gated and split (the built-in channels' settings, per plugin)."""

    allow_sender_ids: tuple[str, ...] = ()
    allow_chat_ids: tuple[str, ...] = ()
    allow_all: bool = False
    require_mention_in_groups: bool = True
    max_message_chars: int = 4000
    poll_timeout_s: float = 25.0


@attrs.frozen
class PluginDefinition:
    """One parsed manifest; ``directory`` is where it was found (the plugin's working directory)."""

    name: str
    kind: PluginKind
    command: tuple[str, ...]
    directory: str
    source: str
    description: str = ""
    env: tuple[str, ...] = ()
    capabilities: frozenset[str] = frozenset()
    channel: ChannelOptions | None = None

    @property
    def argv(self) -> tuple[str, ...]:
        """``command`` with a relative first word (``./run``, ``bin/x``) made absolute under ``directory``."""
        return (resolve_argv0(self.command[0], self.directory), *self.command[1:])


def check_plugin_name(name: str, *, source: str = "plugins.enabled") -> str:
    """Raises PluginManifestError unless ``name`` is a safe directory name (no ``/``, no ``..``)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise PluginManifestError(
            f"plugin name {name!r} must be 1-32 of a-z 0-9 _ - (starting with a letter or digit)",
            key="plugins.enabled",
        )
    return name


def resolve_argv0(word: str, directory: str) -> str:
    """A first word with a ``/`` is a path (relative ones are under ``directory``); a bare word is left
    for ``PATH`` lookup."""
    if "/" not in word:
        return word
    return posixpath.normpath(posixpath.join(directory, word))


_TOP_KEYS = ("description", "kind", "command", "env", "capabilities", "channel")
_CHANNEL_KEYS = tuple(f.name for f in attrs.fields(ChannelOptions))


class _Reader:
    """Typed access to one TOML table; every failure names ``source`` and the dotted key."""

    def __init__(self, table: Mapping[str, Any], source: str, prefix: str = "") -> None:
        self.table = table
        self.source = source
        self.prefix = prefix

    def fail(self, key: str, message: str) -> PluginManifestError:
        return PluginManifestError(message, source=self.source, key=f"{self.prefix}{key}")

    def only(self, known: tuple[str, ...]) -> None:
        for key in self.table:
            if key not in known:
                raise self.fail(key, f"unknown key (known keys: {', '.join(known)})")

    def string(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if value is None:
            raise self.fail(key, "missing (required)")
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {type(value).__name__}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {type(value).__name__}")
        return value

    def number(self, key: str, default: float, lo: float, hi: float, *, integer: bool = False) -> float:
        value = self.table.get(key, default)
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            raise self.fail(key, f"expected {'an integer' if integer else 'a number'}, got {value!r}")
        if not lo <= value <= hi:
            raise self.fail(key, f"{value} is out of range [{lo:g}, {hi:g}]")
        return float(value)

    def strings(self, key: str, *, ids: bool = False) -> tuple[str, ...] | None:
        """A list of strings (``ids``: integers allowed too, as Telegram-style ids); None when absent."""
        if key not in self.table:
            return None
        value = self.table[key]
        allowed: tuple[type, ...] = (str, int) if ids else (str,)
        if not isinstance(value, list) or not all(
            isinstance(v, allowed) and not isinstance(v, bool) for v in value
        ):
            kind = "strings or integers" if ids else "strings"
            raise self.fail(key, f"expected a list of {kind}")
        return tuple(str(v) for v in value)


def parse_manifest(text: str, *, name: str, directory: str, source: str) -> PluginDefinition:
    """Parse and check one ``plugin.toml``. Raises PluginManifestError (one line: file, key, what)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PluginManifestError(f"not valid TOML: {exc}", source=source) from None
    top = _Reader(doc, source)
    top.only(_TOP_KEYS)
    raw_kind = top.string("kind")
    try:
        kind = PluginKind(raw_kind)
    except ValueError:
        raise top.fail("kind", f"{raw_kind!r} is not one of: channel, tools") from None
    if "command" not in doc:
        raise top.fail("command", 'missing (required), e.g. command = ["./run"]')
    command = top.strings("command")
    if not command or not all(word.strip() for word in command):
        raise top.fail("command", 'expected a non-empty list of non-empty strings, e.g. ["./run"]')
    env = top.strings("env") or ()
    for var in env:
        if not _ENV_NAME.fullmatch(var):
            raise top.fail("env", f"{var!r} is not an environment variable name")
    declared = top.strings("capabilities")
    caps = frozenset(
        declared
        if declared is not None
        else (CHANNEL_METHODS if kind is PluginKind.CHANNEL else TOOL_METHODS)
    )
    for cap in sorted(caps):
        if not _CAPABILITY.fullmatch(cap):
            raise top.fail("capabilities", f"{cap!r} is not a dotted lower-case method name")
    channel: ChannelOptions | None = None
    if kind is PluginKind.CHANNEL:
        missing = [m for m in CHANNEL_METHODS if m not in caps]
        if missing:
            raise top.fail("capabilities", f"a channel plugin needs {', '.join(missing)}")
        table = doc.get("channel", {})
        if not isinstance(table, dict):
            raise top.fail("channel", "expected a table ([channel])")
        channel = _channel_options(_Reader(table, source, "channel."))
    elif "channel" in doc:
        raise top.fail("channel", 'only a plugin of kind = "channel" has a [channel] table')
    return PluginDefinition(
        name=check_plugin_name(name),
        kind=kind,
        command=command,
        directory=directory,
        source=source,
        description=top.string("description", ""),
        env=env,
        capabilities=caps,
        channel=channel,
    )


def _channel_options(table: _Reader) -> ChannelOptions:
    table.only(_CHANNEL_KEYS)
    default = ChannelOptions()
    return ChannelOptions(
        allow_sender_ids=table.strings("allow_sender_ids", ids=True) or (),
        allow_chat_ids=table.strings("allow_chat_ids", ids=True) or (),
        allow_all=table.boolean("allow_all", default.allow_all),
        require_mention_in_groups=table.boolean(
            "require_mention_in_groups", default.require_mention_in_groups
        ),
        max_message_chars=int(
            table.number("max_message_chars", default.max_message_chars, 16, 1_048_576, integer=True)
        ),
        poll_timeout_s=table.number("poll_timeout_s", default.poll_timeout_s, 0.1, 300),
    )
