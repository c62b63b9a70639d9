"""Monitoring objects: the ``mo-dir`` tree of xenoeye's ``mo.conf`` files.

```
mo-dir/
  mynet-ingress/mo.conf          object "mynet-ingress"
  mynet-ingress/tcp/mo.conf      object "mynet-ingress_tcp": sees only flows its parent matched
```

A mo.conf (JSON with comments):

```
{
  "filter": "dst net mynet",                   // "" or absent: every flow
  "debug": {"dump-flows": "none"},             // none | syslog | stdout | /path (per object)
  "fwm": [                                     // fixed windows → table <object>_<name>
    {"name": "saddr", "fields": ["packets desc", "octets desc", "src host"],
     "time": 30, "limit": 20, "extended": false, "create-index": true,
     "export": "prometheus"}                   // also on /metrics, the keys as labels (needs a limit)
  ],
  "mavg": [ ... ]                              // moving averages: see appliance.collector.config.averages
}
```

Every problem is collected (not just the first) as a `ConfigError` with file, line and
column, so ``mirrorflow check-config`` can list them all.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.collector.config._keys import XENOEYE_MO_KEYS, key_warnings
from appliance.collector.config.jsonc import read_text
from appliance.collector.config.jsonpos import Located, load_located
from appliance.collector.fields.spec import FieldError, FieldSpec, parse_field
from appliance.collector.filter import Filter, FilterError, IPLists, compile_filter
from appliance.errors import ConfigError, MirrorflowError

__all__ = [
    "ConfigErrors",
    "MonitoringObject",
    "WindowSpec",
    "Filter",
    "load_objects",
    "load_iplists",
    "compile_filter",
]

log = logging.getLogger("mirrorflow.objects")


class ConfigErrors(MirrorflowError):
    """Several configuration errors at once (each a `ConfigError` with file:line:column)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """One ``fwm`` entry of a mo.conf (validated)."""

    name: str
    fields: tuple[FieldSpec, ...]
    time: int = 30
    limit: int = 0
    extended: bool = False
    create_index: bool = True
    #: where the window goes besides the database: ("prometheus",) = /metrics, keys as labels
    export: tuple[str, ...] = ()

    @property
    def keys(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if not f.aggregate)

    @property
    def aggregates(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.aggregate)


_FWM_KEYS = {"name", "fields", "time", "limit", "extended", "create-index", "desc", "export"}
#: what an fwm entry's "export" may name
_EXPORTS = ("prometheus",)
_MO_KEYS = {"filter", "debug", "debug.dump-flows", "fwm", "mavg"}
_PG_MAX_IDENT = 63


@dataclass(slots=True)
class MonitoringObject:
    """One mo.conf, validated.

    Attributes:
        name: xenoeye's name: the path under mo-dir with '/' → '_' (the table prefix).
        conf: the mo.conf path.
        filter_text / filter: the expression and its compiled form.
        dump_flows: per-object flow dump target ("none" = off).
        windows: the ``fwm`` entries.
        mavg: the ``mavg`` entries as written.
        averages: the same, validated (`MavgSpec`).
        parent: the parent object's name, None at the top.
    """

    name: str
    conf: Path
    filter_text: str
    filter: Filter
    dump_flows: str = "none"
    windows: tuple[WindowSpec, ...] = ()
    mavg: tuple[dict, ...] = ()
    parent: str | None = None
    averages: tuple = ()  # MavgSpec, validated (appliance.collector.config.averages)
    children: list[MonitoringObject] = field(default_factory=list)

    def table(self, window: str) -> str:
        return f"{self.name}_{window}"


def _int(value: Any) -> int | None:
    """xenoeye accepts numbers written as strings ("time": "10")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip(), 0)
        except ValueError:
            return None
    return None


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("on", "off", "true", "false", "yes", "no"):
        return value.lower() in ("on", "true", "yes")
    if isinstance(value, int):
        return bool(value)
    return None


class _Checker:
    """Validates one mo.conf, collecting errors with positions."""

    def __init__(self, path: Path, loc: Located, errors: list[ConfigError], warnings: list[str]) -> None:
        self.path, self.loc, self.errors, self.warnings = path, loc, errors, warnings

    def error(self, where: tuple, message: str, key: bool = False) -> None:
        line, col = self.loc.where(where, key)
        self.errors.append(ConfigError(str(self.path), line, col, message))

    def warn(self, where: tuple, message: str, key: bool = False) -> None:
        line, col = self.loc.where(where, key)
        self.warnings.append(f"{self.path}:{line}:{col}: warning: {message}")

    def keys(self, at: tuple, doc: dict, known: set[str], what: str, xenoeye: dict[str, str] | None = None) -> None:
        """A warning for each key of `doc` Mirrorflow does not read (with a suggestion for a typo)."""
        for k, message in key_warnings(doc, known, what, xenoeye):
            self.warn((*at, k), message, key=True)

    def window(self, i: int, doc: Any, mo_name: str) -> WindowSpec | None:
        at: tuple = ("fwm", i)
        if not isinstance(doc, dict):
            self.error(at, 'each fwm entry must be an object like {"name": "total", "fields": ["octets"]}')
            return None
        self.keys(at, doc, _FWM_KEYS, "fwm key")
        ok = True
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            self.error((*at, "name") if "name" in doc else at,
                       'fwm entry needs "name": a non-empty string (the table is <object>_<name>)')
            ok = False
        elif not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            self.error((*at, "name"), f"window name {name!r}: use letters, digits, '_', '-', '.' only")
            ok = False
        elif len(f"{mo_name}_{name}".encode()) > _PG_MAX_IDENT:
            self.error((*at, "name"), f"table name {mo_name}_{name!r} is longer than PostgreSQL's "
                       f"{_PG_MAX_IDENT} bytes (it would be truncated): shorten the window or directory name")
            ok = False
        fields_doc = doc.get("fields")
        specs = []
        if not isinstance(fields_doc, list) or not fields_doc:
            self.error((*at, "fields") if "fields" in doc else at,
                       'fwm entry needs "fields": a list like ["octets desc", "src host"]')
            ok = False
        else:
            columns: dict[str, int] = {}
            for j, text in enumerate(fields_doc):
                try:
                    spec = parse_field(text)
                except FieldError as exc:
                    self.error((*at, "fields", j), str(exc))
                    ok = False
                    continue
                if spec.column.lower() in columns or spec.column.lower() == "time":
                    self.error((*at, "fields", j), f"{text!r} gives column {spec.column!r} twice "
                               "(or clashes with the time column): list each field once")
                    ok = False
                    continue
                columns[spec.column.lower()] = j
                specs.append(spec)
        time = 30
        if "time" in doc:
            t = _int(doc["time"])
            if t is None or t <= 0:
                self.error((*at, "time"), '"time" must be a positive number of seconds (default 30)')
                ok = False
            else:
                time = t
        limit = 0
        if "limit" in doc:
            lim = _int(doc["limit"])
            if lim is None or lim < 0:
                self.error((*at, "limit"), '"limit" must be a number ≥ 0 (0 = export every row)')
                ok = False
            else:
                limit = lim
        flags = {}
        for key, default in (("extended", False), ("create-index", True)):
            flags[key] = default
            if key in doc:
                v = _flag(doc[key])
                if v is None:
                    self.error((*at, key), f'"{key}" must be true or false')
                    ok = False
                else:
                    flags[key] = v
        export: tuple[str, ...] = ()
        if "export" in doc:
            ex = doc["export"]
            items = [ex] if isinstance(ex, str) else ex
            if not isinstance(items, list) or not all(isinstance(x, str) and x in _EXPORTS for x in items):
                self.error((*at, "export"), '"export" must be "prometheus" (the window on /metrics, its key fields '
                                            "as labels)")
                ok = False
            elif items and not limit:
                self.error((*at, "export"), '"export": "prometheus" needs a "limit" (every row is a label set '
                                            'Prometheus keeps): add e.g. "limit": 20')
                ok = False
            else:
                export = tuple(dict.fromkeys(items))
        if not ok:
            return None
        return WindowSpec(name, tuple(specs), time, limit, flags["extended"], flags["create-index"], export)


def _check_filter(chk: _Checker, text: str, iplists: Any) -> Filter | None:
    try:
        return compile_filter(text, iplists, str(chk.path))
    except FilterError as exc:
        line, col = chk.loc.where(("filter",))
        pos = int(getattr(exc, "position", 0) or 0)
        reason = getattr(exc, "reason", None) or str(exc)
        caret = str(exc).split(reason, 1)[-1] if reason in str(exc) else ""  # the line and '^' under it
        # the filter is one JSON string: its character i is at column + 1 + i
        chk.errors.append(ConfigError(str(chk.path), line, col + 1 + pos, f"filter: {reason}{caret}"))
        return None


def load_object(
    path: Path, name: str, iplists: Any, errors: list[ConfigError], warnings: list[str],
    parent: str | None = None,
) -> MonitoringObject | None:
    """Read and validate one mo.conf; problems go to ``errors``."""
    try:
        loc = load_located(read_text(path), str(path))
    except ConfigError as exc:
        message = str(exc).split(": ", 1)[-1]
        if message.startswith("invalid JSON"):
            message += " (mo.conf is JSON with // and /* */ comments)"
        errors.append(ConfigError(str(path), exc.line, exc.column, message))
        return None
    chk = _Checker(path, loc, errors, warnings)
    doc = loc.doc
    if not isinstance(doc, dict):
        chk.error((), 'mo.conf must be a JSON object like {"filter": "...", "fwm": [...]}')
        return None
    n_err = len(errors)
    chk.keys((), doc, _MO_KEYS, "key", XENOEYE_MO_KEYS)
    ftext = doc.get("filter", "")
    flt: Filter | None = None
    if not isinstance(ftext, str):
        chk.error(("filter",), '"filter" must be a string (an empty string matches every flow)')
    else:
        flt = _check_filter(chk, ftext, iplists)
    dump = "none"
    debug = doc.get("debug")
    if debug is not None:
        if not isinstance(debug, dict) or not isinstance(debug.get("dump-flows", "none"), str):
            chk.error(("debug",), '"debug" must be {"dump-flows": "none" | "syslog" | "stdout" | "/path"}')
        else:
            dump = debug.get("dump-flows", "none")
            chk.keys(("debug",), debug, {"dump-flows"}, "debug key")
    if "debug.dump-flows" in doc:
        if isinstance(doc["debug.dump-flows"], str):
            dump = doc["debug.dump-flows"]
        else:
            chk.error(("debug.dump-flows",), '"debug.dump-flows" must be "none", "syslog", "stdout" or a path')
    windows: list[WindowSpec] = []
    fwm = doc.get("fwm", [])
    if not isinstance(fwm, list):
        chk.error(("fwm",), '"fwm" must be a list of windows: [{"name": ..., "fields": [...]}]')
        fwm = []
    seen: dict[str, int] = {}
    for i, w in enumerate(fwm):
        wname = w.get("name") if isinstance(w, dict) else None
        if isinstance(wname, str) and wname in seen:
            chk.error(("fwm", i, "name"), f"window name {wname!r} is already used by fwm entry "
                      f"{seen[wname] + 1}: names must be unique within an object")
            continue
        if isinstance(wname, str):
            seen[wname] = i
        spec = chk.window(i, w, name)
        if spec is not None:
            windows.append(spec)
    mavg = doc.get("mavg", [])
    if not isinstance(mavg, list) or not all(isinstance(m, dict) for m in mavg):
        chk.error(("mavg",), '"mavg" must be a list of objects like {"name": "pps", "fields": [...]}')
        mavg = []
    from appliance.collector.config.averages import parse_averages

    averages = parse_averages(chk, mavg, name, path.parent)
    if len(errors) > n_err or flt is None:
        return None
    return MonitoringObject(name, path, ftext, flt, dump, tuple(windows), tuple(mavg), parent,
                            averages=averages)


def load_objects(
    mo_dir: Path | str, iplists: Any = None, warnings: list[str] | None = None
) -> list[MonitoringObject]:
    """Load the whole tree (depth first; parents before their children).

    Raises:
        ConfigErrors: every problem found, each with file, line and column.
    """
    root = Path(mo_dir)
    if iplists is None:
        iplists = IPLists.empty()
    warnings = [] if warnings is None else warnings
    errors: list[ConfigError] = []
    if not root.is_dir():
        raise ConfigErrors([ConfigError(str(root), 0, 0, "mo-dir is not a directory: create it or fix the path")])
    out: list[MonitoringObject] = []
    names: dict[str, Path] = {}

    def walk(d: Path, parent: MonitoringObject | None, parent_failed: bool) -> None:
        for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
            conf = sub / "mo.conf"
            rel = sub.relative_to(root).as_posix()
            if not conf.is_file():
                if any(sub.rglob("mo.conf")):
                    warnings.append(f"{sub}: warning: no mo.conf here, so the objects below are ignored")
                continue
            name = rel.replace("/", "_")
            if name in names:
                errors.append(ConfigError(str(conf), 1, 1, f"object name {name!r} is also the name of "
                                          f"{names[name]}: rename one of the directories"))
                continue
            names[name] = conf
            mo = load_object(conf, name, iplists, errors, warnings, parent.name if parent else None)
            if mo is not None and not parent_failed:
                out.append(mo)
                if parent is not None:
                    parent.children.append(mo)
            walk(sub, mo, parent_failed or mo is None)

    walk(root, None, False)
    from appliance.collector.config.averages import check_ext_references

    ext_errors, ext_warnings = check_ext_references(out)
    errors.extend(ext_errors)
    warnings.extend(ext_warnings)
    if errors:
        raise ConfigErrors(errors)
    return out


def load_iplists(path: Path | str | None) -> Any:
    """The IP lists (an empty set when no directory is configured or it does not exist)."""
    if path is None or not Path(path).is_dir():
        return IPLists.empty()
    return IPLists.load(path)


#: Something that consumes closed windows (the SQL-file writer, the PostgreSQL exporter).
WindowSink = Callable[[Any], None]
