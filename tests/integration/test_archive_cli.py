"""``mirrorflow collect --pcap … --archive DIR`` then ``mirrorflow flows -R DIR``: every record that
``mirrorflow decode`` reads comes back from the archive field by field; top-N, filters and time
ranges give what a plain-Python recount of decode's records gives.

The oracle is ``mirrorflow decode --format jsonl --apply-sampling --no-options`` over the same
captures (itself held to tshark by test_decode_corpus).
"""

from __future__ import annotations

import collections
import csv
import ipaddress
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance.netflow.registry import REGISTRY

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "appliance.cli"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=check, timeout=600)


@pytest.fixture(scope="module")
def captures(corpus_dir: Path) -> list[str]:
    with open(corpus_dir / "MANIFEST.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [str(corpus_dir / r["file"]) for r in rows if r["canonical"] == "yes" and r["file"].startswith("netflow/")]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, captures: list[str]) -> Path:
    root = tmp_path_factory.mktemp("archive")
    args = ["collect", "--archive", str(root), "--stats-interval", "0"]
    for f in captures:
        args += ["--pcap", f]
    run(*args)
    return root


@pytest.fixture(scope="module")
def decoded(captures: list[str]) -> list[dict[str, Any]]:
    out = run("decode", "--format", "jsonl", "--apply-sampling", "--no-options", *captures).stdout
    return [json.loads(line) for line in out.splitlines()]


def jsonl(*args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run("flows", *args, "--format", "jsonl").stdout.splitlines()]


def same(name: str, want: Any, got: Any) -> bool:
    if isinstance(want, list):  # a field repeated in the template: the archive keeps one of them
        return got in want
    if isinstance(want, int) and isinstance(got, str) and REGISTRY[name].ftype.name == "IPV4":
        return int(ipaddress.IPv4Address(got)) == want  # decode prints an odd-sized address as a number
    return want == got


def test_every_decoded_record_comes_back_field_by_field(archive: Path, decoded: list[dict[str, Any]]) -> None:
    got = jsonl("-R", str(archive), "-n", "0")
    assert len(got) == len(decoded) > 8000
    by_key: dict[tuple[str, int], list[dict[str, Any]]] = collections.defaultdict(list)
    for a in got:
        by_key[(a["exporter"], a["recv_time_ns"])].append(a)
    compared = 0
    for d in decoded:
        names = [k for k in d if k in REGISTRY.by_name or k in ("exporter", "source_id", "template_id",
                                                                "record_kind", "version")]
        candidates = by_key[(d["exporter"], d["recv_time_ns"])]
        match = next((a for a in candidates if all(k in a and same(k, d[k], a[k]) for k in names)), None)
        assert match is not None, d
        candidates.remove(match)  # each archived record answers one decoded record
        compared += len(names)
    assert compared > 8000 * 20


def test_top_src_host_is_the_recount_of_decoded_records(archive: Path, decoded: list[dict[str, Any]]) -> None:
    want: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    last = lambda v: v[-1] if isinstance(v, list) else v  # noqa: E731 - a repeated field: the column holds the last
    for d in decoded:
        v6 = last(d.get("src_addr6", "::"))
        key = v6 if v6 != "::" else last(d.get("src_addr", "0.0.0.0"))
        for i, m in enumerate(("bytes", "packets")):
            want[key][i] += d.get(m, 0)
        want[key][2] += 1
    for by, i in (("bytes", 0), ("packets", 1), ("flows", 2)):
        rows = jsonl("-R", str(archive), "--top", "src host", "--by", by, "-n", "7")
        top = sorted(want.items(), key=lambda kv: -kv[1][i])
        assert [r[by] for r in rows] == [v[i] for _, v in top[:7]]
        assert all(want[r["src_host"]] == [r["bytes"], r["packets"], r["flows"]] for r in rows)


def test_filter_and_time_range_select_what_decode_recount_selects(archive: Path, decoded: list[dict[str, Any]]) -> None:
    times = sorted({d["recv_time_ns"] for d in decoded})
    since, until = times[len(times) // 3], times[2 * len(times) // 3]
    last = lambda v: v[-1] if isinstance(v, list) else v  # noqa: E731 - a repeated field: the column holds the last
    want = [d for d in decoded if since <= d["recv_time_ns"] < until and last(d.get("proto")) == 17
            and 1024 <= last(d.get("dst_port", 0)) <= 65535]
    assert want
    iso = lambda ns: str(ns / 1e9)  # noqa: E731 - a Unix time with fractions
    got = jsonl("-R", str(archive), "--since", iso(since), "--until", iso(until), "-n", "0",
                "udp and dst port 1024-65535")
    assert sorted((g["exporter"], g["recv_time_ns"], g["bytes"]) for g in got) == sorted(
        (d["exporter"], d["recv_time_ns"], d["bytes"]) for d in want)
    assert [g["recv_time_ns"] for g in got] == sorted((g["recv_time_ns"] for g in got), reverse=True)


def test_table_output_reads_like_nfdump(archive: Path) -> None:
    out = run("flows", "-R", str(archive), "--top", "dst port", "-n", "3").stdout.splitlines()
    assert out[0] == "Top 3 dst port ordered by bytes:"
    assert out[1].split() == ["dst", "port", "Flows(%)", "Packets(%)", "Bytes(%)"]
    assert out[-2].startswith("Summary: total flows: ") and len(out) == 7  # title, header, 3 rows, summary, files
    listing = run("flows", "-R", str(archive), "-n", "2", "proto tcp").stdout.splitlines()
    assert listing[0].split()[:4] == ["Date", "first", "seen", "(UTC)"] and " TCP " in listing[1]


def test_bad_filter_empty_range_bad_time(archive: Path) -> None:
    bad = run("flows", "-R", str(archive), "port 44x3", check=False)
    assert bad.returncode == 2 and "port 44x3\n" in bad.stderr and bad.stderr.rstrip().endswith("^")
    empty = run("flows", "-R", str(archive), "--since", "1990-01-01", "--until", "1990-01-02", "--format", "jsonl")
    assert (empty.returncode, empty.stdout) == (0, "")
    top = run("flows", "-R", str(archive), "--since", "1990-01-01", "--until", "1990-01-02", "--top", "src host",
              "--format", "jsonl")
    assert (top.returncode, top.stdout) == (0, "")
    when = run("flows", "-R", str(archive), "--since", "yesterday", check=False)
    assert when.returncode == 2 and "is not a time" in when.stderr
    key = run("flows", "-R", str(archive), "--top", "bytes", check=False)
    assert key.returncode == 2 and "--by" in key.stderr


def test_csv_listing_carries_what_jsonl_carries(archive: Path) -> None:
    args = ["-R", str(archive), "-n", "0", "udp or tcp-flags syn"]
    records = jsonl(*args)
    rows = list(csv.DictReader(run("flows", *args, "--format", "csv").stdout.splitlines()))
    assert len(rows) == len(records) > 1000
    for rec, row in zip(records, rows):  # the same order (newest first) and values; NULL = empty cell
        want = {k: "" if v is None else str(v) for k, v in rec.items()}
        assert {k: row[k] for k in want} == want
        assert all(v == "" for k, v in row.items() if k not in want)  # columns the flow's file lacked
