"""Shell parsing for command-risk scoring (sans-IO): tree-sitter-bash CST to de-quoted simple commands.

Rules:
- tree-sitter (MIT) is imported lazily on first parse and one parser is kept per thread (parsers are not
  thread-safe). bashlex is GPL and is not used.
- Words are de-quoted the way bash would (quotes, backslashes, ``$'...'`` escapes); a word holding an expansion
  or a substitution is marked dynamic. Nested command and process substitutions are collected too.
- Parse errors are recorded, never raised: the scorer turns them into a review.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import attrs

from appliance.defender.verdicts import Reason

if TYPE_CHECKING:
    from tree_sitter import Node, Parser

__all__ = ["SimpleCommand", "parse_command"]


@attrs.frozen
class SimpleCommand:
    """One simple command after de-quoting: its argv, env assignments, redirects and where it sits."""

    argv: tuple[str, ...]
    assignments: tuple[tuple[str, str], ...] = ()
    redirects: tuple[tuple[str, str], ...] = ()
    pipeline: int = -1
    position: int = 0
    nested: bool = False
    name_dynamic: bool = False
    name_escaped: bool = False
    substitutions: tuple[str, ...] = ()
    process_inputs: tuple[str, ...] = ()
    raw: str = ""

    @property
    def program(self) -> str:
        return _basename(self.argv[0]) if self.argv else ""


@attrs.define
class _Walk:
    commands: list[SimpleCommand] = attrs.Factory(list)
    functions: dict[str, str] = attrs.Factory(dict)
    reasons: list[Reason] = attrs.Factory(list)
    hard: bool = False
    pipelines: int = 0
    error: bool = False

    def add(self, rule: str, category: str, weight: float, excerpt: str = "", *, hard: bool = False) -> None:
        self.reasons.append(Reason(rule, category, weight, excerpt[:80]))
        if hard:
            self.hard = True


_local = threading.local()


def _parser() -> Parser:
    parser: Parser | None = getattr(_local, "parser", None)
    if parser is None:
        import tree_sitter_bash
        from tree_sitter import Language
        from tree_sitter import Parser as _Parser

        parser = _Parser(Language(tree_sitter_bash.language()))
        _local.parser = parser
    return parser


def _basename(word: str) -> str:
    name = word.rsplit("/", 1)[-1].lower()
    if name.startswith(("python", "pypy")):
        return "pypy" if name.startswith("pypy") else "python"
    for prefix in ("perl", "ruby", "php", "lua", "node", "tclsh", "wish", "pwsh"):
        if name.startswith(prefix) and name[len(prefix) :].replace(".", "").isdigit():
            return prefix
    return name


def parse_command(command: str) -> tuple[list[SimpleCommand], bool]:
    """Parse ``command`` into simple commands (including nested ones). Returns ``(commands, had_errors)``."""
    walk = _Walk()
    _collect(command, walk, depth=0)
    return walk.commands, walk.error


def _collect(command: str, walk: _Walk, *, depth: int, nested: bool = False) -> None:
    source = command.encode("utf-8", "surrogatepass")
    tree = _parser().parse(source)
    root = tree.root_node
    if root.has_error:
        walk.error = True
    _visit(root, walk, depth=depth, nested=nested, pipeline=-1, position=0)


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", "replace")


def _visit(node: Node, walk: _Walk, *, depth: int, nested: bool, pipeline: int, position: int) -> None:
    kind = node.type
    if kind == "command":
        walk.commands.append(
            _simple(node, walk, depth=depth, nested=nested, pipeline=pipeline, position=position)
        )
        return
    if kind == "pipeline":
        walk.pipelines += 1
        pid = walk.pipelines
        for index, child in enumerate(node.named_children):
            _visit(child, walk, depth=depth, nested=nested, pipeline=pid, position=index)
        return
    if kind == "function_definition":
        name_node = node.child_by_field_name("name")
        body = node.child_by_field_name("body")
        if name_node is not None and body is not None:
            walk.functions[_text(name_node)] = _text(body)
    if kind == "redirected_statement":
        body = node.child_by_field_name("body")
        extra = [_redirect(child) for child in node.named_children if child is not body]
        before = len(walk.commands)
        if body is not None:
            _visit(body, walk, depth=depth, nested=nested, pipeline=pipeline, position=position)
        redirects = tuple(r for r in extra if r is not None)
        if redirects:
            if len(walk.commands) > before:
                last = walk.commands[-1]
                walk.commands[-1] = attrs.evolve(last, redirects=last.redirects + redirects)
            else:
                walk.commands.append(
                    SimpleCommand(argv=(), redirects=redirects, pipeline=pipeline, nested=nested)
                )
        return
    if kind in ("command_substitution", "process_substitution"):
        for child in node.named_children:
            _visit(child, walk, depth=depth, nested=True, pipeline=-1, position=0)
        return
    if kind == "ERROR":
        walk.error = True
    for child in node.named_children:
        _visit(child, walk, depth=depth, nested=nested, pipeline=pipeline, position=position)


def _redirect(node: Node) -> tuple[str, str] | None:
    if node.type == "file_redirect":
        op = ""
        target = ""
        for child in node.children:
            if not child.is_named:
                op = _text(child)
            elif child.type != "file_descriptor" and not target:
                target = _word(child)[0]
        return (op, target)
    if node.type in ("heredoc_redirect", "herestring_redirect"):
        for child in node.named_children:
            if child.type == "file_redirect":
                return _redirect(child)
    return None


def _word(node: Node) -> tuple[str, bool, bool]:
    """De-quote a word node. Returns (text, dynamic, escaped): dynamic when it holds an expansion or a
    substitution, escaped when quoting or backslashes were used inside it."""
    kind = node.type
    if kind == "word":
        raw = _text(node)
        if "\\" in raw:
            return re.sub(r"\\(.)", r"\1", raw), False, True
        return raw, False, False
    if kind == "raw_string":
        return _text(node)[1:-1], False, True
    if kind == "ansi_c_string":
        return _ansi_c(_text(node)[2:-1]), False, True
    if kind == "number":
        return _text(node), False, False
    if kind == "string":
        parts: list[str] = []
        dynamic = False
        for child in node.named_children:
            if child.type == "string_content":
                parts.append(_text(child))
            else:
                text, dyn, _ = _word(child)
                parts.append(text)
                dynamic = (
                    dynamic or dyn or child.type in ("simple_expansion", "expansion", "command_substitution")
                )
        return "".join(parts), dynamic, True
    if kind == "concatenation":
        parts = []
        dynamic = escaped = False
        for child in node.named_children:
            text, dyn, esc = _word(child)
            parts.append(text)
            dynamic = dynamic or dyn
            escaped = escaped or esc
        return "".join(parts), dynamic, escaped
    if kind in (
        "simple_expansion",
        "expansion",
        "command_substitution",
        "process_substitution",
        "arithmetic_expansion",
    ):
        return _text(node), True, False
    return _text(node), False, False


_ANSI_C = re.compile(r"\\(x[0-9a-fA-F]{1,2}|u[0-9a-fA-F]{1,4}|U[0-9a-fA-F]{1,8}|[0-7]{1,3}|c.|.)")
_ANSI_SIMPLE = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "e": "\x1b",
    "E": "\x1b",
    "f": "\f",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}


def _ansi_c_escape(match: re.Match[str]) -> str:
    code = match.group(1)
    head = code[0]
    if head in "xuU" and len(code) > 1:
        return chr(min(int(code[1:], 16), 0x10FFFF))
    if head.isdigit():
        return chr(int(code, 8))
    if head == "c" and len(code) == 2:
        return chr(ord(code[1]) & 0x1F)
    return _ANSI_SIMPLE.get(code, "\\" + code)


def _ansi_c(body: str) -> str:
    """Decode bash ``$'...'`` escapes (hex, octal, unicode, control) the way bash does."""
    return _ANSI_C.sub(_ansi_c_escape, body)


def _simple(
    node: Node, walk: _Walk, *, depth: int, nested: bool, pipeline: int, position: int
) -> SimpleCommand:
    argv: list[str] = []
    assignments: list[tuple[str, str]] = []
    redirects: list[tuple[str, str]] = []
    substitutions: list[str] = []
    process_inputs: list[str] = []
    name_dynamic = name_escaped = False
    for child in node.named_children:
        kind = child.type
        if kind == "variable_assignment":
            name = child.child_by_field_name("name")
            value = child.child_by_field_name("value")
            assignments.append((_text(name) if name else "", _word(value)[0] if value else ""))
        elif kind == "command_name":
            inner = child.named_children[0] if child.named_children else child
            text, dynamic, escaped = _word(inner)
            name_dynamic, name_escaped = dynamic, escaped
            argv.append(text)
        elif kind in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
            redirect = _redirect(child)
            if redirect is not None:
                redirects.append(redirect)
        else:
            text, _dyn, _esc = _word(child)
            argv.append(text)
        for sub in _substitutions(child):
            inner_text = _text(sub)
            if sub.type == "process_substitution":
                process_inputs.append(inner_text)
            substitutions.append(inner_text)
            for grandchild in sub.named_children:
                _visit(grandchild, walk, depth=depth, nested=True, pipeline=-1, position=0)
    return SimpleCommand(
        argv=tuple(argv),
        assignments=tuple(assignments),
        redirects=tuple(redirects),
        pipeline=pipeline,
        position=position,
        nested=nested,
        name_dynamic=name_dynamic,
        name_escaped=name_escaped,
        substitutions=tuple(substitutions),
        process_inputs=tuple(process_inputs),
        raw=_text(node),
    )


def _substitutions(node: Node) -> Iterator[Node]:
    if node.type in ("command_substitution", "process_substitution"):
        yield node
        return
    for child in node.named_children:
        yield from _substitutions(child)
