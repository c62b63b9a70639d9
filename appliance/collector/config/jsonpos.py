"""Where each value of a JSON-with-comments document is, so config errors can point at it.

`jsonc.loads` parses (and reports syntax errors); this re-scans the same text and maps
every value's path (``("fwm", 0, "fields", 2)``) to its line and column.
"""

from __future__ import annotations

import json
from typing import Any

from appliance.collector.config.jsonc import _strip_comments, loads

__all__ = ["Located", "load_located"]

Path = tuple[str | int, ...]


class Located:
    """A parsed document plus positions; `where(path)` gives (line, column), 1-based."""

    def __init__(self, doc: Any, text: str) -> None:
        self.doc = doc
        self._pos: dict[Path, int] = {}
        self._keypos: dict[Path, int] = {}
        self._nl = [i for i, c in enumerate(text) if c == "\n"]
        try:
            _Scanner(_strip_comments(text), self._pos, self._keypos).value(())
        except (ValueError, IndexError):  # jsonc.loads accepted it; positions are best effort
            pass

    def _linecol(self, off: int) -> tuple[int, int]:
        lo, hi = 0, len(self._nl)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._nl[mid] < off:
                lo = mid + 1
            else:
                hi = mid
        start = self._nl[lo - 1] + 1 if lo else 0
        return lo + 1, off - start + 1

    def where(self, path: Path, key: bool = False) -> tuple[int, int]:
        """Line and column of the value at path (of its key with key=True); the nearest parent if unknown."""
        table = self._keypos if key else self._pos
        p = tuple(path)
        while p:
            if p in table:
                return self._linecol(table[p])
            p = p[:-1]
            table = self._pos
        return (1, 1)


class _Scanner:
    def __init__(self, text: str, pos: dict[Path, int], keypos: dict[Path, int]) -> None:
        self.s, self.i = text, 0
        self.pos, self.keypos = pos, keypos
        self.dec = json.JSONDecoder()

    def ws(self) -> None:
        s, i = self.s, self.i
        while i < len(s) and s[i] in " \t\r\n":
            i += 1
        self.i = i

    def value(self, path: Path) -> None:
        self.ws()
        self.pos[path] = self.i
        c = self.s[self.i]
        if c == "{":
            self.i += 1
            self.ws()
            if self.s[self.i] == "}":
                self.i += 1
                return
            while True:
                self.ws()
                kstart = self.i
                key, self.i = json.decoder.scanstring(self.s, self.i + 1)
                self.keypos[(*path, key)] = kstart
                self.ws()
                self.i += 1  # ':'
                self.value((*path, key))
                self.ws()
                c = self.s[self.i]
                self.i += 1
                if c == "}":
                    return
        elif c == "[":
            self.i += 1
            self.ws()
            if self.s[self.i] == "]":
                self.i += 1
                return
            n = 0
            while True:
                self.value((*path, n))
                n += 1
                self.ws()
                c = self.s[self.i]
                self.i += 1
                if c == "]":
                    return
        else:
            _, self.i = self.dec.raw_decode(self.s, self.i)


def load_located(text: str, path: str) -> Located:
    """Parse JSON with comments; raises jsonc.ConfigError on syntax errors."""
    return Located(loads(text, path), text)
