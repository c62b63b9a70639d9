"""xenoeye's functions for window fields and filters, over whole columns.

Numbers: ``div(a, b)`` = a / b (integer; 0 when b is 0), ``div_r(a, b, N)`` rounds the
quotient down to a multiple of N, ``div_l(a, b, N)`` down to a power of N (1, N, N², …; 0
stays 0), ``min(f1, f2)``, ``mfreq(f1, f2)`` (of two 16-bit values, the one seen more often
so far in this window / filter rule; on a tie the smaller).

Text: ``tfstr(tcp-flags)`` ('SYN', 'ACK+PSH', 'CWR+ECE+URG+ACK+PSH+RST+SYN+FIN', '' for none),
``portstr(port)`` ('https (443)' or '40000'), ``ppstr(p1, p2)`` ('http(80) -> 40000'
style, exactly xenoeye's rules below). Text functions are computed as a small integer *code*
per flow (flags byte, port, canonical port pair) that identifies the text exactly, so
windows group by the code and render text once per row at export.

Where xenoeye is wrong we do better: quotients are 64-bit (xenoeye casts to int), div_l
uses exact integer powers (xenoeye's floating ``log(1000)/log(10)`` gives 100 for 1000),
``bits`` in div() counts bits (xenoeye ignores the ×8), and the filter's mfreq counts each
argument once (xenoeye increments the first argument twice).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from appliance.collector.fields._portnames import PORT_NAMES
from appliance.collector.fields.hashing import mix as _mix

__all__ = ["div_values", "mfreq_values", "hash_texts", "tfstr", "portstr", "ppstr", "pp_code",
           "pp_text", "TFSTR", "port_texts", "PP_NONE", "NAMED_PORTS"]

_FLAG_NAMES = ("CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN")  # bit 7 … bit 0


def tfstr(flags: int) -> str:
    """xenoeye's text of the low 8 TCP flag bits, highest bit first: 'ACK+PSH+FIN'."""
    f = flags & 0xFF
    return "+".join(name for k, name in enumerate(_FLAG_NAMES) if f >> (7 - k) & 1)


#: tfstr of every flags byte
TFSTR: tuple[str, ...] = tuple(tfstr(i) for i in range(256))

NAMED_PORTS = np.zeros(1 << 16, dtype=np.bool_)
NAMED_PORTS[list(PORT_NAMES)] = True
#: marks the side of a port pair that the text leaves out (``'40000 ->'``)
PP_NONE = 1 << 16


def portstr(port: int) -> str:
    """'https (443)' for a named port, else the number."""
    port &= 0xFFFF
    name = PORT_NAMES.get(port)
    return f"{name} ({port})" if name else str(port)


_PORT_TEXTS: list[str] | None = None


def port_texts() -> list[str]:
    """portstr of every port (built on first use)."""
    global _PORT_TEXTS
    if _PORT_TEXTS is None:
        _PORT_TEXTS = [portstr(p) for p in range(1 << 16)]
    return _PORT_TEXTS


def ppstr(p1: int, p2: int) -> str:
    """xenoeye's text of a port pair (the readable oracle of `pp_code` + `pp_text`).

    Both ports named: 'http(80) -> domain(53)'; equal: '5 -> 5'; otherwise an unnamed
    port that is the higher one is left out: '1000 ->', '-> 1000', 'http(80) ->',
    '-> https(443)'; the lower one stays: '80 -> https(443)', 'https(443) -> 80'.
    """
    p1, p2 = p1 & 0xFFFF, p2 & 0xFFFF
    s1, s2 = PORT_NAMES.get(p1), PORT_NAMES.get(p2)
    if s1 and s2:
        return f"{s1}({p1}) -> {s2}({p2})"
    if p1 == p2:
        return f"{p1} -> {p2}"
    if p1 < p2:
        if s2:
            return f"{p1} -> {s2}({p2})"
        return f"{s1}({p1}) ->" if s1 else f"{p1} ->"
    if s1:
        return f"{s1}({p1}) -> {p2}"
    return f"-> {s2}({p2})" if s2 else f"-> {p2}"


def pp_code(p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """One uint64 per flow that is equal exactly when `ppstr` texts are equal.

    ``k1 << 17 | k2``, where a port the text leaves out becomes `PP_NONE`.
    """
    a = p1 & np.uint64(0xFFFF)
    b = p2 & np.uint64(0xFFFF)
    none = np.uint64(PP_NONE)
    k2 = np.where((a < b) & ~NAMED_PORTS[b], none, b)  # '80 ->', 'http(80) ->'
    k1 = np.where((a > b) & ~NAMED_PORTS[a], none, a)  # '-> 80', '-> http(80)'
    return (k1 << np.uint64(17)) | k2


def pp_text(code: int) -> str:
    """The text of a `pp_code`."""
    k1, k2 = code >> 17, code & 0x1FFFF
    if k2 == PP_NONE:  # p1 < p2, p2 unnamed
        s1 = PORT_NAMES.get(k1)
        return f"{s1}({k1}) ->" if s1 else f"{k1} ->"
    if k1 == PP_NONE:  # p1 > p2, p1 unnamed
        s2 = PORT_NAMES.get(k2)
        return f"-> {s2}({k2})" if s2 else f"-> {k2}"
    return ppstr(k1, k2)


@njit(cache=True, nogil=True)
def div_values(a, b, mode, k, out):  # type: ignore[no-untyped-def]
    """out = a / b (0 where b is 0); mode 1 rounds down to a multiple of k, mode 2 to a power of k."""
    kk = np.uint64(k)
    for i in range(a.shape[0]):
        d = b[i]
        if d == 0:
            out[i] = 0
            continue
        q = a[i] // d
        if mode == 1 and kk > 1:
            q = (q // kk) * kk
        elif mode == 2:
            if q > 0:
                p = np.uint64(1)
                while p <= q // kk:
                    p *= kk
                q = p
        out[i] = q


@njit(cache=True, nogil=True)
def mfreq_values(a, b, rows, freq, out):  # type: ignore[no-untyped-def]
    """For the selected rows in order: the more frequent of a[i], b[i] (16 bits) so far, the
    smaller on a tie; then both counts go up by one."""
    for r in range(rows.shape[0]):
        i = rows[r]
        x = a[i] & np.uint64(0xFFFF)
        y = b[i] & np.uint64(0xFFFF)
        fx = freq[x]
        fy = freq[y]
        if fx != fy:
            out[i] = x if fx > fy else y
        else:
            out[i] = x if x < y else y
        freq[x] += 1
        freq[y] += 1


@njit(cache=True, nogil=True)
def hash_texts(refs, raw, rows, h1, h2):  # type: ignore[no-untyped-def]
    """Two independent 64-bit hashes of the string each selected row refers to
    (``offset << 16 | length`` into raw, trailing NULs ignored, like FlowBatch.text)."""
    nraw = raw.shape[0]
    for r in range(rows.shape[0]):
        i = rows[r]
        ref = refs[i]
        off = np.int64(ref >> np.uint64(16))
        ln = np.int64(ref & np.uint64(0xFFFF))
        if off >= nraw:
            ln = 0
        elif off + ln > nraw:
            ln = nraw - off
        while ln > 0 and raw[off + ln - 1] == 0:
            ln -= 1
        x = np.uint64(0x9E3779B97F4A7C15) ^ np.uint64(ln)
        y = np.uint64(0xD6E8FEB86659FD93) ^ np.uint64(ln)
        w = np.uint64(0)
        k = 0
        for j in range(ln):
            w = (w << np.uint64(8)) | np.uint64(raw[off + j])
            k += 1
            if k == 8:
                x = _mix(x, w)
                y = _mix(y, w ^ np.uint64(0xA0761D6478BD642F))
                w = np.uint64(0)
                k = 0
        if k:
            x = _mix(x, w)
            y = _mix(y, w ^ np.uint64(0xA0761D6478BD642F))
        h1[i] = x
        h2[i] = y
