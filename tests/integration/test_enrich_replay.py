"""Captures replayed through the whole pipeline with GeoIP/ASN databases (written here with
mmdb-writer): windows keyed by country and AS, filters on them, and ``decode --geoip`` output,
all against a plain-Python recount that asks `maxminddb` for every record's addresses."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import maxminddb
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from appliance.collector.config import load_runtime
from appliance.collector.config.settings import CollectorConfig
from appliance.collector.monitoring import WindowTable
from appliance.collector.pipeline import Pipeline

CAPTURES = ["ipfixcol2/example_flows.pcap", "pmacct/402-IPFIXv10-BMP-IPv6-high-availability__traffic-00.pcap",
            "logstash-codec-netflow/pcap_single/netflow9_test_softflowd_tpl_data.pcap"]
LETTERS = ["DE", "US", "FR", "JP", "BR", "NL", "ZA", "AU"]

OBJECT = """{
    "filter": "not src country ?",
    "fwm": [
        {"name": "cc", "fields": ["src country", "country_code(dst host)", "octets desc", "flows"]},
        {"name": "as", "fields": ["asn(src host)", "dst as-org", "packets desc"]}
    ]}"""
OBJECT_DE = """{"filter": "src country DE or dst asn 64510",
    "fwm": [{"name": "t", "fields": ["src host", "octets"]}]}"""


def write_databases(d: Path) -> tuple[Path, Path]:
    c = MMDBWriter(ip_version=6, database_type="DBIP-Country-Lite", ipv4_compatible=True)
    a = MMDBWriter(ip_version=6, database_type="DBIP-ASN-Lite", ipv4_compatible=True)
    for i in range(8):  # the IPv4 space in /3 blocks, IPv6 in /4 blocks, some nested networks
        c.insert_network(IPSet([f"{i << 5}.0.0.0/3"]), {"country": {"iso_code": LETTERS[i]}})
        c.insert_network(IPSet([f"{i << 1:x}000::/4"]), {"country": {"iso_code": LETTERS[7 - i]}})
    for net, cc in (("10.0.0.0/8", "NL"), ("10.1.0.0/16", "JP"), ("192.168.0.0/16", "ZA"), ("2001:db8::/32", "AU")):
        c.insert_network(IPSet([net]), {"country": {"iso_code": cc}})
    for i in range(0, 256, 2):
        a.insert_network(IPSet([f"{i}.0.0.0/8"]), {"autonomous_system_number": 64500 + i % 20,
                                                   "autonomous_system_organization": f"AS{64500 + i % 20} Net"})
    a.insert_network(IPSet(["2000::/3"]), {"autonomous_system_number": 65001,
                                           "autonomous_system_organization": "Six Net"})
    c.to_db_file(str(d / "country.mmdb"))
    a.to_db_file(str(d / "asn.mmdb"))
    return d / "country.mmdb", d / "asn.mmdb"


def address(rec: dict, side: str) -> str:
    a6 = rec.get(f"{side}_addr6")
    if a6 and ipaddress.ip_address(a6) != ipaddress.IPv6Address(0):
        ip = ipaddress.ip_address(a6)
        return str(ip.ipv4_mapped or ip)
    return rec.get(f"{side}_addr", "0.0.0.0")


def decoded(capture: Path, geoip: list[Path]) -> list[dict]:
    env = {**os.environ, "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", "/tmp/mirrorflow-numba")}
    args = [sys.executable, "-m", "appliance.cli", "decode", "--format", "jsonl", "--apply-sampling", "--no-options"]
    for g in geoip:
        args += ["--geoip", str(g)]
    proc = subprocess.run([*args, str(capture)], capture_output=True, text=True, check=True, env=env, timeout=120)
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.mark.parametrize("capture", CAPTURES)
def test_replay_windows_and_decode_match_maxminddb(tmp_path: Path, corpus_dir: Path, capture: str) -> None:
    cdb, adb = write_databases(tmp_path)
    rc, ra = maxminddb.open_database(str(cdb)), maxminddb.open_database(str(adb))

    def cc(addr: str) -> str:
        r = rc.get(addr)
        return r["country"]["iso_code"] if r else ""

    def asn(addr: str) -> tuple[int, str]:
        r = ra.get(addr)
        return (r["autonomous_system_number"], r["autonomous_system_organization"]) if r else (0, "")

    path = corpus_dir / "netflow" / capture
    records = decoded(path, [cdb, adb])
    assert records
    for r in records:  # decode --geoip: every record's names
        s, d = address(r, "src"), address(r, "dst")
        assert (r["src_country"], r["dst_country"]) == (cc(s), cc(d))
        assert (int(r["src_asn"] or 0), r["src_as_org"]) == asn(s)
        assert (int(r["dst_asn"] or 0), r["dst_as_org"]) == asn(d)

    for rel, text in (("geo", OBJECT), ("de", OBJECT_DE)):
        (tmp_path / "mo" / rel).mkdir(parents=True)
        (tmp_path / "mo" / rel / "mo.conf").write_text(text)
    cfg = CollectorConfig(mo_dir=tmp_path / "mo", stats_interval_s=0, geoip=[cdb, adb])
    pipeline = Pipeline(cfg, load_runtime(cfg), live=False)
    tables: list[WindowTable] = []
    assert pipeline.monitoring is not None
    pipeline.monitoring.monitor.exporters.append(tables.append)
    pipeline.run_pcap([path])

    got: dict[str, Counter] = {}
    for t in tables:
        rows = got.setdefault(t.table, Counter())
        for row in t.rows:
            if t.table == "geo_cc":
                rows[tuple(row[:2])] += row[2]
            elif t.table == "de_t":
                ip = ipaddress.ip_address(str(row[0]))
                rows[(str(getattr(ip, "ipv4_mapped", None) or ip),)] += row[1]
            else:
                rows[tuple(row[:2])] += row[2]
    want_cc: Counter = Counter()
    want_as: Counter = Counter()
    want_de: Counter = Counter()
    for r in records:
        s, d = address(r, "src"), address(r, "dst")
        if cc(s):
            want_cc[(cc(s), cc(d) or "?")] += r.get("bytes", 0)
            want_as[(asn(s)[0], asn(d)[1])] += r.get("packets", 0)
        if cc(s) == "DE" or asn(d)[0] == 64510:
            ip = ipaddress.ip_address(s)
            want_de[(str(ip),)] += r.get("bytes", 0)
    assert got.get("geo_cc", Counter()) == +want_cc
    assert got.get("geo_as", Counter()) == +want_as
    assert got.get("de_t", Counter()) == +want_de
    assert sum(want_cc.values()) > 0
