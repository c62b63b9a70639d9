"""Moving averages (xenoeye's ``mavg``): per-key rates with thresholds, from a mo.conf.

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

The rate of a key is ``N/T`` where ``N ← N·exp(−Δt/T) + V`` for every flow (see
`_mavg`): a step to R units/s reads ``R·(1 − exp(−t/T))`` after t seconds. A level is
raised for a key when any counter's rate reaches its threshold (overlimit) or falls below it
(underlimit); what happens then is `alerts`' business.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.collector import _mavg
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.jsonc import ConfigError
from appliance.collector.windows import FieldError, FieldSpec, KeyKind, parse_field

__all__ = ["LevelSpec", "MavgSpec", "MovingAverage", "Raised", "parse_averages", "check_ext_references",
           "format_key", "parse_key", "load_limits"]  # fmt: skip

_MAVG_KEYS = {"name", "time", "fields", "dump", "mem-m", "overlimit", "underlimit"}
_LEVEL_KEYS = {"name", "default", "limits", "back2norm-time", "action-script", "back2norm-script", "ext"}
_MAX_LEVELS = 32
_NS = 1_000_000_000
_EVENTS = 4096


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


def load_limits(path: Path, fields: tuple[FieldSpec, ...]) -> tuple[tuple[tuple[int, ...], tuple[float | None, ...]], ...]:
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
           mo_name: str, base: Path) -> LevelSpec | None:  # fmt: skip
    if not isinstance(doc, dict):
        chk.error(at, 'each level must be an object like {"name": "lvl1", "default": [100000]}')
        return None
    for k in doc:
        if k not in _LEVEL_KEYS:
            chk.warn((*at, k), f"{'under' if under else 'over'}limit key {k!r} is unknown and ignored "
                     f"(known: {', '.join(sorted(_LEVEL_KEYS))})", key=True)  # fmt: skip
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
                     scripts["back2norm-script"], tuple(ext))  # fmt: skip


def parse_averages(chk: Any, docs: list, mo_name: str, base: Path) -> tuple[MavgSpec, ...]:
    """Validate a mo.conf's ``mavg`` list; problems go to ``chk.error`` with positions.

    Args:
        chk: the mo.conf checker (``error(where, msg)``, ``warn(where, msg, key)``, ``errors``).
        docs: the ``mavg`` list as parsed.
        mo_name: the object's name (for ``ext`` entries without an object).
        base: the mo.conf's directory (relative limits/scripts, dump files).
    """
    out: list[MavgSpec] = []
    names: set[str] = set()
    for i, doc in enumerate(docs):
        at: tuple = ("mavg", i)
        for k in doc:
            if k not in _MAVG_KEYS:
                chk.warn((*at, k), f"mavg key {k!r} is unknown and ignored (known: {', '.join(sorted(_MAVG_KEYS))})",
                         key=True)  # fmt: skip
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


# ---- the running state ----------------------------------------------------------------------


@dataclass(slots=True)
class Raised:
    """A level raised for one key by the kernels: the key as words, the level, the counter."""

    key: tuple[int, ...]
    level: int
    counter: int


class MovingAverage:
    """The running state of one ``mavg`` of one monitoring object.

    Args:
        spec: the definition.
        mo: the object's name.
    """

    def __init__(self, spec: MavgSpec, mo: str) -> None:
        self.spec = spec
        self.mo = mo
        self.nk = sum(f.words for f in spec.keys)
        self.na = len(spec.counters)
        self.time_ns = spec.time * _NS
        self._keys, self._counters = spec.keys, spec.counters  # per batch: not recomputed
        self.nover = sum(not lv.under for lv in spec.levels)
        self.slot_bytes = 8 * max(self.nk, 1) + 8 * self.na + 8 + 1 + 4 + 4
        cap = 1
        while cap * 2 * self.slot_bytes <= spec.mem_m * 2**20:
            cap *= 2
        self.cap_max = max(cap, 2)
        self.state = np.zeros(5, dtype=np.int64)
        self.evicted = 0
        self.pinned = 0  # limits rows 1..pinned: keys tracked from the start (underlimit files)
        #: when the alerts first saw this table (underlimits are checked one T later)
        self.start_ns: int | None = None
        self._alloc(min(1024, self.cap_max))
        self._ev = (np.zeros(_EVENTS, np.int64), np.zeros(_EVENTS, np.int64), np.zeros(_EVENTS, np.int64))
        self.set_levels(spec)

    # ---- configuration ---------------------------------------------------------------------

    def set_levels(self, spec: MavgSpec) -> None:
        """(Re)build the threshold tables; existing keys are matched against the new limits.

        Keys an underlimit level's limits file lists (with a threshold) are put in the table
        now, with a zero rate, and never evicted: traffic that should be there and never
        shows up raises the level one T after the start, like traffic that stops.
        """
        assert spec.core == self.spec.core
        self.spec = spec
        self.nover = sum(not lv.under for lv in spec.levels)
        rows: dict[tuple[int, ...], int] = {}
        for lv in spec.levels:  # tracked keys first: rows 1..pinned
            if lv.under:
                for key, values in lv.limits:
                    if any(v is not None for v in values):
                        rows.setdefault(key, len(rows) + 1)
        self.pinned = len(rows)
        for lv in spec.levels:
            for key, _ in lv.limits:
                rows.setdefault(key, len(rows) + 1)
        nl = max(len(spec.levels), 1)
        thr = np.full((len(rows) + 1, nl, self.na), np.nan)
        for li, lv in enumerate(spec.levels):
            thr[:, li, :] = [np.nan if v is None else v for v in lv.default]
            for key, values in lv.limits:
                thr[rows[key], li, :] = [np.nan if v is None else v for v in values]
        cap = 1
        while cap < 2 * len(rows) + 2:
            cap *= 2
        self.lkeys = np.zeros((cap if rows else 1, max(self.nk, 1)), np.uint64)
        self.lrow = np.zeros(cap if rows else 0, np.int32)
        for key, row in rows.items():
            _mavg.insert_limits(self.lkeys, self.lrow, np.array(key, np.uint64), self.nk, row)
        self.thr = thr
        # the lowest overlimit threshold per row and counter lets the kernel skip the levels
        over = np.where(np.isnan(thr[:, : self.nover]), np.inf, thr[:, : self.nover])
        lowest = over.min(axis=1, initial=np.inf)
        self.thrmin = np.where(np.isinf(lowest), np.nan, lowest)
        used = np.flatnonzero(self.used)
        for s in used:  # few after a reload; the kernels look limits up only for new keys
            self.limrow[s] = rows.get(tuple(int(w) for w in self.keys[s, : self.nk]), 0)
        if self.pinned:
            self._seed(list(rows)[: self.pinned])

    def _seed(self, keys: list[tuple[int, ...]]) -> None:
        need = self.count + len(keys)
        cap = self.used.shape[0]
        if need > self.state[_mavg.MAX_KEYS] and cap < self.cap_max:
            while need > cap // 2 and cap < self.cap_max:
                cap *= 2
            self._rebuild(cap)
        words = np.zeros((len(keys), max(self.nk, 1)), np.uint64)
        for i, key in enumerate(keys):
            words[i, : self.nk] = key
        rows = np.arange(1, len(keys) + 1, dtype=np.int32)
        _mavg.seed(self.keys, self.vals, self.tprev, self.used, self.limrow, self.over, words, rows,
                   self.nk, self.state)  # fmt: skip

    def _alloc(self, cap: int) -> None:
        self.keys = np.zeros((cap, max(self.nk, 1)), np.uint64)
        self.vals = np.zeros((cap, self.na), np.float64)
        self.tprev = np.zeros(cap, np.int64)
        self.used = np.zeros(cap, np.uint8)
        self.limrow = np.zeros(cap, np.int32)
        self.over = np.zeros(cap, np.uint32)
        self._set_max()

    def _set_max(self) -> None:
        cap = self.used.shape[0]
        # grow at half full; at the mem-m bound, fill up to 3/4 (linear probing stays short)
        self.state[_mavg.MAX_KEYS] = cap // 2 if cap < self.cap_max else cap * 3 // 4

    def _rebuild(self, cap: int, now: int = 0, idle_ns: int = -1) -> None:
        old = (self.keys, self.vals, self.tprev, self.used, self.limrow, self.over)
        self._alloc(cap)
        n = _mavg.rebuild(*old, self.keys, self.vals, self.tprev, self.used, self.limrow, self.over,
                          self.nk, now, idle_ns, self.pinned)  # fmt: skip
        self.evicted += int(self.state[_mavg.COUNT]) - n
        self.state[_mavg.COUNT] = n

    # ---- feeding ---------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return int(self.state[_mavg.COUNT])

    @property
    def refused(self) -> int:
        return int(self.state[_mavg.REFUSED])

    @property
    def capacity(self) -> int:
        return int(self.state[_mavg.MAX_KEYS]) if self.used.shape[0] >= self.cap_max else \
            self.cap_max * 3 // 4  # fmt: skip

    def add(self, batch: FlowBatch, rows: np.ndarray) -> list[Raised]:
        """Fold the selected rows in; returns the overlimit levels raised by them."""
        n = batch.n
        keycols = np.empty((self.nk, n), dtype=np.uint64)
        k = 0
        for f in self._keys:
            for word in f.key_words(batch):
                keycols[k] = word
                k += 1
        valcols = np.empty((self.na, n), dtype=np.uint64)
        for a, f in enumerate(self._counters):
            valcols[a] = f.values(batch)
        times = batch["recv_time_ns"]
        rows = rows.astype(np.int64, copy=False)
        cap = self.used.shape[0]
        need = self.count + len(rows) if self.nk else 1
        if need > cap // 2 and cap < self.cap_max:
            while need > cap // 2 and cap < self.cap_max:
                cap *= 2
            self._rebuild(cap)
        self.state[_mavg.NEVENTS] = 0
        self.state[_mavg.REFUSE_MODE] = 0
        start = 0
        raised: list[Raised] = []
        while True:
            start = _mavg.update(start, rows, keycols, valcols, times, self.time_ns, self.keys, self.vals,
                                 self.tprev, self.used, self.limrow, self.over, self.lkeys, self.lrow,
                                 self.thr, self.thrmin, self.nover, self.state, *self._ev)  # fmt: skip
            if self.state[_mavg.NEVENTS]:
                raised += self._events()  # before a rebuild: slots move
            if start >= len(rows):
                return raised
            # full: grow if mem-m allows, else drop keys idle for longer than T, else refuse
            if self.used.shape[0] < self.cap_max:
                self._rebuild(self.used.shape[0] * 2)
                continue
            before = self.count
            self._rebuild(self.used.shape[0], int(times[rows[start]]), int(self.time_ns))
            if self.count > before - max(before // 64, 1):
                self.state[_mavg.REFUSE_MODE] = 1

    def _events(self) -> list[Raised]:
        nev = int(self.state[_mavg.NEVENTS])
        self.state[_mavg.NEVENTS] = 0
        slots, levels, counters = (e[:nev] for e in self._ev)
        return [Raised(tuple(int(w) for w in self.keys[s, : self.nk]), int(lv), int(c))
                for s, lv, c in zip(slots, levels, counters, strict=True)]  # fmt: skip

    def scan_under(self, now: int) -> list[Raised]:
        """Raise the underlimit levels of every key whose rate is now below a threshold."""
        if self.nover == len(self.spec.levels):
            return []
        nev = _mavg.scan_under(self.used, self.vals, self.tprev, self.limrow, self.over, self.thr,
                               self.nover, len(self.spec.levels), now, self.time_ns, *self._ev)  # fmt: skip
        self.state[_mavg.NEVENTS] = nev
        return self._events()

    def evict_idle(self, now: int, idle_s: float) -> None:
        """Drop keys idle for longer than idle_s (unless a level is raised on them or an
        underlimit's limits file lists them)."""
        self._rebuild(self.used.shape[0], now, int(idle_s * _NS))

    # ---- reading ---------------------------------------------------------------------------

    def slot(self, key: tuple[int, ...]) -> int:
        return int(_mavg.find(self.keys, self.used, np.array(key or (0,), np.uint64), self.nk))

    def rate(self, key: tuple[int, ...], now: int) -> np.ndarray:
        """Per counter, the key's rate decayed to ``now`` (units per second; 0 if unknown)."""
        s = self.slot(key)
        if s < 0:
            return np.zeros(self.na)
        dt = max(now - int(self.tprev[s]), 0)
        return self.vals[s] * math.exp(-dt / self.time_ns) * (_NS / self.time_ns)

    def thresholds(self, key: tuple[int, ...], level: int) -> np.ndarray:
        s = self.slot(key)
        row = int(self.limrow[s]) if s >= 0 else 0
        return self.thr[row, level]

    def lower(self, key: tuple[int, ...], level: int) -> None:
        """The level is back to normal for this key: it may be raised again."""
        s = self.slot(key)
        if s >= 0:
            self.over[s] &= ~np.uint32(1 << level)

    def snapshot(self, now: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(keys[m, nk], rates[m, na], limits row[m], raised bits[m]) of every key, decayed to now."""
        sel = self.used.view(np.bool_)
        dt = np.maximum(now - self.tprev[sel], 0)
        rates = self.vals[sel] * np.exp(-dt / self.time_ns)[:, None] * (_NS / self.time_ns)
        return self.keys[sel][:, : self.nk], rates, self.limrow[sel], self.over[sel]

    @property
    def memory_bytes(self) -> int:
        return self.used.shape[0] * self.slot_bytes
