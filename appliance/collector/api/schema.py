"""The live API's response schemas (JSON Schema, the subset `validate` checks) — version 1.

Served at ``/api/v1/schema``; docs/api.md describes the same with examples. Adding a key is
compatible; renaming or removing one needs ``/api/v2``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMAS", "validate", "SchemaError"]

INT = {"type": "integer", "minimum": 0}
NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}


def _opt(s: dict[str, Any]) -> dict[str, Any]:
    t = s["type"]
    return {**s, "type": [*(t if isinstance(t, list) else [t]), "null"]}


def obj(props: dict[str, Any], extra: bool = False, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": [k for k in props if k not in optional],
            "additionalProperties": extra}


def arr(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _rates(*names: str) -> dict[str, Any]:
    one = obj(dict.fromkeys(names, NUM))
    return obj({"1s": one, "1m": one, "5m": one})


META = obj({"seq": INT, "time": NUM})


def _envelope(payload: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return obj({"api_version": {"type": "integer", "enum": [1]}, "snapshot": META, **payload}, optional=optional)


STATUS = obj({
    "version": STR, "pid": INT, "mode": {"type": "string", "enum": ["live", "replay"]},
    "started_at": NUM, "uptime_s": NUM,
    "health": {"type": "string", "enum": ["ok", "warning", "degraded"]}, "problems": arr(STR),
    "loss": obj({"period_s": NUM, **{k: obj({"total": INT, "recent": INT, "last_at": _opt(NUM)})
                                     for k in ("spool_refused_windows", "sequence_gaps")}}),
    "listen": arr(STR), "rcvbuf_granted": _opt(INT),
    "totals": obj({"records": INT, "bytes": INT, "packets": INT, "datagrams": INT, "batches": INT}),
    "rates": _rates("records", "bps", "pps", "datagrams"),
    "socket_drops": _opt(INT), "truncated_datagrams": _opt(INT),
    "pending_sets": INT, "refused_exporter_packets": INT,
    "not_allowed": obj({"networks": _opt(arr(STR)), "datagrams": INT,
                        "sources": {"type": "object", "additionalProperties": INT}}),
    "exporters": INT, "objects": INT,
    "config": obj({"generation": INT, "loaded_at": _opt(NUM), "mo_dir": _opt(STR)}),
    "monitoring": {"type": ["object", "null"]},
    "archive": {"type": ["object", "null"]},  # FlowArchive + ArchiveRetention counters (docs/archive.md)
    # detached: names of the probe's interfaces that went away (health "degraded")
    "probe": obj({"available": BOOL, "stale": _opt(BOOL), "age_s": _opt(NUM), "detached": arr(STR)},
                 optional=("detached",)),
}, optional=("loss", "not_allowed"))

EXPORTER = obj({
    "address": STR, "role": {"type": "string", "enum": ["router", "probe"]},
    "datagrams": INT, "datagram_bytes": INT,
    "versions": obj({"v5": INT, "v9": INT, "ipfix": INT}),
    "records": INT, "options_records": INT, "flows": INT, "bytes": INT, "packets": INT,
    "templates": INT, "options_templates": INT,
    "template_cache": obj({"active": INT, "refused_quota": INT, "aged": INT, "evicted": INT, "table_full": INT}),
    "sequence": obj({"lost_packets": INT, "lost_flows": INT, "resets": INT}),
    "pending": obj({"sets": INT, "decoded": INT, "expired": INT}),
    "decode_errors": {"type": "object", "additionalProperties": INT},
    "decode_errors_total": INT,
    "sampling": arr(obj({"source_id": INT, "sampler_id": _opt(INT), "rate": INT})),
    "sampling_rate": INT,
    "rates": _rates("bps", "pps", "flows", "datagrams", "records", "errors"),
    "counters": {"type": "object", "additionalProperties": INT},
}, optional=("template_cache",))

OBJECT = obj({
    "name": STR, "parent": _opt(STR), "filter": STR, "windows": arr(STR), "mavg": arr(STR),
    "flows": INT, "bytes": INT, "packets": INT, "rates": _rates("bps", "pps", "flows"),
})

CELL = {"type": ["integer", "string", "null"]}
TABLE = obj({
    "table": STR, "start": INT, "end": INT, "period": INT,
    "columns": arr(obj({"name": STR, "type": STR})),
    "rows": arr(arr(CELL)), "other": {"type": ["array", "null"], "items": CELL},
    "flows": INT, "exported_at": NUM,
})

WINDOW = obj({
    "object": STR, "window": STR, "table": STR, "time": INT, "limit": INT, "extended": BOOL,
    "active": BOOL, "fields": arr(STR), "export": arr(STR), "last": {**TABLE, "type": ["object", "null"]},
}, optional=("export",))

FLOW = {"type": "object", "required": ["exporter", "source_id", "record_kind", "version", "recv_time_ns"],
        "properties": {"exporter": STR, "source_id": INT, "record_kind": STR, "version": INT,
                       "recv_time_ns": INT}}

_NUMS = arr({"type": ["number", "null"]})
LEVEL = obj({"level": STR, "direction": {"type": "string", "enum": ["over", "under"]}, "thresholds": _NUMS,
             "raised": BOOL})

#: one run of an alert's action or back2norm script (`actions.new_report`)
SCRIPT = obj({
    "script": STR,
    "status": {"type": "string", "enum": ["queued", "running", "exited", "timed_out", "not_started", "skipped"]},
    "exit": _opt({"type": "integer"}), "duration_s": _opt(NUM), "output": STR,
})
_SCRIPTS = obj({"action": {**SCRIPT, "type": ["object", "null"]}, "back2norm": {**SCRIPT, "type": ["object", "null"]}})

#: one active (or, with ended_at, past) alert: a raised level of one key
ALERT = obj({
    "mo": STR, "mavg": STR, "level": STR, "direction": {"type": "string", "enum": ["over", "under"]},
    "key": arr(STR), "counter": STR, "rate": NUM, "threshold": NUM, "rates": _NUMS, "thresholds": _NUMS,
    "since": NUM, "over_s": NUM, "back2norm_in_s": _opt(NUM), "notification_file": _opt(STR),
    "ext": arr(STR), "scripts": _SCRIPTS, "ended_at": NUM,
}, extra=True, optional=("ended_at", "scripts"))

#: one moving average (``mavg`` entry of an object): its table and its top keys
MAVG = obj({
    "mo": STR, "mavg": STR, "time": NUM, "fields": arr(STR), "counters": arr(STR),
    "keys": INT, "capacity": INT, "memory_bytes": INT, "mem_limit_bytes": INT, "refused_keys": INT,
    "evicted_keys": INT,
    "top": arr(obj({"key": arr(STR), "rates": arr(NUM), "levels": arr(LEVEL)})),
    "alerts": arr({**ALERT, "required": [k for k in ALERT["required"] if k not in ("mo", "mavg")]}),
    "ended": arr(obj({"level": STR, "direction": STR, "key": arr(STR), "since": NUM, "scripts": _SCRIPTS})),
}, extra=True, optional=("ended",))

PROBE = obj({"stats_file": _opt(STR), "available": BOOL, "age_s": _opt(NUM), "stale": _opt(BOOL),
             "error": _opt(STR), "stats": {"type": ["object", "null"]}, "detached": arr(STR)},
            optional=("detached",))

ERROR = obj({"api_version": {"type": "integer", "enum": [1]},
             "error": obj({"status": INT, "message": STR})})

# the archive's answers are queries, not snapshots: no snapshot envelope; times in ns since the epoch
_ARCHIVE = {"api_version": {"type": "integer", "enum": [1]}, "filter": STR, "since": _opt(INT), "until": _opt(INT),
            "limit": INT, "elapsed_s": NUM, "count": INT}
ARCHIVE_FLOWS = obj({**_ARCHIVE, "flows": arr({"type": "object"})})  # decode --format jsonl records
ARCHIVE_TOP = obj({**_ARCHIVE, "top": arr(STR), "by": {"type": "string", "enum": ["bytes", "packets", "flows"]},
                   "rows": arr({"type": "object"}),  # the key fields, then bytes, packets, flows
                   "totals": obj({"bytes": INT, "packets": INT, "flows": INT})})

SCHEMAS: dict[str, dict[str, Any]] = {
    "/api/v1/status": _envelope({"status": STATUS}),
    "/api/v1/exporters": _envelope({"exporters": arr(EXPORTER), "probe": PROBE}),
    "/api/v1/objects": _envelope({"objects": arr(OBJECT)}),
    "/api/v1/windows": _envelope({"windows": arr(WINDOW)}),
    "/api/v1/windows/{object}/{window}": _envelope({"window": WINDOW}),
    "/api/v1/flows": _envelope({"object": _opt(STR), "filter": _opt(STR), "limit": INT, "count": INT,
                                "offered": INT, "flows": arr(FLOW)}, optional=("filter",)),
    "/api/v1/mavg": _envelope({"mavg": arr(MAVG)}),
    "/api/v1/alerts": _envelope({"active": arr(ALERT), "past": arr(ALERT)}),
    "/api/v1/probe": _envelope({"probe": PROBE}),
    "/api/v1/archive/flows": ARCHIVE_FLOWS,
    "/api/v1/archive/top": ARCHIVE_TOP,
    "error": ERROR,
}


class SchemaError(ValueError):
    """A document that does not match its schema; the message names the path."""


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is(value: Any, t: str) -> bool:
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[t])


def validate(doc: Any, schema: dict[str, Any], path: str = "$") -> None:
    """Check ``doc`` against the JSON Schema subset used here (type, enum, minimum,
    properties, required, additionalProperties, items).

    Raises:
        SchemaError: the first mismatch, with its JSON path.
    """
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_is(doc, x) for x in types):
            raise SchemaError(f"{path}: expected {'/'.join(types)}, got {type(doc).__name__}: {doc!r:.80}")
    if "enum" in schema and doc not in schema["enum"]:
        raise SchemaError(f"{path}: {doc!r} not one of {schema['enum']}")
    if "minimum" in schema and isinstance(doc, (int, float)) and doc < schema["minimum"]:
        raise SchemaError(f"{path}: {doc} < {schema['minimum']}")
    if isinstance(doc, dict):
        props = schema.get("properties", {})
        for k in schema.get("required", []):
            if k not in doc:
                raise SchemaError(f"{path}: missing key {k!r}")
        extra = schema.get("additionalProperties", True)
        for k, v in doc.items():
            if k in props:
                validate(v, props[k], f"{path}.{k}")
            elif extra is False:
                raise SchemaError(f"{path}: unexpected key {k!r}")
            elif isinstance(extra, dict):
                validate(v, extra, f"{path}.{k}")
    if isinstance(doc, list) and "items" in schema:
        for i, v in enumerate(doc):
            validate(v, schema["items"], f"{path}[{i}]")
