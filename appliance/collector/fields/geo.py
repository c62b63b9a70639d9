"""The values enrichment adds (country, continent, AS, city…) as numbers the kernels handle.

Enrichment (`appliance.collector.enrich`) puts codes into `FlowBatch` columns, never strings:

- countries and continents: the two letters as one 16-bit number, ``'D' << 8 | 'E'``
  (`letters_code`); 0 = unknown;
- AS numbers: the number; 0 = unknown;
- texts (AS organisation, state, city, zip, latitude, longitude): a code of `TEXTS`, an
  append-only table for the life of the process, so a code means the same text before and
  after a SIGHUP reload, in a window that was open across it, and in a filter compiled
  before the database was loaded; 0 = unknown (empty text).

Filters compare codes, windows group by them; the text is looked up only where people read it
(`render`, exported windows, ``decode`` output).
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["ENRICHED", "GEO_FUNCTIONS", "NAMED_COLUMNS", "TEXTS", "code_text", "TextTable", "COUNTRY_NAMES",
           "letters_code", "code_letters", "render", "function_column", "function_render", "function_codes", "side_of"]

#: enriched column (without src_/dst_) → how its codes read: letters, number or text
ENRICHED: dict[str, str] = {
    "country": "letters", "continent": "letters", "asn": "number", "as_org": "text",
    "state": "text", "city": "text", "zip": "text", "lat": "text", "long": "text",
    "net_name": "text", "net_role": "text", "net_site": "text",
}

#: enriched columns whose codes stand for text (countries, AS names, cities, interface names):
#: a code means something only inside the process that made it, so whatever leaves the
#: process (the flow archive) carries the text
NAMED_COLUMNS = frozenset(
    {f"{side}_{name}" for side in ("src", "dst") for name, how in ENRICHED.items() if how != "number"}
    | {"in_if_name", "out_if_name"}
)

#: xenoeye's GeoIP/AS functions → the enriched column they read (without src_/dst_)
GEO_FUNCTIONS: dict[str, str] = {
    "continent": "continent", "country_code": "country", "country": "country", "state": "state",
    "city": "city", "zip": "zip", "lat": "lat", "long": "long", "asn": "asn", "asd": "as_org",
}

#: country code → English name, filled from the databases' records as they load
COUNTRY_NAMES: dict[int, str] = {}


def letters_code(text: str) -> int:
    """``"DE"`` → ``'D' << 8 | 'E'``; anything but two ASCII letters → 0 (unknown)."""
    t = text.strip().upper()
    if len(t) != 2 or not t.isascii() or not t.isalpha():
        return 0
    return ord(t[0]) << 8 | ord(t[1])


def code_letters(code: int) -> str:
    """The inverse of `letters_code`; 0 (unknown) → ``""``."""
    if code <= 0 or code > 0xFFFF:
        return ""
    return chr(code >> 8) + chr(code & 0xFF)


class TextTable:
    """Texts ↔ codes, append-only and bounded (`MAX` texts; past it new texts get 0, counted).

    `code` is thread-safe (a reload interns from its loading thread while the collector's
    thread renders).
    """

    MAX = 1 << 24

    def __init__(self) -> None:
        self._texts: list[str] = [""]
        self._codes: dict[str, int] = {"": 0}
        self._lock = threading.Lock()
        #: texts refused because the table was full
        self.overflow = 0

    def __len__(self) -> int:
        return len(self._texts)

    def code(self, text: str) -> int:
        """The code of `text`, interned if new."""
        c = self._codes.get(text)
        if c is not None:
            return c
        with self._lock:
            c = self._codes.get(text)
            if c is None:
                if len(self._texts) >= self.MAX:
                    self.overflow += 1
                    return 0
                c = len(self._texts)
                self._texts.append(text)
                self._codes[text] = c
            return c

    def find(self, text: str) -> int | None:
        """The code of `text` if it is known, without interning it."""
        return self._codes.get(text)

    def text(self, code: int) -> str:
        return self._texts[code] if 0 <= code < len(self._texts) else ""

    def render(self, codes: np.ndarray) -> np.ndarray:
        """The text of every code (an object array; unknown codes → ``""``)."""
        uniq, inv = np.unique(np.asarray(codes, dtype=np.uint64), return_inverse=True)
        return np.array([self.text(int(c)) for c in uniq.tolist()], dtype=object)[inv.reshape(-1)]


#: the process's one text table (see the module text)
TEXTS = TextTable()


def side_of(column: str) -> tuple[str, str]:
    """``"src_as_org"`` → ``("src", "as_org")``."""
    side, _, name = column.partition("_")
    return side, name


def code_text(column: str, code: int) -> str:
    """The text one code of a `NAMED_COLUMNS` column stands for ('' for 0, unknown)."""
    if not code:
        return ""
    return code_letters(code) if ENRICHED.get(side_of(column)[1], "text") == "letters" else TEXTS.text(code)


def render(column: str, codes: np.ndarray, unknown: str = "") -> np.ndarray:
    """Texts of an enriched column's codes (``src_country`` → ``DE``), unknown as `unknown`."""
    how = ENRICHED.get(side_of(column)[1], "text")  # in_if_name, out_if_name: text
    codes = np.asarray(codes, dtype=np.uint64)
    uniq, inv = np.unique(codes, return_inverse=True)
    if how == "letters":
        texts = [code_letters(int(c)) for c in uniq.tolist()]
    elif how == "number":
        texts = [str(int(c)) if c else "" for c in uniq.tolist()]
    else:
        texts = [TEXTS.text(int(c)) for c in uniq.tolist()]
    out = np.array([t or unknown for t in texts], dtype=object)
    return out[inv.reshape(-1)]


def function_column(func: str, side: str) -> str:
    """The enriched column a GeoIP function of ``src host`` / ``dst host`` reads."""
    return f"{side}_{GEO_FUNCTIONS[func]}"


def function_render(func: str, codes: np.ndarray) -> np.ndarray:
    """xenoeye's text of a GeoIP function's codes: unknown → ``?``; ``country()`` is the name."""
    codes = np.asarray(codes, dtype=np.uint64)
    if func == "country":
        uniq, inv = np.unique(codes, return_inverse=True)
        texts = [COUNTRY_NAMES.get(int(c)) or code_letters(int(c)) or "?" for c in uniq.tolist()]
        return np.array(texts, dtype=object)[inv.reshape(-1)]
    return render("src_" + GEO_FUNCTIONS[func], codes, unknown="?")


def function_codes(func: str, text: str) -> list[int]:
    """The codes whose text (as `function_render` shows it) is `text`: what a filter matches.

    Country and continent codes are case-insensitive; other texts are compared exactly.
    ``?`` matches the unknown (0).
    """
    if text == "?":
        return [0]
    how = ENRICHED[GEO_FUNCTIONS[func]]
    if func == "country":
        want = text.strip().lower()
        out = [c for c, name in COUNTRY_NAMES.items() if name.lower() == want]
        return out or ([letters_code(text)] if letters_code(text) else [])
    if how == "letters":
        c = letters_code(text)
        return [c] if c else []
    if how == "number":
        t = text.strip().upper().removeprefix("AS")
        return [int(t)] if t.isdigit() else []
    return [TEXTS.code(text)]
