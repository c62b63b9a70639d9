"""`FilterError`: a bad filter expression or IP list, with the position that caused it."""

from __future__ import annotations

from appliance.errors import ConfigError

__all__ = ["FilterError", "line_column"]


def line_column(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of a 0-based character offset in `text`."""
    position = max(0, min(position, len(text)))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return line, column


#: characters of the offending line shown on each side of the caret (a 30 KB one-line filter
#: must not make a 30 KB log line)
_CONTEXT = 60


def _caret(text: str, position: int) -> str:
    """The line of `text` holding `position` (clipped around it), and a caret under that character."""
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    end = len(text) if end < 0 else end
    lo, hi = max(start, position - _CONTEXT), min(end, position + _CONTEXT)
    shown = ("…" if lo > start else "") + text[lo:hi].replace("\t", " ") + ("…" if hi < end else "")
    return f"\n  {shown}\n  {' ' * (position - lo + (lo > start))}^"


class FilterError(ConfigError):
    """A filter expression or an IP list file is invalid.

    It is a `ConfigError` (so ``check-config`` reports it with the others) and therefore a
    `MirrorflowError`. ``str(err)`` is ``source:line:column: message`` followed by the
    offending line and a caret under the position.

    Attributes:
        source: where the text came from (``"<filter>"``, a mo.conf path, an IP list file).
        position: 0-based character offset of the error in the text.
        line: 1-based line of the error in the text (0 if the file could not be read).
        column: 1-based column of the error in the text.
        reason: the message without position and caret.
    """

    def __init__(self, source: str, text: str, position: int, message: str) -> None:
        self.source = source
        self.position = position
        self.reason = message
        line, column = line_column(text, position) if text or position else (0, 0)
        ConfigError.__init__(self, source, line, column, message + (_caret(text, position) if text else ""))
