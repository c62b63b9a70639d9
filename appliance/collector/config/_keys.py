"""Warnings for keys a config file has but Mirrorflow does not read: a typo gets a suggestion,
a xenoeye key that Mirrorflow does not support yet is named as such."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["XENOEYE_CONFIG_KEYS", "XENOEYE_MO_KEYS", "key_warnings"]

#: xenoeye.conf keys Mirrorflow does not support yet, and what they do there
XENOEYE_CONFIG_KEYS = {
    "sflow-capture": "sFlow v5 input",
    "clsf-dir": "the classification database",
    "db-type": "ClickHouse SQL files (Mirrorflow writes PostgreSQL SQL and COPY)",
    "db-export": "a script run after each export pass",
    "ch-codec": "ClickHouse column codecs",
    "templates.allow-templates-in-future": "a work-around for xenoeye's template epoch bug, not needed here",
    "allow-templates-in-future": "a work-around for xenoeye's template epoch bug, not needed here",
}
#: mo.conf keys of xenoeye that Mirrorflow does not support yet
XENOEYE_MO_KEYS = {"classification": "automatic traffic classes (class0..class4)"}


def key_warnings(keys: Iterable[str], known: Iterable[str], what: str,
                 xenoeye: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """One ``(key, message)`` per key that is not in `known`.

    Args:
        keys: the keys as written.
        known: the keys Mirrorflow reads there.
        what: how the message names the place ("key", "fwm key", "devices.conf key").
        xenoeye: keys of xenoeye that are valid there but not supported yet, with what they do.
    """
    known = sorted(known)
    out = []
    for k in keys:
        if k in known:
            continue
        if xenoeye and k in xenoeye:
            out.append((k, (f"{what} {k!r} is xenoeye's ({xenoeye[k]}); Mirrorflow does not support it yet "
                           "and ignores it")))
            continue
        close = difflib.get_close_matches(k, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
        out.append((k, f"{what} {k!r} is unknown and ignored{hint}"))
    return out
