"""The flow archive: every accepted flow record as Parquet, one file per rotation interval.

Layout (Hive partitions, so DuckDB, Spark, Trino and ClickHouse read it as it is)::

    DIR/appliance=NAME/date=YYYY-MM-DD/hour=HH/flows-YYYYmmddTHHMMSSZ-PID-SEQ.parquet

A file holds the flows whose receive time (``recv_time_ns``; the packet's time on a
``--pcap`` replay) falls in its interval; intervals divide the hour, so a file never
crosses a partition. It is written under a temporary name (``.flows-….parquet.tmp``,
invisible to ``*.parquet`` globs), fsynced and renamed when complete. A temporary file
left behind by a crash (kill -9) is, at the next start, renamed when its footer is
intact, else set aside as ``….parquet.partial`` and counted (``partial_set_aside``).

Columns: the registry fields the batch carries, by their registry names, plus
``exporter`` (the exporter's address as text). IPv4 addresses are ``uint32`` (the integer
of the address: range tests are integer compares, the fastest filter DuckDB runs),
IPv6 addresses ``fixed_size_binary(16)`` in network byte order (compares as bytes =
as addresses; ClickHouse's IPv6 is the same), MAC addresses ``uint64``, numbers the
unsigned type of their registry size (widened to uint64 in a file where a value does
not fit), strings UTF-8 text. Options records (router metadata) are not flows and are
not archived; collector-internal columns (exporter_index, template_slot, record_offset)
neither. Per file the schema is the union of the columns seen; a column appearing
mid-file closes the file early. See docs/archive.md.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from appliance.collector.export.columns import (
    INTERNAL_COLUMNS,
    NARROW,
    Columns,
    arrow_type,
    batch_columns,
    columns_table,
    concat_columns,
    flows_table,
    ipv6_array,
)
from appliance.collector.flowbatch import FlowBatch
from appliance.errors import ConfigError
from appliance.netflow.registry import REGISTRY, FieldType

__all__ = ["ArchiveSettings", "FlowArchive", "archive_settings", "flows_table", "batch_columns", "columns_table",
           "concat_columns", "arrow_type",
           "INTERNAL_COLUMNS", "DEFAULT_ARCHIVE"]

log = logging.getLogger("mirrorflow.archive")

DEFAULT_ARCHIVE = Path("/var/lib/mirrorflow/archive")
#: collector bookkeeping, meaningless outside the process
_ROW_GROUP = 131_072  # rows buffered before a row group is written (memory bound)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_FILE_RE = re.compile(r"^flows-(\d{8}T\d{6}Z)-(\d+)-(\d+)\.parquet$")


# ---- settings ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchiveSettings:
    """Where and how the archive is written.

    Attributes:
        directory: the archive's root (shared by several appliances: each writes under
            ``appliance=NAME``).
        appliance: this appliance's name (default: the host name).
        rotate_s: seconds per file; divides an hour (default 60).
        max_age_h: files older than this are removed (0 = no age limit).
        max_size_mb: this appliance's files are kept under this total (0 = no limit).
        min_free_pct: oldest files are removed while the file system has less free space.
        compression_level: zstd level.
    """

    directory: Path
    appliance: str = ""
    rotate_s: int = 60
    max_age_h: float = 0.0
    max_size_mb: float = 0.0
    min_free_pct: float = 10.0
    compression_level: int = 1

    def __post_init__(self) -> None:
        if not self.appliance:
            object.__setattr__(self, "appliance", _host_name())


def _host_name() -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0]) or "mirrorflow"
    return name[:63]


def archive_settings(raw: dict, source: str, directory: Path | None = None) -> ArchiveSettings | None:
    """The ``archive`` section of the collector config, ``--archive DIR`` overriding its dir.

    ::

        "archive": {"dir": "/var/lib/mirrorflow/archive", "appliance": "edge1",
                    "rotate": 60, "max-age-hours": 720, "max-size-mb": 50000,
                    "min-free-percent": 10}

    Returns:
        None when neither the section nor `directory` asks for an archive.

    Raises:
        ConfigError: a key has a wrong type or value.
    """
    sec = raw.get("archive")
    if sec is None and directory is None:
        return None
    if sec is None:
        sec = {}
    if not isinstance(sec, dict):
        raise ConfigError(source, 0, 0, 'archive must be an object like {"dir": "/var/lib/mirrorflow/archive"}')
    known = {"dir", "appliance", "rotate", "max-age-hours", "max-size-mb", "min-free-percent", "zstd-level"}
    for key in sec:
        if key not in known:
            raise ConfigError(source, 0, 0, f"archive: unknown key {key!r} (known: {', '.join(sorted(known))})")
    d = directory
    if d is None:
        if not isinstance(sec.get("dir"), str) or not sec["dir"]:
            raise ConfigError(source, 0, 0, 'archive: "dir" must be a directory path')
        d = Path(sec["dir"])
    name = sec.get("appliance", "")
    if not isinstance(name, str) or name and not _NAME_RE.match(name):
        raise ConfigError(source, 0, 0, "archive: appliance must be 1-63 letters, digits, '.', '_' or '-'")

    def number(key: str, default: float, lo: float, hi: float) -> float:
        v = sec.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise ConfigError(source, 0, 0, f"archive: {key} must be a number from {lo:g} to {hi:g}")
        return float(v)

    rotate = number("rotate", 60, 1, 3600)
    if rotate != int(rotate) or 3600 % int(rotate):
        raise ConfigError(source, 0, 0, f"archive: rotate {rotate:g} must divide an hour "
                                        "(e.g. 10, 60, 300, 600, 3600 seconds)")
    return ArchiveSettings(d, name, int(rotate), number("max-age-hours", 0, 0, 1e6),
                           number("max-size-mb", 0, 0, 1e12), number("min-free-percent", 10, 0, 99),
                           int(number("zstd-level", 1, 1, 22)))


#: time columns: delta-encoded (they grow slowly), never dictionary-encoded
_TIME_TYPES = (FieldType.TIME_UPTIME_MS, FieldType.TIME_SEC, FieldType.TIME_MS, FieldType.TIME_NTP_US,
               FieldType.TIME_NTP_NS, FieldType.TIME_DELTA_US)
_TIME_VIRTUAL = frozenset({"recv_time_ns", "time_start_ms", "time_end_ms"})
#: high-cardinality columns where a dictionary only costs time (it is abandoned per page anyway)
_NO_DICTIONARY_TYPES = (FieldType.IPV4, FieldType.IPV6, FieldType.MAC, FieldType.FLOAT)
_DICTIONARY_ADDRESSES = frozenset({"dev_ip", "dev_ip6", "next_hop", "next_hop6", "bgp_next_hop", "bgp_next_hop6"})


#: columns with min/max statistics (what queries select on: row groups outside a range are skipped);
#: statistics on every column cost ~10 % of the encoding time for no use
_STATISTICS = frozenset({"exporter", "recv_time_ns", "time_start_ms", "time_end_ms", "src_addr", "dst_addr",
                         "src_addr6", "dst_addr6", "src_port", "dst_port", "proto", "dev_ip", "dev_ip6"})


def _encodings(schema: pa.Schema) -> tuple[list[str], dict[str, str]]:
    """Per column: dictionary for the repetitive ones, delta for times, plain for the rest."""
    dictionary: list[str] = []
    delta: dict[str, str] = {}
    for f in schema:
        if f.name == "exporter":
            dictionary.append(f.name)
            continue
        reg = REGISTRY[f.name]
        if (reg.ftype in _TIME_TYPES or f.name in _TIME_VIRTUAL) and pa.types.is_integer(f.type):
            delta[f.name] = "DELTA_BINARY_PACKED"
        elif reg.counter or (reg.ftype in _NO_DICTIONARY_TYPES and f.name not in _DICTIONARY_ADDRESSES):
            continue
        else:
            dictionary.append(f.name)
    return dictionary, delta


# ---- the writer ----------------------------------------------------------------------------


def _merge_schemas(a: pa.Schema, b: pa.Schema) -> pa.Schema:
    """Union of columns in the order first seen; a column typed differently becomes uint64."""
    out = {f.name: f for f in a}
    for f in b:
        if f.name not in out:
            out[f.name] = f
        elif out[f.name].type != f.type:
            out[f.name] = pa.field(f.name, pa.uint64(), nullable=False)
    return pa.schema(list(out.values()))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns: missing ones zero (as absent fields compare), types cast."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            c = table[f.name]
            cols.append(c if c.type == f.type else c.cast(f.type))
        elif pa.types.is_fixed_size_binary(f.type):
            cols.append(ipv6_array(np.zeros((table.num_rows, 2), dtype=np.uint64)))
        elif pa.types.is_string(f.type) or pa.types.is_binary(f.type):
            cols.append(pa.repeat(pa.scalar("" if pa.types.is_string(f.type) else b"", f.type), table.num_rows))
        else:
            cols.append(pa.array(np.zeros(table.num_rows, dtype=NARROW.get(f.type, np.uint64))).cast(f.type))
    return pa.Table.from_arrays(cols, schema=schema)


class _OpenFile:
    """One file being written: its temporary and final paths, its writer and its lock."""

    def __init__(self, tmp: Path, final: Path, schema: pa.Schema, level: int, meta: dict[bytes, bytes]) -> None:
        self.tmp, self.final, self.rows = tmp, final, 0
        tmp.parent.mkdir(parents=True, exist_ok=True)
        # a lock held while the file is written: recovery at start leaves a live writer's file alone
        self.lock_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        dictionary, delta = _encodings(schema)
        try:
            self.writer = pq.ParquetWriter(str(tmp), schema.with_metadata(meta), compression="zstd",
                                           compression_level=level, use_dictionary=dictionary,
                                           column_encoding=delta,
                                           write_statistics=[f.name for f in schema if f.name in _STATISTICS])
        except BaseException:
            os.close(self.lock_fd)
            raise
        self.schema = schema

    def close(self) -> None:
        try:
            self.writer.close()
            os.fsync(self.lock_fd)
            os.rename(self.tmp, self.final)
        finally:
            os.close(self.lock_fd)

    def abandon(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass
        try:
            self.tmp.unlink()
        except OSError:
            pass
        os.close(self.lock_fd)


class FlowArchive:
    """The archive sink: `write` takes every decoded batch; files rotate by the flows' time.

    Args:
        settings: directory, appliance name, rotation and retention.
        exporter_address: the decoder's exporter index → address text.
        retention: called after each closed file (the retention pass), or None.
        on_closed: told of every file made visible (its path and size), or None.
    """

    def __init__(self, settings: ArchiveSettings, exporter_address: Callable[[int], str],
                 retention: Callable[[], object] | None = None,
                 on_closed: Callable[[Path, int], None] | None = None) -> None:
        self.settings = settings
        self._on_closed = on_closed
        self.root = settings.directory / f"appliance={settings.appliance}"
        self._address = exporter_address
        self._retention = retention
        self._interval_ns = settings.rotate_s * 1_000_000_000
        self._buffer: list[tuple[Columns, int]] = []
        self._buffered = 0
        self._interval: int | None = None  # interval number of the buffered rows / open file
        self._file: _OpenFile | None = None
        self._seq = 0
        self._failing = False
        self.counters = {"flows": 0, "files": 0, "bytes": 0, "flows_lost": 0, "write_errors": 0,
                         "early_rotations": 0, "partial_recovered": 0, "partial_set_aside": 0}
        self.last_error = ""
        self.recover()

    # ---- the sink -------------------------------------------------------------------------

    def write(self, batch: FlowBatch) -> None:
        """Archive the flow records of one batch (split where it crosses a rotation boundary)."""
        if batch.n == 0:
            return
        k = batch["recv_time_ns"] // np.uint64(self._interval_ns)
        if k[0] == k[-1] and (len(k) < 3 or (k == k[0]).all()):
            self._append(int(k[0]), batch_columns(batch))
            return
        cuts = np.flatnonzero(k[1:] != k[:-1]) + 1
        bounds = [0, *cuts.tolist(), batch.n]
        for a, b in zip(bounds[:-1], bounds[1:]):
            self._append(int(k[a]), batch_columns(batch, slice(a, b)))

    __call__ = write

    def _append(self, interval: int, part: tuple[Columns, int]) -> None:
        if part[1] == 0:
            return
        if self._interval is not None and interval != self._interval:
            self._finish()
        self._interval = interval
        self._buffer.append(part)
        self._buffered += part[1]
        if self._buffered >= _ROW_GROUP:
            self._flush()

    def tick(self, now_ns: int | None = None) -> None:
        """Live: close the file once the wall clock has left its interval (quiet exporters)."""
        if self._interval is None:
            return
        now = time.time_ns() if now_ns is None else now_ns
        if now // self._interval_ns > self._interval:
            self._finish()

    def rotate(self) -> None:
        """Close the open file now (SIGHUP); the next flows start a new one."""
        self._finish()

    def close(self) -> None:
        """Write what is buffered and close the file (SIGTERM, end of a replay)."""
        self._finish()

    # ---- files ----------------------------------------------------------------------------

    def _paths(self, interval: int) -> tuple[Path, Path]:
        start = interval * self.settings.rotate_s
        t = time.gmtime(start)
        part = self.root / time.strftime("date=%Y-%m-%d", t) / time.strftime("hour=%H", t)
        self._seq += 1
        name = f"flows-{time.strftime('%Y%m%dT%H%M%SZ', t)}-{os.getpid()}-{self._seq}.parquet"
        return part / f".{name}.tmp", part / name

    def _flush(self) -> None:
        """Write the buffered rows as one row group (opening or re-opening the file as needed)."""
        if not self._buffer:
            return
        parts, rows = self._buffer, self._buffered
        self._buffer, self._buffered = [], 0
        assert self._interval is not None
        try:
            table = columns_table(*concat_columns(parts), self._address)
            schema = table.schema
            if self._file is not None and not self._file.schema.equals(schema):
                merged = _merge_schemas(self._file.schema, schema)
                if not merged.equals(self._file.schema):
                    # a new column (a new template) or a wider type: this file ends here
                    self.counters["early_rotations"] += 1
                    self._close_file()
                schema = merged
            if self._file is None:
                tmp, final = self._paths(self._interval)
                meta = {b"mirrorflow.appliance": self.settings.appliance.encode(),
                        b"mirrorflow.rotate_s": str(self.settings.rotate_s).encode()}
                self._file = _OpenFile(tmp, final, schema, self.settings.compression_level, meta)
            if not table.schema.equals(self._file.schema):
                table = _conform(table, self._file.schema)
            self._file.writer.write_table(table, row_group_size=max(1, table.num_rows))
            self._file.rows += rows
            self.counters["flows"] += rows
            if self._failing:
                log.info("archive: writing again to %s", self.root)
                self._failing = False
        except (OSError, pa.ArrowException) as exc:
            self._fail(exc, rows)

    def _fail(self, exc: BaseException, rows: int) -> None:
        """A write failed (disk full, permissions): the open file is given up, the collector goes on."""
        lost = rows + (self._file.rows if self._file is not None else 0)
        if self._file is not None:
            self.counters["flows"] -= self._file.rows
            self._file.abandon()
            self._file = None
        self.counters["flows_lost"] += lost
        self.counters["write_errors"] += 1
        self.last_error = str(exc)
        if not self._failing or getattr(exc, "errno", None) != errno.ENOSPC:
            log.error("archive: cannot write under %s: %s (%d flows not archived; the collector goes on)",
                      self.root, exc, lost)
        self._failing = True

    def _close_file(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        try:
            f.close()
        except (OSError, pa.ArrowException) as exc:
            self.counters["flows"] -= f.rows
            self._file = f
            self._fail(exc, 0)
            return
        self.counters["files"] += 1
        try:
            size = f.final.stat().st_size
        except OSError:
            return
        self.counters["bytes"] += size
        if self._on_closed is not None:
            self._on_closed(f.final, size)

    def _finish(self) -> None:
        """Flush, close the open file, run the retention pass."""
        self._flush()
        self._close_file()
        self._interval = None
        if self._retention is not None:
            try:
                self._retention()
            except OSError as exc:
                log.error("archive retention: %s", exc)

    # ---- after a crash --------------------------------------------------------------------

    def recover(self) -> None:
        """Temporary files of a killed writer: renamed if complete, else set aside (counted)."""
        if not self.root.is_dir():
            return
        for tmp in sorted(self.root.glob("date=*/hour=*/.flows-*.parquet.tmp")):
            try:
                fd = os.open(tmp, os.O_RDONLY)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # another writer (a worker of this appliance) is still writing it
                final = tmp.with_name(tmp.name[1 : -len(".tmp")])
                try:
                    pq.ParquetFile(tmp).metadata  # noqa: B018 - reading the footer is the check
                except (OSError, pa.ArrowException):
                    os.rename(tmp, final.with_name(final.name + ".partial"))
                    self.counters["partial_set_aside"] += 1
                    log.warning("archive: %s was left incomplete by a crash; set aside as %s.partial",
                                tmp, final.name)
                else:
                    os.rename(tmp, final)
                    self.counters["partial_recovered"] += 1
                    log.info("archive: %s was complete; renamed to %s", tmp, final.name)
            except OSError as exc:
                log.error("archive: cannot recover %s: %s", tmp, exc)
            finally:
                os.close(fd)

    # ---- statistics -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.counters)
        out["directory"] = str(self.root)
        out["buffered"] = self._buffered
        out["open_file_rows"] = self._file.rows if self._file is not None else 0
        out["failing"] = self._failing
        if self.last_error:
            out["last_error"] = self.last_error
        return out
