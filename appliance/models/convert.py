"""Wire converters: strict readers of request params (sans-IO).

Rules:
- a handler builds one :class:`Params` per request with the names it accepts; unknown names, wrong JSON
  types and out-of-range values raise :class:`~appliance.errors.ValidationFailed` with OpenClaw's AJV-style
  message ``invalid <method> params: at /<field>: <why>`` and ``details.errors`` (plus ``details.unknown``);
- booleans are never integers; integers stay within JavaScript's safe range (and so within SQLite's);
- readers return plain Python values; models are built by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from appliance.errors import ValidationFailed

__all__ = ["MAX_SAFE_INTEGER", "Params"]

MAX_SAFE_INTEGER = 2**53 - 1

_MISSING = object()


class Params:
    """Strict reader of one request's params; collects OpenClaw-style messages into ValidationFailed."""

    def __init__(self, method: str, raw: Any, allowed: Iterable[str]) -> None:
        self.method = method
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise self.fail("", "must be object")
        self.raw: Mapping[str, Any] = raw
        unknown = sorted(k for k in raw if k not in set(allowed))
        if unknown:
            raise ValidationFailed(
                f"invalid {method} params: at root: unexpected property '{unknown[0]}'",
                details={
                    "errors": [{"path": "", "message": f"unexpected property '{k}'"} for k in unknown],
                    "unknown": unknown,
                },
            )

    def fail(self, field: str, why: str, *, nullable: bool = False, union: bool = False) -> ValidationFailed:
        """The error for ``field`` (``""`` = the params object itself); the caller raises it.

        ``nullable``/``union`` add the extra lines AJV prints for ``anyOf [X, null]`` / ``anyOf [consts]``
        schemas, as OpenClaw's gateway shows them.
        """
        where = f"at /{field}: " if field else ""
        parts = [f"{where}{why}"]
        errors = [{"path": f"/{field}" if field else "", "message": why}]
        if nullable:
            parts.append(f"at /{field}: must be null")
            errors.append({"path": f"/{field}", "message": "must be null"})
        if nullable or union:
            parts.append(f"at /{field}: must match a schema in anyOf")
            errors.append({"path": f"/{field}", "message": "must match a schema in anyOf"})
        return ValidationFailed(
            f"invalid {self.method} params: {'; '.join(parts)}", details={"errors": errors}
        )

    def has(self, name: str) -> bool:
        return name in self.raw

    def _required(self, name: str) -> ValidationFailed:
        return self.fail("", f"must have required property '{name}'")

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        nullable: bool = False,
        min_length: int = 0,
        max_length: int | None = None,
    ) -> str | None:
        """A string (or None when absent, or null and ``nullable``); lengths are checked untrimmed."""
        value = self.raw.get(name, _MISSING)
        if value is _MISSING:
            if required:
                raise self._required(name)
            return None
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise self.fail(name, "must be string", nullable=nullable)
        if len(value) < min_length:
            raise self.fail(name, f"must not have fewer than {min_length} characters", nullable=nullable)
        if max_length is not None and len(value) > max_length:
            raise self.fail(name, f"must not have more than {max_length} characters", nullable=nullable)
        return value

    def non_empty(self, name: str, *, required: bool = False, nullable: bool = False) -> str | None:
        """OpenClaw's ``NonEmptyString``: at least one character (whitespace counts, as in AJV)."""
        return self.string(name, required=required, nullable=nullable, min_length=1)

    def integer(
        self,
        name: str,
        *,
        default: int | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
        nullable: bool = False,
    ) -> int | None:
        value = self.raw.get(name, _MISSING)
        if value is _MISSING or (value is None and nullable):
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, "must be integer", nullable=nullable)
        if minimum is not None and value < minimum:
            raise self.fail(name, f"must be >= {minimum}", nullable=nullable)
        # JSON numbers beyond JS's safe range cannot be exact, and would overflow SQLite's INTEGER
        high = MAX_SAFE_INTEGER if maximum is None else maximum
        if value > high:
            raise self.fail(name, f"must be <= {high}", nullable=nullable)
        if value < -MAX_SAFE_INTEGER:
            raise self.fail(name, f"must be >= {-MAX_SAFE_INTEGER}", nullable=nullable)
        return value

    def boolean(self, name: str, *, default: bool = False) -> bool:
        value = self.raw.get(name, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise self.fail(name, "must be boolean")
        return value

    def optional_boolean(self, name: str) -> bool | None:
        """``boolean | null`` (absent and null both give None)."""
        value = self.raw.get(name)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self.fail(name, "must be boolean", nullable=True)
        return value

    def string_list(
        self, name: str, *, required: bool = False, min_items: int = 0, max_items: int | None = None
    ) -> list[str]:
        value = self.raw.get(name, _MISSING)
        if value is _MISSING:
            if required:
                raise self._required(name)
            return []
        if not isinstance(value, list):
            raise self.fail(name, "must be array")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.fail(f"{name}/{i}", "must be string")
        if len(value) < min_items:
            raise self.fail(name, f"must not have fewer than {min_items} items")
        if max_items is not None and len(value) > max_items:
            raise self.fail(name, f"must not have more than {max_items} items")
        return list(value)

    def choice(
        self, name: str, choices: tuple[str, ...], *, default: str | None = None, nullable: bool = False
    ) -> str | None:
        """One of ``choices`` exactly (an ``anyOf`` of string constants, optionally or null)."""
        value = self.raw.get(name, _MISSING)
        if value is _MISSING or (value is None and nullable):
            return default
        if value not in choices:
            raise self.fail(name, "must be equal to constant", nullable=nullable, union=True)
        return str(value)
