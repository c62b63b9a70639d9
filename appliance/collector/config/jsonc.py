"""JSON with ``//`` and ``/* */`` comments (xenoeye's config format), with precise errors.

Bounded: a document longer than `MAX_CONFIG_CHARS` or nesting ``[``/``{`` deeper than
`MAX_CONFIG_DEPTH` is refused with a `ConfigError` at the offending position (Python's own
JSON decoder would otherwise end in a RecursionError).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError

__all__ = ["ConfigError", "loads", "load", "MAX_CONFIG_CHARS", "MAX_CONFIG_DEPTH"]

#: the largest config file accepted (characters; a devices.conf of 50,000 exporters fits)
MAX_CONFIG_CHARS = 16 * 1024 * 1024
#: how deeply arrays and objects may nest (xenoeye's own files nest 4 deep)
MAX_CONFIG_DEPTH = 64


def _line_column(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


def _strip_comments(text: str, path: str = "<string>") -> str:
    """Replace comments by spaces (keeping newlines) so positions stay right.

    Raises:
        ConfigError: ``[``/``{`` nested deeper than `MAX_CONFIG_DEPTH`.
    """
    out = []
    i, n = 0, len(text)
    in_str = False
    depth = 0
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_str = False
            i += 1
        elif c == '"':
            in_str = True
            out.append(c)
            i += 1
        elif c in "[{":
            depth += 1
            if depth > MAX_CONFIG_DEPTH:
                line, col = _line_column(text, i)
                raise ConfigError(path, line, col, f"arrays and objects nest more than {MAX_CONFIG_DEPTH} deep here")
            out.append(c)
            i += 1
        elif c in "]}":
            depth = max(0, depth - 1)
            out.append(c)
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def loads(text: str, path: str = "<string>") -> Any:
    """Parse JSON with comments.

    Raises:
        ConfigError: with the line and column of the syntax error.
    """
    if len(text) > MAX_CONFIG_CHARS:
        raise ConfigError(path, 1, 1, f"the file is {len(text)} characters long; at most {MAX_CONFIG_CHARS} "
                                      "are accepted")
    try:
        return json.loads(_strip_comments(text, path))
    except json.JSONDecodeError as exc:
        raise ConfigError(path, exc.lineno, exc.colno, f"invalid JSON: {exc.msg}") from None


def load(path: Path | str) -> Any:
    """Read and parse a JSON-with-comments file."""
    return loads(read_text(path), str(path))


def read_text(path: Path | str) -> str:
    """A config file's text, refusing files larger than `MAX_CONFIG_CHARS` bytes before reading them.

    Raises:
        ConfigError: unreadable, too large or not UTF-8.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_CONFIG_CHARS + 1)
    except OSError as exc:
        raise ConfigError(str(p), 0, 0, f"cannot read: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_CHARS:
        raise ConfigError(str(p), 1, 1, f"the file is larger than {MAX_CONFIG_CHARS} bytes; refused")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", "replace")
        line, col = _line_column(before, len(before))
        raise ConfigError(str(p), line, col, f"not UTF-8 text: {exc.reason}") from None
