"""JSON with ``//`` and ``/* */`` comments (xenoeye's config format), with precise errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError

__all__ = ["ConfigError", "loads", "load"]


def _strip_comments(text: str) -> str:
    """Replace comments by spaces (keeping newlines) so positions stay right."""
    out = []
    i, n = 0, len(text)
    in_str = False
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
    try:
        return json.loads(_strip_comments(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(path, exc.lineno, exc.colno, f"invalid JSON: {exc.msg}") from None


def load(path: Path | str) -> Any:
    """Read and parse a JSON-with-comments file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(str(p), 0, 0, f"cannot read: {exc.strerror}") from None
    return loads(text, str(p))
