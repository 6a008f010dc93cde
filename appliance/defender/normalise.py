"""Text normalisation before prompt-injection scoring (sans-IO).

Attackers hide trigger phrases behind look-alike characters, invisible controls, odd spacing and simple
encodings. We fold all of that into one lower-case, single-spaced string so that the rules stay simple.

Rules:
- Pure functions of their input; no clocks, no I/O, bounded work (``max_chars`` caps everything).
- ASCII input takes a fast path: no NFKC, no homoglyph table.
- Scans that only look for non-ASCII characters, or for a few ASCII ones, run on the UTF-8 bytes (C-level
  ``translate``/``find``) or on the few non-ASCII characters alone: a regex scan of a wide (UCS-2/4) string is
  several times slower. Each such shortcut is either exact or a necessary condition checked before the real
  step, so the output stays byte-identical (``tests/defender/test_normalise_equivalence.py``).
- Encoded blobs (base64, hex, ``\\xNN`` runs, rot13 text) are decoded *in addition* to the text, never instead
  of it, and only when the result looks like readable text. Each decoding adds a flag.
"""

# ruff: noqa: RUF001 - the homoglyph table is made of look-alike characters on purpose
from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata

import attrs

__all__ = ["Normalised", "fold_homoglyphs", "normalise_text"]

# Zero-width characters, joiners, BOM, soft hyphen and the bidi embedding/override/isolate controls.
_INVISIBLE = dict.fromkeys(
    [
        0x00AD,
        0x034F,
        0x061C,
        0x115F,
        0x1160,
        0x17B4,
        0x17B5,
        0x180E,
        *range(0x200B, 0x2010),
        *range(0x202A, 0x202F),
        *range(0x2060, 0x2070),
        0x3164,
        0xFE0F,
        0xFEFF,
        0xFFA0,
    ]
)
_BIDI = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])
# The same set as a regex: a C-level scan instead of a Python loop over every character.
_BIDI_RE = re.compile("[" + "".join(chr(c) for c in sorted(_BIDI)) + "]")

# Common confusables that NFKC leaves alone: Cyrillic and Greek letters that look Latin.
_HOMOGLYPHS = str.maketrans(
    {
        "а": "a",
        "в": "b",
        "с": "c",
        "е": "e",
        "ё": "e",
        "һ": "h",
        "і": "i",
        "ї": "i",
        "ј": "j",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "ԛ": "q",
        "ѕ": "s",
        "т": "t",
        "у": "y",
        "ԝ": "w",
        "х": "x",
        "ү": "y",
        "α": "a",
        "β": "b",
        "ε": "e",
        "η": "n",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "ɑ": "a",
        "ɡ": "g",
        "ı": "i",
        "ℓ": "l",
    }
)
_CYR_GREEK = re.compile(r"[\u0370-\u03ff\u0400-\u052f]")
_LATIN = re.compile(r"[a-z]")
_MIXED_WORD = re.compile(r"\b(?=\w*[a-z])(?=\w*[\u0370-\u03ff\u0400-\u052f])\w+\b")
# Letters spaced out one by one ("i g n o r e") are joined back.
_SPACED = re.compile(r"(?:[a-z][ .*_-]){3,}[a-z](?![a-z])")
# Where a _SPACED match can start: one letter before this. Starts with the separator class (rarer than letters),
# so ``re`` skips ahead to candidates instead of trying every letter of a long text.
_SPACED_START = re.compile(r"[ .*_-](?<=[a-z].)[a-z][ .*_-][a-z][ .*_-][a-z]")
_SPACED_SEP = re.compile(r"[ .\-_*]")
_LEET_WORD = re.compile(r"[a-z]+[013457@$|][a-z0-9@$|]*|[013457@$|]+[a-z][a-z0-9@$|]*")
# A letter next to a leet digit/symbol. Written to start with the rare class (a letter before it is checked by
# a look-behind) so that ``re`` skips ahead to candidate characters instead of trying every position: the
# same texts match, at the digit instead of the letter, ~5x faster than ``[a-z][0-9...]|[0-9...][a-z]``.
_LEET_PAIR = re.compile(r"[013457@$|](?:(?<=[a-z].)|[a-z])")
_LEET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789@$|")
_SPACED_HINT = re.compile(r"[ .*_-][a-z][ .*_-][a-z][ .*_-][a-z]\b")
_INVISIBLE_RE = re.compile("[" + "".join(chr(c) for c in _INVISIBLE) + "]")
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "|": "l"}
)
_B64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"[0-9a-fA-F]{24,}")
# The characters _B64 and _HEX are made of.
_RUN_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
# Byte table: run characters to "a", every other byte to " ". In UTF-8 a non-ASCII character is made only of
# bytes >= 0x80, so a run of 16 "a" in the translated bytes is exactly a run of 16 _RUN_CHARS in the text.
_RUN_TABLE = bytes(0x61 if byte in _RUN_CHARS else 0x20 for byte in range(256))
_LONG_RUN = b"a" * 16
_TOKEN_SPLIT = re.compile(r"[\s\"'`()\[\]{}<>,;:]+")
# Byte tables for C-level prechecks on the UTF-8 form of a text. UTF-8 writes every non-ASCII character with
# bytes >= 0x80 only, so an ASCII byte in the encoding is always that ASCII character itself.
_ASCII_BYTES = bytes(range(128))
# _TOKEN_SPLIT's delimiters that are ASCII (whitespace and punctuation) to " ", every other byte to "a".
_DELIM_TABLE = bytes(
    0x20 if byte < 128 and (chr(byte).isspace() or chr(byte) in "\"'`()[]{}<>,;:") else 0x61
    for byte in range(256)
)
# _SPACED_HINT's separators to "s", a-z to "l", every other byte to "o".
_SPACED_TABLE = bytes(
    0x73 if byte in b" .*_-" else 0x6C if 0x61 <= byte <= 0x7A else 0x6F for byte in range(256)
)
_SPACE = re.compile(r"\s")
_LEET_RUN = re.compile(r"[a-z0-9@$|]*")
_XESC = re.compile(r"(?:\\x[0-9a-fA-F]{2}){6,}")
_ROT13_HINTS = frozenset(["gur", "naq", "lbh", "vtaber", "vafgehpgvbaf", "cebzcg", "lbhe", "nyy", "vf", "gb"])
_WORD = re.compile(r"[a-z]+")

_MAX_BLOBS = 8
_MAX_BLOB_CHARS = 4096


@attrs.frozen
class Normalised:
    """The folded text, decoded payloads found in it, and flags that say what was undone."""

    text: str
    decoded: tuple[str, ...] = ()
    flags: frozenset[str] = frozenset()

    @property
    def all_text(self) -> str:
        """The folded text followed by every decoded payload: what the rules scan."""
        if not self.decoded:
            return self.text
        return self.text + " \n " + " \n ".join(self.decoded)


def fold_homoglyphs(text: str) -> str:
    """Map Cyrillic/Greek look-alikes to Latin (used for command words too)."""
    return text.translate(_HOMOGLYPHS)


def normalise_text(text: str, *, max_chars: int = 8192) -> Normalised:
    """Fold ``text`` for matching: NFKC, invisible and bidi controls removed, homoglyphs folded, casefolded,
    leetspeak and spaced-out words undone, whitespace collapsed, and short encoded blobs decoded."""
    flags: set[str] = set()
    if len(text) > max_chars:
        # Keep head and tail: injections hide at either end of long documents.
        half = max_chars // 2
        text = text[:half] + "\n" + text[-half:]
        flags.add("truncated")
    raw = text
    raw_wide = ""
    if not text.isascii():
        # The invisible, bidi and Cyrillic/Greek characters are all non-ASCII: look for them among the few
        # non-ASCII characters instead of in the whole (wide, slow to scan) text.
        raw_wide = _wide_chars(text)
        stripped = text
        if _INVISIBLE_RE.search(raw_wide):
            stripped = _INVISIBLE_RE.sub("", text)
            flags.add("invisible_chars")
            if _BIDI_RE.search(raw_wide):
                flags.add("bidi_controls")
        text = unicodedata.normalize("NFKC", stripped)
        text, wide = _casefold(text)
        if _CYR_GREEK.search(wide) and _LATIN.search(text):
            text, mixed = _fold_mixed_words(text)
            if mixed:
                flags.add("mixed_script")
    else:
        text = text.lower()
    decoded = _decode_blobs(raw, flags, raw_wide)
    first_pair = _LEET_PAIR.search(text)
    if first_pair is not None:
        unleeted = _unleet_text(text, first_pair.start())
        if unleeted != text:
            flags.add("leetspeak")
            text = unleeted
    if _SPACED_TRIPLE in _encode(text).translate(_SPACED_TABLE) and _SPACED_HINT.search(text):
        joined = _join_spaced_all(text)
        if joined != text:
            flags.add("spaced_letters")
            text = joined
    if "_" in text or "\\" in text:
        text = text.replace("_", " ").replace("\\", "")
    text = _collapse_whitespace(text)
    rot = _maybe_rot13(text)
    if rot is not None:
        decoded.append(rot)
        flags.add("rot13")
    return Normalised(text=text, decoded=tuple(decoded), flags=frozenset(flags))


_SPACED_TRIPLE = b"slslsl"  # what every _SPACED_HINT match reads as in _SPACED_TABLE terms


def _encode(text: str) -> bytes:
    """UTF-8, keeping lone surrogates encodable (as bytes >= 0x80)."""
    return text.encode("utf-8", "surrogatepass")


def _wide_chars(text: str) -> str:
    """The non-ASCII characters of ``text`` in order: its UTF-8 form without the ASCII bytes, which leaves
    whole multi-byte sequences. A C-level filter, much faster than scanning a wide string with a regex."""
    return _encode(text).translate(None, _ASCII_BYTES).decode("utf-8", "surrogatepass")


def _casefold(text: str) -> tuple[str, str]:
    """``text.casefold()`` and the non-ASCII characters of the result.

    ``casefold`` maps one character at a time, with no context, and folds ASCII exactly as ``lower`` does. When
    no non-ASCII character changes under it (typographic quotes, dashes and emoji: the usual case), the ASCII
    bytes of the UTF-8 form are lowered instead, ~3x faster than ``casefold`` on a wide string."""
    if text.isascii():
        return text.lower(), ""
    data = _encode(text)
    wide = data.translate(None, _ASCII_BYTES).decode("utf-8", "surrogatepass")
    if wide.casefold() == wide:
        return data.lower().decode("utf-8", "surrogatepass"), wide
    folded = text.casefold()
    return folded, _wide_chars(folded)


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"  # exactly what ``\\w`` means in a str pattern


def _fold_mixed_words(text: str) -> tuple[str, bool]:
    """Fold homoglyphs in the words that mix Latin with Cyrillic/Greek; say whether there were any.

    The same as ``_MIXED_WORD.sub(fold, text)`` (tests compare them), but it starts from the few Cyrillic/Greek
    characters instead of trying two look-aheads at every word of a long text. As in the pattern, a word also
    counts when a Cyrillic/Greek non-word character (Greek punctuation) directly follows it."""
    parts: list[str] = []
    done = 0  # end of the last word looked at
    kept = 0  # end of the text already copied to ``parts``
    mixed = False
    size = len(text)
    for hit in _CYR_GREEK.finditer(text):
        pos = hit.start()
        if _is_word_char(text[pos]):
            if pos < done:
                continue  # inside the word looked at last
            start, end = pos, pos + 1
            while end < size and _is_word_char(text[end]):
                end += 1
        elif pos > done and _is_word_char(text[pos - 1]):
            start, end = pos - 1, pos  # the word just before a Cyrillic/Greek non-word character
        else:
            continue
        while start > 0 and _is_word_char(text[start - 1]):
            start -= 1
        done = end
        word = text[start:end]
        if _LATIN.search(word):
            mixed = True
            parts.append(text[kept:start])
            parts.append(fold_homoglyphs(word))
            kept = end
    if not mixed:
        return text, False
    parts.append(text[kept:])
    return "".join(parts), True


def _collapse_whitespace(text: str) -> str:
    """Single spaces inside lines, no blank lines, no spaces around line breaks.

    The same result as ``re.sub(r" ?\\n\\s*", "\\n", re.sub(r"[^\\S\\n]{2,}|[^\\S\\n ]", " ", text)).strip()``
    (tests compare them) but with C-level ``str.split`` instead of two regex passes over the whole text:
    ``str.split`` and ``\\s`` agree on what whitespace is."""
    if "\n" not in text:
        return _collapse_line(text)
    lines = [_collapse_line(line) for line in text.split("\n")]
    return "\n".join([line for line in lines if line])


def _collapse_line(line: str) -> str:
    """``" ".join(line.split())`` without building a list of every word of a long line.

    Every whitespace character except the ASCII space is non-printable (tests check all code points), so in a
    printable line only runs of spaces need collapsing: halving them with ``str.replace`` takes a few C-level
    passes (at most log2 of the longest run) instead of a split and a join."""
    if not line.isprintable():
        return " ".join(line.split())
    while "  " in line:
        line = line.replace("  ", " ")
    return line.strip(" ")


def _unleet_text(text: str, begin: int = 0) -> str:
    """Undo leetspeak only in the tokens around a letter/digit pair: most text has none, and a whole-text
    substitution is the slowest step of normalisation on long inputs. ``begin``: where the first pair is, when
    the caller has looked already (no pair starts before it)."""
    parts: list[str] = []
    last = 0
    backwards = ""  # ``text`` reversed, made on first need: runs to the left become C-level forward matches
    size = len(text)
    for pair in _LEET_PAIR.finditer(text, begin):
        start = pair.start()
        if start < last:
            continue
        if start > 0 and text[start - 1] in _LEET_CHARS:
            backwards = backwards or text[::-1]
            start = size - _LEET_RUN.match(backwards, size - start).end()  # type: ignore[union-attr] # ``*`` matches
        end = _LEET_RUN.match(text, pair.end()).end()  # type: ignore[union-attr] # ``*`` always matches
        word = text[start:end]
        if start > 0 and text[start - 1].isalnum():
            continue
        parts.append(text[last:start])
        parts.append(word.translate(_LEET) if sum(map(str.isalpha, word)) >= 2 else word)
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _unleet(match: re.Match[str]) -> str:
    word = match.group(0)
    start = match.start()
    if start and match.string[start - 1].isalnum():
        return word  # the tail of a longer token such as an id or a hash
    if sum(ch.isalpha() for ch in word) < 2:
        return word
    return word.translate(_LEET)


def _join_spaced_all(text: str) -> str:
    """``_SPACED.sub(_join_spaced, text)`` (tests compare them), trying _SPACED only where it can match.

    A _SPACED match at ``p`` reads letter, separator, letter, separator, letter, separator, letter, so
    _SPACED_START matches at ``p + 1``; trying every such ``p`` left to right, and resuming after each match as
    ``sub`` does, finds the same matches as ``sub``."""
    parts: list[str] = []
    last = 0  # end of the last match: text before it is in ``parts``
    cand = _SPACED_START.search(text, 1)
    while cand is not None:
        match = _SPACED.match(text, cand.start() - 1)
        if match is None:
            cand = _SPACED_START.search(text, cand.start() + 1)  # try the next start
            continue
        parts.append(text[last : match.start()])
        parts.append(_join_spaced(match))
        last = match.end()
        cand = _SPACED_START.search(text, last + 1)  # the next match starts at ``last`` or later
    parts.append(text[last:])
    return "".join(parts)


def _join_spaced(match: re.Match[str]) -> str:
    start = match.start()
    if start and match.string[start - 1].isalpha():
        return match.group(0)
    return _SPACED_SEP.sub("", match.group(0))


def _has_long_run(raw: str) -> bool:
    """Whether ``raw`` holds 16 _RUN_CHARS in a row: the same answer as ``re.search("[A-Za-z0-9+/_-]{16}", raw)``
    (tests compare them), but a C-level byte translate and substring search instead of a regex attempt at every
    position, ~5x faster on long prose. ``surrogatepass`` keeps lone surrogates encodable (as bytes >= 0x80)."""
    return _LONG_RUN in raw.encode("utf-8", "surrogatepass").translate(_RUN_TABLE)


def _blob_candidates(raw: str, raw_wide: str | None = None) -> list[str]:
    """The parts of ``raw`` between _TOKEN_SPLIT delimiters (whitespace and some punctuation) that could hold a
    base64 or hex blob, in order.

    Any base64 or hex match is a run of 16+ characters of _RUN_CHARS, which are no delimiters, so only the parts
    holding such a run can yield one. They are found in the UTF-8 bytes: a C-level find of the runs, and of the
    delimiters around each, instead of splitting every word of the text. That needs every delimiter to be ASCII;
    a text with non-ASCII whitespace (``raw_wide`` holds its non-ASCII characters) takes the word split."""
    if raw_wide is None:
        raw_wide = "" if raw.isascii() else _wide_chars(raw)
    data = _encode(raw)
    runs = data.translate(_RUN_TABLE)
    pos = runs.find(_LONG_RUN)
    if pos < 0:
        return []
    if raw_wide and _SPACE.search(raw_wide):
        return [
            part
            for tok in raw.split()
            if len(tok) >= 16
            for part in _TOKEN_SPLIT.split(tok)
            if len(part) >= 16
        ]
    delims = data.translate(_DELIM_TABLE)
    out: list[str] = []
    while pos >= 0:
        start = delims.rfind(b" ", 0, pos) + 1
        end = delims.find(b" ", pos)
        if end < 0:
            end = len(data)
        out.append(data[start:end].decode("utf-8", "surrogatepass"))
        pos = runs.find(_LONG_RUN, end)
    return out


def _decode_blobs(raw: str, flags: set[str], raw_wide: str | None = None) -> list[str]:
    """``raw_wide``: the non-ASCII characters of ``raw`` when the caller has them (worked out otherwise)."""
    out: list[str] = []
    if len(raw) < 16:
        return out
    candidates = _blob_candidates(raw, raw_wide)
    for token in candidates:
        match = _B64.search(token)
        if match is None:
            continue
        if len(out) >= _MAX_BLOBS:
            break
        blob = match.group(0)[:_MAX_BLOB_CHARS]
        if blob.isalpha() or blob.isdigit() or len(set(blob)) < 8:
            continue  # a long plain word or number, not base64
        text = _readable(_b64decode(blob))
        if text is not None:
            out.append(text.lower())
            flags.add("base64")
    for token in candidates:
        match = _HEX.search(token)
        if match is None:
            continue
        if len(out) >= _MAX_BLOBS:
            break
        digits = match.group(0)[:_MAX_BLOB_CHARS]
        try:
            text = _readable(bytes.fromhex(digits[: len(digits) // 2 * 2]))
        except ValueError:
            continue
        if text is not None:
            out.append(text.lower())
            flags.add("hex")
    for match in _XESC.finditer(raw) if "\\x" in raw else ():
        if len(out) >= _MAX_BLOBS:
            break
        digits = match.group(0).replace("\\x", "")[:_MAX_BLOB_CHARS]
        text = _readable(bytes.fromhex(digits))
        if text is not None:
            out.append(text.lower())
            flags.add("hex_escapes")
    return out


def _b64decode(blob: str) -> bytes:
    padded = blob + "=" * (-len(blob) % 4)
    try:
        if "-" in blob or "_" in blob:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _readable(data: bytes) -> str | None:
    """Decoded bytes count only when they are mostly printable text with some spaces (a sentence)."""
    if len(data) < 8:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in text)
    if printable < 0.95 * len(text) or " " not in text:
        return None
    letters = sum(ch.isalpha() for ch in text)
    return text if letters >= 0.5 * len(text) else None


def _maybe_rot13(text: str) -> str | None:
    """Decode rot13 only when the text is full of rot13'd English function words (cheap and rare)."""
    if "gur" not in text and "lbh" not in text and "vtaber" not in text:
        return None
    head = text[:4096]
    # Each hint word in ``words`` is a separate occurrence of it in ``head``, so substring counts bound the hits
    # from above: below 3, skip the word split.
    if sum(head.count(hint) for hint in _ROT13_HINTS) < 3:
        return None
    words = _WORD.findall(head)
    hits = sum(1 for w in words if w in _ROT13_HINTS)
    if hits < 3 or hits < 0.08 * len(words):
        return None
    return codecs.decode(text, "rot13")
