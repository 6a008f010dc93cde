"""Load settings from layers: profile TOML, operator file, environment, command line.

Order (later wins), documented for operators in ``profiles/embedded.toml``:

1. the profile: ``embedded`` (default) or ``dev``, or a path to a TOML file; chosen by ``--profile``,
   else ``APPLIANCE_PROFILE``. ``dev`` is layered on top of ``embedded``.
2. the operator config file: ``--config``, else ``APPLIANCE_CONFIG``, else ``<data_dir>/appliance.toml``
   when it exists.
3. environment variables ``APPLIANCE_<SECTION>_<KEY>`` (``APPLIANCE_GATEWAY_PORT``) and
   ``APPLIANCE_<KEY>`` for top-level keys (``APPLIANCE_DATA_DIR``).
4. command-line overrides (``serve --port --data-dir``).

Every layer is checked on its own against the schema in :mod:`appliance.config.settings` before merging,
so a bad value is reported with the file (or variable) and key it came from, as one line, as a
:class:`~appliance.errors.ConfigError` (CLI exit 78).
"""

from __future__ import annotations

import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from appliance.config.settings import Settings
from appliance.errors import ConfigError

__all__ = [
    "PROFILE_DIR",
    "PROFILE_NAMES",
    "ConfigSources",
    "load_settings",
    "parse_layer",
]

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
PROFILE_NAMES = ("embedded", "dev")
ENV_PREFIX = "APPLIANCE_"
_NOT_SETTINGS = {"APPLIANCE_CONFIG", "APPLIANCE_PROFILE", "APPLIANCE_LOG_FORMAT", "APPLIANCE_TOOLS_CACHE"}

Layer = dict[str, Any]


@attrs.frozen
class ConfigSources:
    """Where each layer came from, for ``doctor`` and ``status``."""

    profile: str
    files: tuple[str, ...]
    env_keys: tuple[str, ...]


_STR_LIST = tuple[str, ...]


def _fields(cls: type) -> dict[str, tuple[attrs.Attribute[Any], Any]]:
    """Each attrs field of ``cls`` with its resolved type (annotations are strings here)."""
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in attrs.fields(cls)}


def _sections() -> dict[str, type]:
    return {name: typ for name, (_, typ) in _fields(Settings).items() if attrs.has(typ)}


def _describe(field: attrs.Attribute[Any], typ: Any) -> str:
    meta = field.metadata
    if "choices" in meta:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    name = "a list of strings" if typ == _STR_LIST else names.get(typ, str(typ))
    if "range" in meta:
        lo, hi = meta["range"]
        return f"{name} in {lo}..{hi}"
    return name


def _check_value(field: attrs.Attribute[Any], typ: Any, value: Any, *, from_env: bool) -> Any:
    """Coerce (env strings only) and check one value; raise ValueError(expected) when it does not fit."""
    expected = _describe(field, typ)
    if from_env and isinstance(value, str):
        value = _coerce_env(typ, value, expected)
    if typ is bool:
        ok = isinstance(value, bool)
    elif typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif typ is str:
        ok = isinstance(value, str)
    elif typ == _STR_LIST:  # ids may be written as TOML integers; they are strings on the wire
        ok = isinstance(value, list | tuple) and all(
            isinstance(v, str | int) and not isinstance(v, bool) for v in value
        )
        value = tuple(str(v) for v in value) if ok else value
    else:  # pragma: no cover - the schema uses only these types
        ok = False
    if not ok:
        raise ValueError(f"expected {expected}, got {value!r}")
    if "choices" in field.metadata and value not in field.metadata["choices"]:
        raise ValueError(f"expected {expected}, got {value!r}")
    if "range" in field.metadata:
        lo, hi = field.metadata["range"]
        if not lo <= value <= hi:
            raise ValueError(f"expected {expected}, got {value!r}")
    return value


def _coerce_env(typ: Any, raw: str, expected: str) -> Any:
    text = raw.strip()
    failure = ValueError(f"expected {expected}, got {raw!r}")
    if typ is bool:
        lowered = text.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise failure
    if typ == _STR_LIST:  # comma-separated in the environment
        return tuple(part.strip() for part in text.split(",") if part.strip())
    try:
        if typ is int:
            return int(text, 10)
        if typ is float:
            return float(text)
    except ValueError:
        raise failure from None
    return raw


def _parse_table(cls: type, data: Mapping[str, Any], source: str, prefix: str, from_env: bool) -> Layer:
    fields = _fields(cls)
    out: Layer = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            kind = "keys and tables" if not prefix else "keys"
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown key (known {kind}: {known})", source=source, key=dotted)
        field, typ = fields[key]
        if attrs.has(typ):
            if not isinstance(value, Mapping):
                raise ConfigError(f"expected a table [{dotted}], got {value!r}", source=source, key=dotted)
            out[key] = _parse_table(typ, value, source, f"{dotted}.", from_env)
            continue
        try:
            out[key] = _check_value(field, typ, value, from_env=from_env)
        except ValueError as exc:
            raise ConfigError(str(exc), source=source, key=dotted) from None
    return out


def parse_layer(data: Mapping[str, Any], source: str, *, from_env: bool = False) -> Layer:
    """Check one layer against the schema; return it normalised. Raises ConfigError naming source and key."""
    return _parse_table(Settings, data, source, "", from_env)


def _read_toml(path: Path) -> Layer:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(path)) from None
    except PermissionError:
        raise ConfigError("file not readable (permission denied)", source=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("expected a TOML file, got a directory", source=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("invalid TOML: not UTF-8", source=str(path)) from None
    return parse_layer(data, str(path))


def _env_path(cls: type, rest: str) -> list[str] | None:
    """``channels_telegram_bot_token`` -> ``["channels", "telegram", "bot_token"]`` (tables first)."""
    fields = _fields(cls)
    for name, (_, typ) in fields.items():
        if attrs.has(typ) and rest.startswith(name + "_"):
            tail = _env_path(typ, rest[len(name) + 1 :])
            if tail is not None:
                return [name, *tail]
    return [rest] if rest in fields else None


def _closest_path(cls: type, rest: str) -> list[str]:
    for name, (_, typ) in _fields(cls).items():
        if attrs.has(typ) and rest.startswith(name + "_"):
            return [name, *_closest_path(typ, rest[len(name) + 1 :])]
    return [rest]


def _env_layer(environ: Mapping[str, str]) -> tuple[Layer, list[str]]:
    layer: Layer = {}
    used: list[str] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in _NOT_SETTINGS:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        path = _env_path(Settings, rest)
        if path is None:  # unknown: name the deepest matching table so the message lists its keys
            path = _closest_path(Settings, rest)
        nested: Any = environ[name]
        for part in reversed(path):
            nested = {part: nested}
        layer = _merge(layer, parse_layer(nested, f"environment {name}", from_env=True))
        used.append(name)
    return layer, used


def _merge(base: Layer, top: Layer) -> Layer:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _profile_layers(profile: str) -> list[tuple[str, Layer]]:
    if profile in PROFILE_NAMES:
        names = ["embedded"] if profile == "embedded" else ["embedded", profile]
        return [(f"profiles/{n}.toml", _read_toml(PROFILE_DIR / f"{n}.toml")) for n in names]
    path = Path(profile).expanduser()
    if profile.endswith(".toml") or path.exists():
        return [
            ("profiles/embedded.toml", _read_toml(PROFILE_DIR / "embedded.toml")),
            (str(path), _read_toml(path)),
        ]
    raise ConfigError(
        f"unknown profile {profile!r}: expected one of {', '.join(PROFILE_NAMES)} or a path to a .toml file",
        source="profile",
    )


def _structure(data: Layer) -> Settings:
    """Build Settings from a merged layer that :func:`parse_layer` already checked key by key.

    Not cattrs: every value was validated and coerced per layer (so errors can name their source), leaving
    only construction, and cattrs' import alone costs ~1 MB of the gateway's 35 MB idle budget.
    """
    return _build(Settings, data)  # type: ignore[no-any-return]


def _build(cls: type, data: Layer) -> Any:
    fields = _fields(cls)
    kwargs = {
        key: _build(fields[key][1], value) if isinstance(value, dict) else value
        for key, value in data.items()
    }
    return cls(**kwargs)


def load_settings(
    *,
    profile: str | None = None,
    config_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Settings, ConfigSources]:
    """Build the effective :class:`Settings`. Raises ConfigError (one line: source, key, expectation)."""
    env = os.environ if environ is None else environ
    chosen = profile or env.get("APPLIANCE_PROFILE") or "embedded"
    layers = _profile_layers(chosen)
    files = [name for name, _ in layers]
    merged: Layer = {}
    for _, layer in layers:
        merged = _merge(merged, layer)
    env_layer, env_keys = _env_layer(env)
    cli_layer = parse_layer(overrides, "command line") if overrides else {}

    operator_path = config_file or env.get("APPLIANCE_CONFIG")
    if operator_path is None:
        data_dir = cli_layer.get("data_dir") or env_layer.get("data_dir") or merged.get("data_dir", "")
        candidate = Path(str(data_dir)).expanduser() / "appliance.toml"
        operator_path = str(candidate) if candidate.is_file() else None
    if operator_path:
        merged = _merge(merged, _read_toml(Path(operator_path).expanduser()))
        files.append(str(operator_path))
    merged = _merge(_merge(merged, env_layer), cli_layer)
    merged["profile"] = chosen
    settings = _structure(merged)
    settings = attrs.evolve(settings, data_dir=str(Path(settings.data_dir).expanduser()))
    return settings, ConfigSources(profile=chosen, files=tuple(files), env_keys=tuple(env_keys))
