"""The flow archive's writer: what goes in comes back field by field, files rotate by the flows'
time, a crash leaves nothing a reader trips over, a full disk costs only the archive.

The oracle is the FlowBatch itself read record by record in plain Python (`FlowBatch.text`,
the integer columns, the exporter address the decoder reports); the files are read back
with pyarrow alone.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from appliance.collector.decode.decoder import Decoder
from appliance.collector.export.archive import (
    INTERNAL_COLUMNS,
    ArchiveSettings,
    FlowArchive,
    archive_settings,
    arrow_type,
)
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.receive.pcapfile import read_pcap
from appliance.errors import ConfigError
from appliance.netflow.registry import REGISTRY, FieldType

NS = 1_000_000_000


def canonical_captures(corpus: Path) -> list[Path]:
    with open(corpus / "MANIFEST.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [corpus / r["file"] for r in rows if r["canonical"] == "yes" and r["file"].startswith("netflow/")]


def archived(root: Path) -> list[pa.Table]:
    """Every complete file, in the order this process wrote them (its sequence numbers)."""
    files = sorted(root.rglob("*.parquet"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return [pq.ParquetFile(f).read() for f in files]  # (read_table would add the partition columns)


def expected_value(batch: FlowBatch, name: str, i: int) -> object:
    f = REGISTRY[name]
    if f.ftype == FieldType.IPV6:
        hi, lo = batch[name][i]
        return (int(hi) << 64 | int(lo)).to_bytes(16, "big")
    if f.ftype == FieldType.STRING:
        return batch.text(name, i)
    if f.ftype == FieldType.BYTES:
        return batch.octets(name, i)
    return int(batch[name][i])


def got_value(table: pa.Table, name: str, i: int) -> object:
    v = table[name][i].as_py()
    return v


def test_every_corpus_record_comes_back_field_by_field(corpus_dir: Path, tmp_path: Path) -> None:
    decoder = Decoder()
    archive = FlowArchive(ArchiveSettings(tmp_path, "edge1", rotate_s=60), decoder.exporter_address)
    expected: list[dict[str, object]] = []
    for path in canonical_captures(corpus_dir):
        for packets in read_pcap(path):
            for batch in decoder.decode(packets):
                for i in range(batch.n):
                    if int(batch["record_kind"][i]) == 2:
                        continue
                    rec = {n: expected_value(batch, n, i) for n in batch.names() if n not in INTERNAL_COLUMNS}
                    rec["exporter"] = decoder.exporter_address(int(batch["exporter_index"][i]))
                    expected.append(rec)
                archive.write(batch)
    archive.close()
    assert archive.counters["flows"] == len(expected) > 3000
    tables = archived(tmp_path / "appliance=edge1")
    assert sum(t.num_rows for t in tables) == len(expected)
    k = 0
    for t in tables:
        for i in range(t.num_rows):
            rec = expected[k]
            k += 1
            for name, value in rec.items():
                assert got_value(t, name, i) == value, (k, name)
            extra = set(t.column_names) - set(rec)
            for name in extra:  # columns of other batches in the same file: zero / empty
                assert got_value(t, name, i) in (0, "", b"", b"\0" * 16), (k, name)


def synthetic(times_s: list[float], **cols: list[int]) -> FlowBatch:
    n = len(times_s)
    reg = REGISTRY
    c = {reg["recv_time_ns"].column: np.array([int(t * NS) for t in times_s], dtype=np.uint64)}
    for name, values in cols.items():
        c[reg[name].column] = np.array(values, dtype=np.uint64)
    c.setdefault(reg["exporter_index"].column, np.zeros(n, dtype=np.uint64))
    return FlowBatch(n, c, {})


def test_files_follow_the_flows_time_across_intervals_and_hours(tmp_path: Path) -> None:
    base = 1_796_000_000 // 3600 * 3600 + 3600 - 70  # 70 s before an hour boundary
    a = FlowArchive(ArchiveSettings(tmp_path, "a", rotate_s=60), lambda i: "192.0.2.1")
    a.write(synthetic([base + 0.5, base + 1, base + 11, base + 69.9, base + 70, base + 71],
                      bytes=[1, 2, 3, 4, 5, 6]))
    a.close()
    import time

    def part(t: int) -> str:
        return time.strftime("date=%Y-%m-%d/hour=%H", time.gmtime(t))

    root = tmp_path / "appliance=a"
    got = sorted((str(f.parent.relative_to(root)), pq.read_table(f)["bytes"].to_pylist())
                 for f in root.rglob("*.parquet"))
    assert got == sorted([(part(base), [1, 2]), (part(base), [3, 4]), (part(base + 70), [5, 6])])
    assert part(base) != part(base + 70)
    assert a.counters == a.counters | {"flows": 6, "files": 3}


def test_a_new_column_closes_the_file_and_readers_see_the_union(tmp_path: Path) -> None:
    a = FlowArchive(ArchiveSettings(tmp_path, "a"), lambda i: "192.0.2.1")
    a.write(synthetic([100.0, 100.1], bytes=[1, 2]))
    a._flush()  # a row group on disk, then a batch with one more column
    a.write(synthetic([100.2], bytes=[3], src_as=[64500]))
    a.close()
    assert a.counters["early_rotations"] == 1 and a.counters["files"] == 2
    files = sorted(tmp_path.rglob("*.parquet"))
    parts = pa.schema([("appliance", pa.string()), ("date", pa.string()), ("hour", pa.string())])
    union = pa.unify_schemas([pq.read_schema(f) for f in files] + [parts])  # else: the first file's
    t = ds.dataset(files, schema=union, format="parquet", partitioning=ds.partitioning(parts, flavor="hive"),
                   partition_base_dir=str(tmp_path)).to_table()
    rows = sorted(zip(t["bytes"].to_pylist(), t["src_as"].to_pylist(), t["appliance"].to_pylist()))
    assert rows == [(1, None, "a"), (2, None, "a"), (3, 64500, "a")]


def test_numbers_wider_than_their_field_widen_the_column(tmp_path: Path) -> None:
    assert arrow_type("in_if") == pa.uint32()
    a = FlowArchive(ArchiveSettings(tmp_path, "a"), lambda i: "192.0.2.1")
    a.write(synthetic([5.0, 5.0], in_if=[7, 1 << 40]))
    a.close()
    (f,) = (tmp_path / "appliance=a").rglob("*.parquet")
    t = pq.read_table(f)
    assert t.schema.field("in_if").type == pa.uint64() and t["in_if"].to_pylist() == [7, 1 << 40]


def test_options_records_are_not_flows(tmp_path: Path) -> None:
    a = FlowArchive(ArchiveSettings(tmp_path, "a"), lambda i: "192.0.2.1")
    a.write(synthetic([5.0, 5.0, 5.0], record_kind=[1, 2, 1], bytes=[10, 20, 30]))
    a.close()
    (f,) = (tmp_path / "appliance=a").rglob("*.parquet")
    assert pq.read_table(f)["bytes"].to_pylist() == [10, 30]


def test_sighup_rotation_and_quiet_intervals_close_the_file(tmp_path: Path) -> None:
    a = FlowArchive(ArchiveSettings(tmp_path, "a", rotate_s=60), lambda i: "192.0.2.1")
    a.write(synthetic([120.0], bytes=[1]))
    a.tick(now_ns=150 * NS)  # still in the interval: stays open
    assert not list(tmp_path.rglob("*.parquet"))
    a.tick(now_ns=180 * NS)
    assert len(list(tmp_path.rglob("*.parquet"))) == 1
    a.write(synthetic([181.0], bytes=[2]))
    a.rotate()
    assert len(list(tmp_path.rglob("*.parquet"))) == 2 and not list(tmp_path.rglob(".*.tmp"))


WRITER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from pathlib import Path
    from appliance.collector.export.archive import ArchiveSettings, FlowArchive
    from appliance.collector.flowbatch import FlowBatch
    from appliance.netflow.registry import REGISTRY
    a = FlowArchive(ArchiveSettings(Path(sys.argv[1]), "a"), lambda i: "192.0.2.1")
    n = 1000
    cols = {REGISTRY["recv_time_ns"].column: np.full(n, 10**18, dtype=np.uint64),
            REGISTRY["bytes"].column: np.arange(n, dtype=np.uint64),
            REGISTRY["exporter_index"].column: np.zeros(n, dtype=np.uint64)}
    a.write(FlowBatch(n, cols, {}))
    a._flush()              # a row group written, no footer yet
    if sys.argv[2] == "closed":
        a._file.writer.close()  # footer written, killed before the rename
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("state", ["open", "closed"])
def test_kill_9_mid_write_then_restart(tmp_path: Path, state: str) -> None:
    proc = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), state], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL and "ready" in proc.stdout, proc.stderr
    assert len(list(tmp_path.rglob(".flows-*.parquet.tmp"))) == 1
    a = FlowArchive(ArchiveSettings(tmp_path, "a"), lambda i: "192.0.2.1")
    assert not list(tmp_path.rglob("*.tmp"))
    if state == "open":
        assert a.counters["partial_set_aside"] == 1 and a.counters["partial_recovered"] == 0
        assert len(list(tmp_path.rglob("*.parquet.partial"))) == 1 and not list(tmp_path.rglob("*.parquet"))
    else:
        assert a.counters["partial_recovered"] == 1
        (f,) = tmp_path.rglob("*.parquet")
        assert pq.read_table(f)["bytes"].to_pylist() == list(range(1000))
    import duckdb

    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{tmp_path}/**/*.parquet', hive_partitioning=true)"
                   if state == "closed" else "SELECT 0").fetchone()[0]
    assert n == (1000 if state == "closed" else 0)


def test_a_live_writers_temporary_file_is_left_alone(tmp_path: Path) -> None:
    a = FlowArchive(ArchiveSettings(tmp_path, "a"), lambda i: "192.0.2.1")
    a.write(synthetic([5.0], bytes=[1]))
    a._flush()
    b = FlowArchive(ArchiveSettings(tmp_path, "a"), lambda i: "192.0.2.1")  # a second worker starts
    assert b.counters["partial_set_aside"] == 0 and len(list(tmp_path.rglob(".*.tmp"))) == 1
    a.close()
    assert len(list(tmp_path.rglob("*.parquet"))) == 1


def test_write_errors_are_counted_and_the_collector_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "appliance=a"
    blocker.write_text("a file where the appliance's directory should be")
    a = FlowArchive(ArchiveSettings(tmp_path, "a"), lambda i: "192.0.2.1")
    a.write(synthetic([5.0, 5.0], bytes=[1, 2]))
    a.close()
    s = a.stats()
    assert (s["flows"], s["flows_lost"], s["write_errors"], s["failing"]) == (0, 2, 1, True)
    blocker.unlink()
    a.write(synthetic([65.0], bytes=[3]))
    a.close()
    assert a.stats()["flows"] == 1 and not a.stats()["failing"]


def test_archive_section_of_the_config() -> None:
    s = archive_settings({"archive": {"dir": "/x", "appliance": "edge-1", "rotate": 300,
                                      "max-age-hours": 24, "max-size-mb": 100}}, "c.conf")
    assert s is not None and (s.directory, s.appliance, s.rotate_s, s.max_age_h, s.max_size_mb, s.min_free_pct) == (
        Path("/x"), "edge-1", 300, 24.0, 100.0, 10.0)
    assert archive_settings({}, "c.conf") is None
    cli = archive_settings({}, "c.conf", Path("/y"))
    assert cli is not None and cli.directory == Path("/y") and cli.rotate_s == 60 and cli.appliance
    for bad, words in (({"dir": "/x", "rotate": 7}, "divide an hour"), ({"dir": "/x", "appliance": "a/b"}, "appliance"),
                       ({"dir": "/x", "rotat": 60}, "unknown key"), ({}, '"dir"'),
                       ({"dir": "/x", "max-size-mb": -1}, "max-size-mb")):
        with pytest.raises(ConfigError, match=words):
            archive_settings({"archive": bad}, "c.conf")
