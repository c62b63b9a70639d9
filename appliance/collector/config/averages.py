"""Moving-average definitions (xenoeye's ``mavg`` in a mo.conf), validated into `MavgSpec`.

```
"mavg": [{
  "name": "pps", "time": 5,                         // T: time constant, seconds (5)
  "fields": ["dst host", "packets", "octets"],      // keys + one or more summed counters
  "dump": 0, "mem-m": 256,                          // .d/.a dump period s (0 off); table MiB
  "overlimit": [{
    "name": "lvl1",                                 // default "0", "1", ...
    "default": [100000, 1e9],                       // per second, one per counter (null: not checked)
    "limits": "limits.csv",                         // per-key thresholds (relative: to mo.conf)
    "back2norm-time": 30,                           // s below every threshold before normal
    "action-script": "/usr/local/bin/alert.sh",
    "back2norm-script": "/usr/local/bin/normal.sh",
    "ext": ["by_port", "other_mo/by_src"]           // extended windows switched on meanwhile
  }],
  "underlimit": [ ... same keys ... ]
}]
```

The running state is `appliance.collector.monitoring.mavg`; what a raised level does is
`appliance.collector.monitoring.alerts`' business.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.collector.fields.spec import FieldError, FieldSpec, KeyKind, parse_field
from appliance.errors import ConfigError

__all__ = ["LevelSpec", "MavgSpec", "parse_averages", "check_ext_references", "format_key", "parse_key",
           "load_limits"]

_MAVG_KEYS = {"name", "time", "fields", "dump", "mem-m", "overlimit", "underlimit"}
_LEVEL_KEYS = {"name", "default", "limits", "back2norm-time", "action-script", "back2norm-script", "ext"}
_MAX_LEVELS = 32
_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class LevelSpec:
    """One ``overlimit``/``underlimit`` entry.

    Attributes:
        default: per counter, threshold per second (None: that counter is not checked).
        limits: per-key thresholds from the limits file: (key words, per-counter thresholds).
        ext: extended windows as (object name, window name).
    """

    name: str
    under: bool
    default: tuple[float | None, ...]
    limits_file: Path | None = None
    limits: tuple[tuple[tuple[int, ...], tuple[float | None, ...]], ...] = ()
    back2norm_s: float = 30.0
    action_script: Path | None = None
    back2norm_script: Path | None = None
    ext: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class MavgSpec:
    """One ``mavg`` entry, validated (levels: overlimits first, then underlimits)."""

    name: str
    time: float
    fields: tuple[FieldSpec, ...]
    dump: float = 0.0
    mem_m: float = 256.0
    levels: tuple[LevelSpec, ...] = ()
    mo_dir: Path = Path(".")

    @property
    def keys(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if not f.aggregate)

    @property
    def counters(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.aggregate)

    @property
    def core(self) -> tuple:
        """What the running table depends on (a reload that keeps it keeps the rates)."""
        return (self.name, self.time, self.fields, self.mem_m)


# ---- keys as text ---------------------------------------------------------------------------


def parse_key(specs: tuple[FieldSpec, ...], texts: list[str]) -> tuple[int, ...]:
    """Key fields as written in a limits file → the table's key words.

    Raises:
        ValueError: a value that does not fit its field.
    """
    out: list[int] = []
    for f, raw in zip(specs, texts, strict=True):
        text = raw.strip().strip("'\"")
        if f.kind == KeyKind.NUMBER:
            out.append(int(text, 0))
        elif f.kind == KeyKind.IPV4:
            out.append(int(ipaddress.IPv4Address(text)))
        elif f.kind == KeyKind.MAC:
            out.append(int(text.replace(":", "").replace("-", ""), 16))
        else:
            ip = ipaddress.ip_address(text)
            if ip.version == 4:
                if f.kind == KeyKind.IPV6:
                    ip = ipaddress.IPv6Address(f"::ffff:{ip}")
                else:
                    out.extend((0, 0xFFFF_0000_0000 | int(ip)))
                    continue
            v = int(ip)
            out.extend((v >> 64, v & 0xFFFF_FFFF_FFFF_FFFF))
    return tuple(out)


def format_key(specs: tuple[FieldSpec, ...], words: tuple[int, ...] | np.ndarray) -> list[str]:
    """The key words → one text per key field (addresses without quotes)."""
    out: list[str] = []
    k = 0
    for f in specs:
        w = int(words[k])
        if f.kind == KeyKind.NUMBER:
            out.append(str(w))
        elif f.kind == KeyKind.IPV4:
            out.append(str(ipaddress.IPv4Address(w & 0xFFFFFFFF)))
        elif f.kind == KeyKind.MAC:
            out.append(":".join(f"{b:02x}" for b in w.to_bytes(8, "big")[2:]))
        else:
            ip = ipaddress.IPv6Address((w << 64) | int(words[k + 1]))
            out.append(str(ip.ipv4_mapped or ip))
        k += f.words
    return out


def load_limits(path: Path,
                fields: tuple[FieldSpec, ...]) -> tuple[tuple[tuple[int, ...], tuple[float | None, ...]], ...]:
    """A limits file: one line per key, the fields in ``fields`` order with each counter's
    threshold (per second) in its position, ``#`` comments (``1.2.3.4,6,300000``).

    Raises:
        ConfigError: with the file and line.
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), 0, 0, f"cannot read the limits file: {exc}") from None
    keys = tuple(f for f in fields if not f.aggregate)
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        cols = [c.strip() for c in body.split(",")]
        if len(cols) != len(fields):
            raise ConfigError(str(path), n, 1, f"{len(cols)} columns, expected {len(fields)}: "
                              + ",".join(f.text for f in fields) + " (the threshold where each counter is)")
        ktexts, thr = [], []
        for f, c in zip(fields, cols, strict=True):
            if not f.aggregate:
                ktexts.append(c)
                continue
            if c in ("", "-"):
                thr.append(None)
                continue
            try:
                v = float(c)
            except ValueError:
                raise ConfigError(str(path), n, 1, f"threshold {c!r} for {f.text!r} is not a number") from None
            thr.append(v)
        try:
            out.append((parse_key(keys, ktexts), tuple(thr)))
        except ValueError as exc:
            raise ConfigError(str(path), n, 1, f"key {','.join(ktexts)!r}: {exc}") from None
    return tuple(out)


# ---- mo.conf --------------------------------------------------------------------------------


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(int(v.strip(), 0))
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return None
    return None


def _script(chk: Any, at: tuple, v: Any, base: Path) -> Path | None:
    if not isinstance(v, str) or not v:
        chk.error(at, "a script must be a path to an executable file")
        return None
    p = Path(v) if Path(v).is_absolute() else base / v
    import os

    if not p.is_file() or not os.access(p, os.X_OK):
        chk.error(at, f"script {p} is not an executable file: create it and chmod +x it")
        return None
    return p


def _level(chk: Any, at: tuple, doc: Any, i: int, under: bool, fields: tuple[FieldSpec, ...],
           mo_name: str, base: Path) -> LevelSpec | None:
    if not isinstance(doc, dict):
        chk.error(at, 'each level must be an object like {"name": "lvl1", "default": [100000]}')
        return None
    chk.keys(at, doc, _LEVEL_KEYS, f"{'under' if under else 'over'}limit key")
    ok = True
    name = doc.get("name", str(i))
    if not isinstance(name, (str, int)) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", str(name)):
        chk.error((*at, "name"), "level name: use letters, digits, '_', '-', '.' only (it is part of file names)")
        ok = False
    name = str(name)
    counters = tuple(f for f in fields if f.aggregate)
    default: list[float | None] = [None] * len(counters)
    if "default" in doc:
        d = doc["default"]
        d = d if isinstance(d, list) else [d]
        if len(d) != len(counters):
            chk.error((*at, "default"), f'"default" needs one threshold per counter '
                      f"({', '.join(f.text for f in counters)}); null = not checked")
            ok = False
        for j, v in enumerate(d[: len(counters)]):
            if v is None:
                continue
            x = _number(v)
            if x is None or x < 0 or math.isnan(x):
                chk.error((*at, "default", j) if isinstance(doc["default"], list) else (*at, "default"),
                          "a threshold is a number ≥ 0 (units per second of its counter)")
                ok = False
            else:
                default[j] = x
    limits_file = None
    limits: tuple = ()
    if "limits" in doc:
        v = doc["limits"]
        if not isinstance(v, str) or not v:
            chk.error((*at, "limits"), '"limits" must be the path of a CSV file')
            ok = False
        else:
            limits_file = Path(v) if Path(v).is_absolute() else base / v
            try:
                limits = load_limits(limits_file, fields)
            except ConfigError as exc:
                chk.errors.append(exc)
                ok = False
    if "default" not in doc and limits_file is None:
        chk.error(at, 'a level needs "default" thresholds (one per counter) and/or a "limits" file')
        ok = False
    b2n = 30.0
    if "back2norm-time" in doc:
        x = _number(doc["back2norm-time"])
        if x is None:
            chk.error((*at, "back2norm-time"), '"back2norm-time" must be a number of seconds (default 30)')
            ok = False
        elif x <= 0:
            chk.warn((*at, "back2norm-time"), "back2norm-time ≤ 0 means 30 s (as in xenoeye)")
        else:
            b2n = x
    scripts: dict[str, Path | None] = {}
    for key in ("action-script", "back2norm-script"):
        scripts[key] = None
        if key in doc:
            scripts[key] = _script(chk, (*at, key), doc[key], base)
            ok = ok and scripts[key] is not None
    ext: list[tuple[str, str]] = []
    if "ext" in doc:
        v = doc["ext"]
        items = v if isinstance(v, list) else [v]
        for j, e in enumerate(items):
            where = (*at, "ext", j) if isinstance(v, list) else (*at, "ext")
            if not isinstance(e, str) or not e or e.endswith("/"):
                chk.error(where, '"ext" lists windows: "fwm-name" or "other/object/fwm-name"')
                ok = False
                continue
            mo, _, win = e.rpartition("/")
            ext.append((mo.replace("/", "_") if mo else mo_name, win))
    if not ok:
        return None
    return LevelSpec(name, under, tuple(default), limits_file, limits, b2n, scripts["action-script"],
                     scripts["back2norm-script"], tuple(ext))


def parse_averages(chk: Any, docs: list, mo_name: str, base: Path) -> tuple[MavgSpec, ...]:
    """Validate a mo.conf's ``mavg`` list; problems go to ``chk.error`` with positions.

    Args:
        chk: the mo.conf checker (``error(where, msg)``, ``warn(where, msg, key)``, ``keys``, ``errors``).
        docs: the ``mavg`` list as parsed.
        mo_name: the object's name (for ``ext`` entries without an object).
        base: the mo.conf's directory (relative limits/scripts, dump files).
    """
    out: list[MavgSpec] = []
    names: set[str] = set()
    for i, doc in enumerate(docs):
        at: tuple = ("mavg", i)
        chk.keys(at, doc, _MAVG_KEYS, "mavg key")
        ok = True
        name = doc.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            chk.error((*at, "name") if "name" in doc else at,
                      'mavg needs "name": letters, digits, \'_\', \'-\', \'.\' (it names dump and notification files)')
            ok = False
        elif name in names:
            chk.error((*at, "name"), f"mavg name {name!r} is used twice in this object")
            ok = False
        else:
            names.add(name)
        specs: list[FieldSpec] = []
        fdoc = doc.get("fields")
        if not isinstance(fdoc, list) or not fdoc:
            chk.error((*at, "fields") if "fields" in doc else at,
                      'mavg needs "fields": key fields and counters, like ["dst host", "packets"]')
            ok = False
        else:
            for j, text in enumerate(fdoc):
                try:
                    specs.append(parse_field(text))
                except FieldError as exc:
                    chk.error((*at, "fields", j), str(exc))
                    ok = False
            if ok and not any(f.aggregate for f in specs):
                chk.error((*at, "fields"), "mavg fields need at least one counter (packets, octets, bits, flows…)")
                ok = False
        nums = {}
        for key, default, low in (("time", 5.0, 0.0), ("dump", 0.0, -1.0), ("mem-m", 256.0, 0.0)):
            nums[key] = default
            if key in doc:
                x = _number(doc[key])
                if x is None or x <= low or math.isinf(x):
                    chk.error((*at, key), f'"{key}" must be a {"positive" if low == 0 else "non-negative"} number')
                    ok = False
                else:
                    nums[key] = x
        levels: list[LevelSpec] = []
        if ok:
            for under, key in ((False, "overlimit"), (True, "underlimit")):
                lv = doc.get(key, [])
                if not isinstance(lv, list):
                    chk.error((*at, key), f'"{key}" must be a list of levels')
                    ok = False
                    continue
                seen = set()
                for j, ldoc in enumerate(lv):
                    spec = _level(chk, (*at, key, j), ldoc, j, under, tuple(specs), mo_name, base)
                    if spec is None:
                        ok = False
                    elif spec.name in seen:
                        chk.error((*at, key, j, "name"), f"level name {spec.name!r} is used twice")
                        ok = False
                    else:
                        seen.add(spec.name)
                        levels.append(spec)
            if len(levels) > _MAX_LEVELS:
                chk.error(at, f"at most {_MAX_LEVELS} levels per mavg")
                ok = False
        if ok:
            out.append(MavgSpec(name, nums["time"], tuple(specs), nums["dump"], nums["mem-m"], tuple(levels), base))
    return tuple(out)


def check_ext_references(objects: list[Any]) -> tuple[list[ConfigError], list[str]]:
    """Every ``ext`` must name an existing window; one that is not ``extended`` is ignored."""
    windows = {(o.name, w.name): w for o in objects for w in o.windows}
    errors: list[ConfigError] = []
    warnings: list[str] = []
    for o in objects:
        for m in getattr(o, "averages", ()):
            for lv in m.levels:
                for mo, win in lv.ext:
                    w = windows.get((mo, win))
                    where = f"mavg {m.name!r} level {lv.name!r}: ext {mo}/{win}"
                    if w is None:
                        errors.append(ConfigError(str(o.conf), 1, 1, f"{where}: no such window (write \"window\" "
                                                  "for this object's or \"other/object/window\")"))
                    elif not w.extended:
                        warnings.append(f"{o.conf}: warning: {where} is not \"extended\": it always runs, "
                                        "so switching it does nothing")
    return errors, warnings
