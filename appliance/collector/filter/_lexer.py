"""Tokens of the filter language: words, quoted strings, parentheses; comments skipped.

A *word* is a run of characters up to whitespace, a parenthesis, a quote, a comma or a
comment: field names (``tcp-flags``), keywords, numbers, ranges (``1-1024``), addresses and
prefixes (``10.0.0.0/8``, ``2001:db8::/32``), MAC addresses and IP list names. What a word
means is decided by the parser from where it stands.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from appliance.collector.filter._errors import FilterError

__all__ = ["Kind", "Token", "tokenize", "MAX_FILTER_CHARS"]

#: the longest filter text accepted (characters): a filter is typed by a person; long address
#: sets belong in IP lists. Anything longer is refused before it is tokenized.
MAX_FILTER_CHARS = 65_536


class Kind(enum.Enum):
    WORD = "word"
    STRING = "string"
    LPAREN = "'('"
    RPAREN = "')'"
    COMMA = "','"
    END = "end of filter"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str  # the word, the string's content (unquoted) or the punctuation
    pos: int  # offset of the first character in the filter text
    end: int  # offset after the last character

    @property
    def lower(self) -> str:
        return self.text.lower()

    def describe(self) -> str:
        if self.kind is Kind.WORD:
            return repr(self.text)
        if self.kind is Kind.STRING:
            return f"string {self.text!r}"
        return self.kind.value


_PUNCT = {"(": Kind.LPAREN, ")": Kind.RPAREN, ",": Kind.COMMA}
_STOP = set(" \t\r\n\f\v()'\",")


def tokenize(text: str, source: str = "<filter>") -> list[Token]:
    """Split a filter into tokens; the list always ends with an END token.

    Raises:
        FilterError: an unterminated quote or ``/*`` comment, or a text longer than
            `MAX_FILTER_CHARS`.
    """
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(source, text, MAX_FILTER_CHARS, f"the filter is {len(text)} characters long; "
                          f"at most {MAX_FILTER_CHARS} are accepted (put long address sets in an IP list)")
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise FilterError(source, text, i, "comment '/*' is not closed; add '*/'")
            i = j + 2
        elif c in _PUNCT:
            out.append(Token(_PUNCT[c], c, i, i + 1))
            i += 1
        elif c in "'\"":
            j = text.find(c, i + 1)
            if j < 0:
                raise FilterError(source, text, i, f"string is not closed; add the closing {c}")
            out.append(Token(Kind.STRING, text[i + 1 : j], i, j + 1))
            i = j + 1
        else:
            j = i
            while j < n and text[j] not in _STOP and not text.startswith(("//", "/*"), j):
                j += 1
            out.append(Token(Kind.WORD, text[i:j], i, j))
            i = j
    out.append(Token(Kind.END, "", n, n))
    return out
