"""The method table: wire method name -> handler, required scope and params validation.

Handlers are ``async def handler(ctx: MethodContext, params: dict[str, Any]) -> Any``; they return the
JSON-safe ``payload`` of an ``ok:true`` response or raise an :class:`~appliance.errors.ApplianceError`,
which the server turns into an error frame. Any other exception is a bug: the server logs it with its
traceback and answers UNAVAILABLE with a generic message.

Method modules register with the :func:`method` decorator into a :class:`MethodTable`; the table used by
the server is built explicitly in :func:`build_method_table` from static imports (PyInstaller must see
every module; no discovery from strings).

Params: the server hands every handler a dict (a missing ``params`` is ``{}``); handlers validate the
fields they read and raise :class:`~appliance.errors.ValidationFailed` (INVALID_REQUEST with details),
:func:`check_params` does that for flat param objects.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs

from appliance.errors import MissingScope, UnknownMethod, ValidationFailed

if TYPE_CHECKING:
    from appliance.gateway.state import GatewayState

__all__ = [
    "AckFn",
    "EmitEvent",
    "Handler",
    "MethodContext",
    "MethodSpec",
    "MethodTable",
    "Scope",
    "check_params",
]


class Scope(enum.StrEnum):
    """Operator scopes as OpenClaw names them."""

    ADMIN = "operator.admin"
    READ = "operator.read"
    WRITE = "operator.write"
    APPROVALS = "operator.approvals"
    PAIRING = "operator.pairing"


EmitEvent = Callable[[str, Any], Awaitable[None]]
#: sends an early ``ok:true`` response with the request's id (``agent`` answers "accepted" first); the
#: handler's return value is still sent as the final response with the same id
AckFn = Callable[[Any], Awaitable[None]]


@attrs.frozen
class MethodContext:
    """What a handler may use: shared gateway state, who is calling, and a way to push events."""

    state: GatewayState
    conn_id: str
    req_id: str
    scopes: frozenset[str]
    #: push an event to this connection only (numbered with its ``seq``); broadcasts go through
    #: ``state.broadcast``
    emit: EmitEvent
    ack: AckFn | None = None

    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes


Handler = Callable[[MethodContext, dict[str, Any]], Awaitable[Any]]


@attrs.frozen
class MethodSpec:
    name: str
    handler: Handler
    scope: Scope = Scope.READ
    advertised: bool = True


def scope_satisfied(granted: frozenset[str], required: Scope) -> bool:
    """admin implies everything; write implies read (as OpenClaw's operator scopes do)."""
    if Scope.ADMIN in granted or required in granted:
        return True
    return required is Scope.READ and Scope.WRITE in granted


@attrs.define
class MethodTable:
    methods: dict[str, MethodSpec] = attrs.Factory(dict)

    def method(
        self, name: str, *, scope: Scope = Scope.READ, advertised: bool = True
    ) -> Callable[[Handler], Handler]:
        """Decorator: register ``handler`` under the wire name ``name``."""

        def register(handler: Handler) -> Handler:
            if name in self.methods:
                raise ValueError(f"method registered twice: {name}")
            self.methods[name] = MethodSpec(name, handler, scope, advertised)
            return handler

        return register

    def merge(self, other: MethodTable) -> None:
        for name, spec in other.methods.items():
            if name in self.methods:
                raise ValueError(f"method registered twice: {name}")
            self.methods[name] = spec

    def merge_deferred(self, scopes: dict[str, Scope], load: Callable[[], MethodTable]) -> None:
        """Register ``scopes``' methods now and import their module on the first call.

        For rarely used, heavy method modules (``cron.*`` pulls in the scheduler): an idle gateway keeps
        them out of memory. ``load`` must contain a static import so PyInstaller bundles the module; a
        test checks that the declared scopes match the real table's.
        """

        def deferred(name: str) -> Handler:
            async def handler(ctx: MethodContext, params: dict[str, Any]) -> Any:
                return await load().methods[name].handler(ctx, params)

            return handler

        for name, scope in scopes.items():
            if name in self.methods:
                raise ValueError(f"method registered twice: {name}")
            self.methods[name] = MethodSpec(name, deferred(name), scope)

    def advertised(self) -> list[str]:
        return sorted(name for name, spec in self.methods.items() if spec.advertised)

    def resolve(self, name: str, granted: frozenset[str]) -> MethodSpec:
        """Find the handler for ``name`` or raise UnknownMethod / MissingScope."""
        spec = self.methods.get(name)
        if spec is None:
            raise UnknownMethod(name)
        if not scope_satisfied(granted, spec.scope):
            raise MissingScope(str(spec.scope), [str(spec.scope)])
        return spec


_TYPE_NAMES: dict[type, str] = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    dict: "object",
    list: "array",
}


def check_params(
    method: str,
    params: dict[str, Any],
    fields: dict[str, type | tuple[type, ...]],
    *,
    required: tuple[str, ...] = (),
    allow_extra: bool = False,
) -> None:
    """Check a flat params object: ``fields`` maps each allowed key to its type(s); ``None`` values count
    as absent. Raises ValidationFailed ``invalid <method> params: at /key: must be string`` with
    ``details.errors`` listing every problem (``bool`` is not an ``int`` here, as in JSON Schema)."""
    problems = [
        {"path": "", "message": f"must have required property '{key}'"}
        for key in required
        if params.get(key) is None
    ]
    for key, value in params.items():
        expected = fields.get(key)
        if expected is None:
            if not allow_extra:
                problems.append({"path": "", "message": f"must NOT have additional properties ('{key}')"})
            continue
        if value is None:
            continue
        types = expected if isinstance(expected, tuple) else (expected,)
        if isinstance(value, bool) and bool not in types:
            ok = False
        elif float in types and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        else:
            ok = isinstance(value, types)
        if not ok:
            names = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            problems.append({"path": f"/{key}", "message": f"must be {names}"})
    if problems:
        text = "; ".join(f"at {p['path'] or 'root'}: {p['message']}" for p in problems)
        raise ValidationFailed(
            f"invalid {method} params: {text}", details={"code": "INVALID_PARAMS", "errors": problems}
        )
