"""Enriched columns in the flow archive: countries, AS names and cities are stored as their text
(a text code means something only inside the collector that made it), and `mirrorflow flows`
filters on them from another process. Oracle: maxminddb's own reader of the same databases."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import maxminddb
import numpy as np
import pyarrow.parquet as pq
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from appliance import synth
from appliance.netflow import V9Encoder, template_for

CLI = [sys.executable, "-m", "appliance.cli"]
T0 = 1_700_000_000 * 1_000_000_000
NETS = [("10.1.0.0/16", "DE", "Berlin", 64500, "Org A"), ("10.2.0.0/16", "FR", "Paris", 64501, "Org B"),
        ("10.3.0.0/17", "JP", "Tokyo", 64502, "Org C")]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[Path]]:
    tmp = tmp_path_factory.mktemp("enriched")
    city = MMDBWriter(ip_version=6, database_type="GeoLite2-City", ipv4_compatible=True)
    asn = MMDBWriter(ip_version=6, database_type="GeoLite2-ASN", ipv4_compatible=True)
    for net, cc, town, a, org in NETS:
        city.insert_network(IPSet([net]), {"country": {"iso_code": cc}, "city": {"names": {"en": town}}})
        asn.insert_network(IPSet([net]), {"autonomous_system_number": a, "autonomous_system_organization": org})
    dbs = [tmp / "city.mmdb", tmp / "asn.mmdb"]
    city.to_db_file(str(dbs[0]))
    asn.to_db_file(str(dbs[1]))
    rng = np.random.default_rng(3)
    n = 600
    # sources in the three networks and in 10.3.128.0/17 and 10.9.0.0/16, which no database knows
    base = rng.choice([0x0A010000, 0x0A020000, 0x0A030000, 0x0A038000, 0x0A090000], n)
    src = (base + rng.integers(1, 0x7FFF, n)).astype(np.uint64)
    cols = {"src_addr": src, "dst_addr": np.full(n, 0xC0000201, np.uint64), "src_port": np.full(n, 1234, np.uint64),
            "dst_port": np.full(n, 443, np.uint64), "proto": np.full(n, 6, np.uint64),
            "packets": np.ones(n, np.uint64), "bytes": np.full(n, 100, np.uint64)}
    enc = V9Encoder([template_for(list(cols), 256)], clock=lambda: T0, boot_ns=T0 - 10**9)
    frames = [(T0, synth.udp_frame("192.0.2.1", "192.0.2.9", 40000, 2055, d)) for d in enc.encode(cols, 256)]
    pcap = synth.write_pcap(tmp / "flows.pcap", frames)
    root = tmp / "archive"
    subprocess.run([*CLI, "collect", "--pcap", str(pcap), "--archive", str(root), "--stats-interval", "0",
                    "--geoip", str(dbs[0]), "--geoip", str(dbs[1])], check=True, timeout=600, capture_output=True)
    return root, [str(ipaddress.IPv4Address(int(a))) for a in src], dbs


def test_archive_stores_the_texts_maxminddb_reads(archive: tuple[Path, list[str], list[Path]]) -> None:
    root, sources, dbs = archive
    table = pq.read_table(sorted(root.rglob("*.parquet")))
    assert table.num_rows == len(sources)
    got = {(str(ipaddress.IPv4Address(a)), c, t, o) for a, c, t, o in zip(
        table["src_addr"].to_pylist(), table["src_country"].to_pylist(), table["src_city"].to_pylist(),
        table["src_as_org"].to_pylist())}
    with maxminddb.open_database(str(dbs[0])) as city, maxminddb.open_database(str(dbs[1])) as asn:
        want = set()
        for ip in sources:
            c, a = city.get(ip) or {}, asn.get(ip) or {}
            want.add((ip, c.get("country", {}).get("iso_code", ""), c.get("city", {}).get("names", {}).get("en", ""),
                      a.get("autonomous_system_organization", "")))
    assert got == want
    assert table.schema.field("src_country").type == "string" and table.schema.field("src_asn").type != "string"


def test_flows_filters_on_texts_from_another_process(archive: tuple[Path, list[str], list[Path]]) -> None:
    root, sources, _ = archive
    nets = {org: ipaddress.ip_network(net) for net, _, _, _, org in NETS}
    for expr, want in (("src as-org 'Org B'", sum(ipaddress.ip_address(s) in nets["Org B"] for s in sources)),
                       ("src country JP", sum(ipaddress.ip_address(s) in nets["Org C"] for s in sources)),
                       ("src country ?", sum(not any(ipaddress.ip_address(s) in n for n in nets.values())
                                             for s in sources))):
        out = subprocess.run([*CLI, "flows", "-R", str(root), expr, "-n", "100000", "--format", "csv"],
                             check=True, timeout=300, capture_output=True, text=True).stdout
        assert len(out.splitlines()) - 1 == want > 0, expr
