"""The enabled plugins of a running appliance: find and check them, run them supervised, report them.

Rules:
- :func:`load_definitions` reads ``<plugins.dir>/<name>/plugin.toml`` for every name in
  ``plugins.enabled`` and checks that the command can run; anything wrong raises
  :class:`~appliance.plugins.manifest.PluginManifestError` (ConfigError, exit 78) naming the file and
  key, so ``serve`` refuses to start on a broken install instead of limping;
- each plugin runs under a :class:`~appliance.plugins.host.PluginSupervisor` (restart with capped,
  jittered backoff between ``plugins.restart_base_s`` and ``plugins.restart_cap_s``); a plugin that can
  never work (refused handshake, protocol error before its first start) is reported in
  ``health.plugins.errors`` and left stopped: it never takes the gateway down;
- the plugin's environment is a minimal base plus the names its manifest lists (see
  :func:`plugin_environment`); its working directory is its plugin dir; ``HOME`` and
  ``APPLIANCE_PLUGIN_STATE_DIR`` point at ``<data_dir>/plugin-state/<name>`` (0700) unless the manifest
  passes ``HOME`` through;
- :func:`plugins_health` / :func:`plugins_status` give the ``health`` and ``status`` views of the fleet
  registered for a gateway state; :func:`doctor_rows` gives ``appliance doctor`` one row per plugin.
"""

from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from appliance.errors import ApplianceError
from appliance.log import get_logger
from appliance.plugins.host import PluginSpec, PluginSupervisor, SupervisorState
from appliance.plugins.manifest import (
    MANIFEST_FILE,
    PluginDefinition,
    PluginManifestError,
    check_plugin_name,
    parse_manifest,
)

if TYPE_CHECKING:
    from appliance.config.settings import Settings

__all__ = [
    "BASE_ENV",
    "DoctorRow",
    "PluginFleet",
    "doctor_rows",
    "find_executable",
    "fleet_for",
    "load_definition",
    "load_definitions",
    "plugin_environment",
    "plugins_dir",
    "plugins_health",
    "plugins_status",
    "register_fleet",
]

log = get_logger("appliance.plugins")

#: passed to every plugin when set in the appliance's environment (nothing else is, unless listed)
BASE_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def plugins_dir(settings: Settings) -> Path:
    """``plugins.dir``, or ``<data_dir>/plugins`` when empty."""
    raw = settings.plugins.dir or str(Path(settings.data_dir).expanduser() / "plugins")
    return Path(raw).expanduser().absolute()


def state_dir(settings: Settings, name: str) -> Path:
    return Path(settings.data_dir).expanduser().absolute() / "plugin-state" / name


def find_executable(definition: PluginDefinition, environ: Mapping[str, str]) -> str:
    """The program ``command`` runs. Raises PluginManifestError when it is missing or not executable."""
    word = definition.argv[0]
    if "/" not in word:
        found = shutil.which(word, path=environ.get("PATH", DEFAULT_PATH))
        if found is None:
            raise PluginManifestError(
                f"{word!r} is not found on PATH", source=definition.source, key="command"
            )
        return found
    path = Path(word)
    if not path.is_file():
        raise PluginManifestError(f"{word} does not exist", source=definition.source, key="command")
    if not os.access(path, os.X_OK):
        raise PluginManifestError(
            f"{word} is not executable (chmod +x it)", source=definition.source, key="command"
        )
    return word


def load_definition(root: Path, name: str) -> PluginDefinition:
    """Read and parse ``<root>/<name>/plugin.toml``. Raises PluginManifestError."""
    check_plugin_name(name)
    directory = root / name
    manifest = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise PluginManifestError(
            f"plugin {name!r} is enabled but {directory} does not exist "
            f"(install it there with a {MANIFEST_FILE}, or remove it from plugins.enabled)",
            key="plugins.enabled",
        )
    try:
        text = manifest.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PluginManifestError(
            f"plugin {name!r} has no {MANIFEST_FILE} in {directory}", key="plugins.enabled"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PluginManifestError(f"cannot read: {exc}", source=str(manifest)) from None
    return parse_manifest(text, name=name, directory=str(directory), source=str(manifest))


def load_definitions(settings: Settings, environ: Mapping[str, str] | None = None) -> list[PluginDefinition]:
    """Every enabled plugin, parsed and checked (command executable). Raises PluginManifestError."""
    env = os.environ if environ is None else environ
    root = plugins_dir(settings)
    seen: set[str] = set()
    definitions = []
    for name in settings.plugins.enabled:
        if name in seen:
            raise PluginManifestError(f"plugin {name!r} is listed twice", key="plugins.enabled")
        seen.add(name)
        definition = load_definition(root, name)
        find_executable(definition, env)
        definitions.append(definition)
    return definitions


def plugin_environment(
    definition: PluginDefinition, environ: Mapping[str, str], *, state: Path
) -> dict[str, str]:
    """The plugin's whole environment: :data:`BASE_ENV`, the manifest's ``env`` names that are set,
    and where it lives (``APPLIANCE_PLUGIN_NAME``, ``_DIR``, ``_STATE_DIR``)."""
    env = {key: environ[key] for key in BASE_ENV if key in environ}
    env.setdefault("PATH", DEFAULT_PATH)
    env["HOME"] = str(state)
    env.update({key: environ[key] for key in definition.env if key in environ})
    env.update(
        {
            "APPLIANCE_PLUGIN_NAME": definition.name,
            "APPLIANCE_PLUGIN_DIR": definition.directory,
            "APPLIANCE_PLUGIN_STATE_DIR": str(state),
        }
    )
    return env


# -- running ------------------------------------------------------------------------------------------


class PluginFleet:
    """The supervised plugins of one ``serve``; :meth:`run_plugin` is each one's task."""

    def __init__(
        self,
        settings: Settings,
        definitions: list[PluginDefinition],
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        cfg = settings.plugins
        self.definitions = {d.name: d for d in definitions}
        self.supervisors: dict[str, PluginSupervisor] = {}
        self.errors: dict[str, str] = {}
        for d in definitions:
            state = state_dir(settings, d.name)
            spec = PluginSpec(
                d.name,
                d.argv,
                granted=d.capabilities,
                call_timeout_s=cfg.call_timeout_s,
                env=plugin_environment(d, env, state=state),
                cwd=d.directory,
            )
            self.supervisors[d.name] = PluginSupervisor(
                spec, restart_base_s=cfg.restart_base_s, restart_cap_s=cfg.restart_cap_s
            )
        self._state_dirs = {d.name: state_dir(settings, d.name) for d in definitions}

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> PluginFleet:
        """Load and check every enabled plugin. Raises PluginManifestError (exit 78)."""
        return cls(settings, load_definitions(settings, environ), environ=environ)

    async def run_plugin(self, name: str) -> None:
        """Keep plugin ``name`` running until cancelled. Returns (never raises) when it cannot work:
        the failure is in ``health.plugins.errors``."""
        supervisor = self.supervisors[name]
        try:
            self._state_dirs[name].mkdir(mode=0o700, parents=True, exist_ok=True)
            await supervisor.run()
        except (ApplianceError, OSError) as exc:
            message = exc.message if isinstance(exc, ApplianceError) else str(exc)
            self.fail(name, message)

    def fail(self, name: str, message: str) -> None:
        """Record that ``name`` cannot work (it stays in ``errors`` until the next start)."""
        self.errors[name] = message
        log.error("plugin_disabled", plugin=name, error=message)

    def sidecars(self) -> list[dict[str, Any]]:
        """One entry per plugin, in the order they are enabled."""
        out = []
        for name, sup in self.supervisors.items():
            d = self.definitions[name]
            manifest = sup.manifest
            out.append(
                {
                    "id": name,
                    "kind": str(d.kind),
                    "description": d.description,
                    "state": str(SupervisorState.FAILED if name in self.errors else sup.state),
                    "pid": sup.pid,
                    "restarts": sup.restarts,
                    "version": manifest.version if manifest is not None else None,
                    "lastError": self.errors.get(name, sup.last_error),
                }
            )
        return out

    def health(self) -> dict[str, Any]:
        """OpenClaw's ``health.plugins`` shape: ids in ``loaded``; ``{id, error}`` in ``errors`` (will not
        run); ``{id, reason, error, restarts}`` in ``unavailable`` (starting or being restarted)."""
        loaded: list[str] = []
        errors: list[dict[str, Any]] = []
        unavailable: list[dict[str, Any]] = []
        for car in self.sidecars():
            if car["state"] == SupervisorState.FAILED:
                errors.append({"id": car["id"], "error": car["lastError"]})
            elif car["state"] == SupervisorState.RUNNING:
                loaded.append(car["id"])
            else:
                unavailable.append(
                    {
                        "id": car["id"],
                        "reason": car["state"],
                        "error": car["lastError"],
                        "restarts": car["restarts"],
                    }
                )
        return {"loaded": loaded, "errors": errors, "unavailable": unavailable}


@attrs.define
class _Registration:
    state: weakref.ref[Any]
    fleet: PluginFleet


_FLEETS: dict[int, _Registration] = {}


def register_fleet(state: Any, fleet: PluginFleet) -> None:
    """Make ``fleet`` the one ``health``/``status`` report for gateway ``state``."""
    _FLEETS[id(state)] = _Registration(weakref.ref(state), fleet)


def fleet_for(state: Any) -> PluginFleet | None:
    reg = _FLEETS.get(id(state))
    if reg is None or reg.state() is not state:
        return None
    return reg.fleet


def _enabled(state: Any) -> tuple[str, ...]:
    settings = getattr(state, "settings", None)
    plugins = getattr(settings, "plugins", None)
    return tuple(getattr(plugins, "enabled", ()))


def plugins_health(state: Any) -> dict[str, Any]:
    """``health.plugins`` (``{loaded[], errors[], unavailable[]}``, OpenClaw's keys only) for ``state``'s
    fleet; enabled plugins with no fleet (not started yet) are ``unavailable``."""
    fleet = fleet_for(state)
    if fleet is not None:
        return fleet.health()
    pending = [{"id": n, "reason": "not started", "error": None, "restarts": 0} for n in _enabled(state)]
    return {"loaded": [], "errors": [], "unavailable": pending}


def plugins_status(state: Any) -> dict[str, Any]:
    """For ``status``: ``degradedPlugins`` (ids of plugins not running, OpenClaw's key) and ``plugins``
    (an appliance extension: per plugin ``{id, kind, description, state, pid, restarts, version,
    lastError}``)."""
    health = plugins_health(state)
    degraded = [e["id"] for e in health["errors"]] + [e["id"] for e in health["unavailable"]]
    fleet = fleet_for(state)
    return {"degradedPlugins": degraded, "plugins": fleet.sidecars() if fleet is not None else []}


# -- doctor -------------------------------------------------------------------------------------------


@attrs.frozen
class DoctorRow:
    """One ``appliance doctor`` row: status is ``ok``, ``warn``, ``fail`` or ``skip``."""

    name: str
    status: str
    detail: str


def doctor_rows(settings: Settings, environ: Mapping[str, str] | None = None) -> list[DoctorRow]:
    """One row per enabled plugin (manifest valid, command executable, listed env set); one ``skip``
    row when none is enabled. Never raises."""
    env = os.environ if environ is None else environ
    if not settings.plugins.enabled:
        return [DoctorRow("plugins", "skip", "none enabled (plugins.enabled = [])")]
    root = plugins_dir(settings)
    rows = []
    for name in settings.plugins.enabled:
        label = f"plugin:{name}"
        try:
            definition = load_definition(root, name)
            program = find_executable(definition, env)
        except ApplianceError as exc:
            rows.append(DoctorRow(label, "fail", exc.one_line()))
            continue
        unset = [key for key in definition.env if key not in env]
        detail = f"{definition.kind} plugin, runs {program}"
        if unset:
            rows.append(
                DoctorRow(label, "warn", f"{detail}; not set in this environment: {', '.join(unset)}")
            )
        else:
            rows.append(DoctorRow(label, "ok", detail))
    return rows
