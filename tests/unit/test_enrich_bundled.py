"""The free data Mirrorflow uses out of the box (scripts/fetch-geoip: ip-location-db's country
.mmdb and AS range CSV from npm), loaded as the collector loads it, against independent readers:
`maxminddb` for countries, a bisect over the CSV lines for AS numbers and names."""

from __future__ import annotations

import bisect
import csv
import ipaddress
import random
from pathlib import Path

import maxminddb
import numpy as np
import pytest

from appliance.collector.enrich import Enricher, bundled_geoip
from appliance.collector.fields.geo import TEXTS, code_letters
from appliance.collector.flowbatch import FlowBatch
from appliance.netflow.registry import REGISTRY

GEOIP = bundled_geoip()
pytestmark = pytest.mark.skipif(GEOIP is None, reason="no GeoIP data: run scripts/setup (scripts/fetch-geoip)")


def _csv_oracle(path: Path) -> tuple[list[int], list[tuple[int, int, str]]]:
    starts, rows = [], []
    with path.open(newline="", encoding="utf-8") as fh:
        for first, last, asn, org in csv.reader(fh):
            starts.append(int(ipaddress.ip_address(first)))
            rows.append((int(ipaddress.ip_address(last)), int(asn), org))
    return starts, rows


def _asn(oracle: tuple[list[int], list[tuple[int, int, str]]], v: int) -> tuple[int, str]:
    starts, rows = oracle
    i = bisect.bisect_right(starts, v) - 1
    if i >= 0 and v <= rows[i][0]:
        return rows[i][1], rows[i][2]
    return 0, ""


def test_bundled_data_matches_independent_readers() -> None:
    assert GEOIP is not None
    enricher = Enricher([GEOIP])
    assert {"src_country", "dst_country", "src_asn", "src_as_org"} <= enricher.provides
    rng = random.Random(1)
    n = 3000
    v4 = np.array([rng.getrandbits(32) for _ in range(n)] + [0x08080808, 0x01010101], dtype=np.uint64)
    v6 = np.zeros((len(v4), 2), dtype=np.uint64)
    six = [(0x2A00 + rng.randrange(0x700)) << 112 | rng.getrandbits(112) for _ in range(n // 3)]
    six.append(0x2A001450 << 96 | 1)  # 2a00:1450::1
    for i, v in enumerate(six):
        v6[i] = (v >> 64, v & (2**64 - 1))
    cols = {REGISTRY["src_addr"].column: v4, REGISTRY["dst_addr"].column: v4[::-1].copy()}
    batch = FlowBatch(len(v4), cols, {REGISTRY["src_addr6"].column6: v6})
    enricher.enrich(batch)

    reader = maxminddb.open_database(str(GEOIP / "geo-whois-asn-country.mmdb"))
    o4 = _csv_oracle(GEOIP / "asn-ipv4.csv")
    o6 = _csv_oracle(GEOIP / "asn-ipv6.csv")
    known = 0
    for i in range(batch.n):
        if i < len(six):
            ip: ipaddress._BaseAddress = ipaddress.IPv6Address(six[i])
            want_asn = _asn(o6, six[i])
        else:
            ip = ipaddress.IPv4Address(int(v4[i]))
            want_asn = _asn(o4, int(v4[i]))
        rec = reader.get(str(ip))
        assert code_letters(int(batch["src_country"][i])) == (rec or {}).get("country_code", ""), ip
        got = (int(batch["src_asn"][i]), TEXTS.text(int(batch["src_as_org"][i])))
        assert got == want_asn, ip
        known += bool(rec) and bool(want_asn[0])
    assert known > n // 2
    assert code_letters(int(batch["src_country"][batch.n - 2])) == "US"  # 8.8.8.8
    assert int(batch["src_asn"][batch.n - 2]) == 15169
