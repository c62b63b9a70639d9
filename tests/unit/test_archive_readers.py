"""The archive as other tools read it: the recipes of docs/archive.md, run as written, with
pyarrow alone and with DuckDB's read_parquet(..., hive_partitioning=true), over a tree that two
appliances share and whose files have different columns."""

from __future__ import annotations

import calendar
import ipaddress
import pathlib
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from appliance.collector.export.archive import ArchiveSettings, FlowArchive
from appliance.collector.flowbatch import FlowBatch
from appliance.netflow.registry import REGISTRY

T0 = calendar.timegm((2026, 12, 8, 2, 0, 0))


def batch(times: list[int], dst: list[str], dst_port: list[int], nbytes: list[int], src_as: list[int] | None = None,
          src6: list[str] | None = None) -> FlowBatch:
    n = len(times)
    cols = {REGISTRY["recv_time_ns"].column: np.array([t * 10**9 for t in times], dtype=np.uint64),
            REGISTRY["src_addr"].column: np.full(n, int(ipaddress.IPv4Address("192.0.2.1")), dtype=np.uint64),
            REGISTRY["dst_addr"].column: np.array([int(ipaddress.IPv4Address(a)) for a in dst], dtype=np.uint64),
            REGISTRY["dst_port"].column: np.array(dst_port, dtype=np.uint64),
            REGISTRY["bytes"].column: np.array(nbytes, dtype=np.uint64)}
    if src_as is not None:
        cols[REGISTRY["src_as"].column] = np.array(src_as, dtype=np.uint64)
    cols6 = {}
    if src6 is not None:
        vals = [int(ipaddress.IPv6Address(a)) for a in src6]
        cols6[REGISTRY["src_addr6"].column6] = np.array([[v >> 64, v & (2**64 - 1)] for v in vals], dtype=np.uint64)
    return FlowBatch(n, cols, cols6)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    a = FlowArchive(ArchiveSettings(root, "edge1"), lambda i: "192.0.2.254")
    a.write(batch([T0, T0 + 1], ["10.1.1.1", "8.8.8.8"], [22, 53], [100, 200]))
    a.write(batch([T0 + 3700], ["10.2.2.2"], [22], [300], src_as=[64500]))  # next hour, one more column
    a.close()
    b = FlowArchive(ArchiveSettings(root, "edge2"), lambda i: "2001:db8::fe")
    b.write(batch([T0 + 5], ["10.9.9.9"], [443], [1000], src6=["2001:db8::1"]))
    b.close()
    return root


def test_duckdb_reads_the_tree_with_hive_partitions(tree: Path) -> None:
    sql = f"""
        SELECT concat_ws('.', dst_addr >> 24, (dst_addr >> 16) & 255, (dst_addr >> 8) & 255, dst_addr & 255) AS dst,
               appliance, sum(bytes) AS bytes
        FROM read_parquet('{tree}/**/*.parquet', hive_partitioning = true, union_by_name = true)
        WHERE date = '2026-12-08' AND hour = '02'
          AND dst_addr BETWEEN 167772160 AND 184549375
        GROUP BY ALL ORDER BY bytes DESC LIMIT 10"""
    assert duckdb.sql(sql).fetchall() == [("10.9.9.9", "edge2", 1000), ("10.1.1.1", "edge1", 100)]
    rows = duckdb.sql(f"""SELECT appliance, hour, src_as, src_addr6 = from_hex('20010db8000000000000000000000001')
                          FROM read_parquet('{tree}/**/*.parquet', hive_partitioning = true, union_by_name = true)
                          ORDER BY recv_time_ns""").fetchall()
    assert rows == [("edge1", "02", None, None), ("edge1", "02", None, None), ("edge2", "02", None, True),
                    ("edge1", "03", 64500, None)]


def test_pyarrow_alone_reads_the_tree_as_documented(tree: Path) -> None:
    files = sorted(pathlib.Path(tree).rglob("*.parquet"))
    parts = pa.schema([("appliance", pa.string()), ("date", pa.string()), ("hour", pa.string())])
    schema = pa.unify_schemas([pq.read_schema(f) for f in files] + [parts])
    table = ds.dataset([str(f) for f in files], schema=schema, format="parquet",
                       partitioning=ds.partitioning(parts, flavor="hive"),
                       partition_base_dir=str(tree)).to_table(filter=ds.field("dst_port") == 22)
    got = sorted(zip(table["appliance"].to_pylist(), table["hour"].to_pylist(), table["bytes"].to_pylist(),
                     table["src_as"].to_pylist(), table["exporter"].to_pylist()))
    assert got == [("edge1", "02", 100, None, "192.0.2.254"), ("edge1", "03", 300, 64500, "192.0.2.254")]
    one = pq.ParquetFile(files[0])
    assert one.schema_arrow.field("dst_addr").type == pa.uint32()
    assert one.metadata.metadata[b"mirrorflow.appliance"] in (b"edge1", b"edge2")
