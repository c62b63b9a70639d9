"""GeoIP/ASN enrichment: .mmdb databases written here with mmdb-writer, every lookup compared with
`maxminddb`'s own answer; filters and windows on the enriched columns against plain-Python
recounts; reload and bad files."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import types
from collections import Counter
from pathlib import Path

import maxminddb
import numpy as np
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from appliance.collector.config import WindowSpec
from appliance.collector.enrich import Enricher, GeoError, load_database, texts, unprovided
from appliance.collector.fields import parse_field
from appliance.collector.fields.geo import COUNTRY_NAMES, TEXTS, code_letters, letters_code
from appliance.collector.filter import FilterError, compile_filter
from appliance.collector.flowbatch import FlowBatch
from appliance.collector.monitoring import FixedWindow
from appliance.netflow.registry import REGISTRY

COUNTRIES = ["DE", "FR", "US", "JP", "BR", "ZA", "AU", "NL"]
NAMES = {"DE": "Germany", "FR": "France", "US": "United States", "JP": "Japan"}
CONTINENT = {"DE": "EU", "FR": "EU", "NL": "EU", "US": "NA", "JP": "AS", "BR": "SA", "ZA": "AF", "AU": "OC"}


def _random_v4(rng: random.Random) -> ipaddress.IPv4Network:
    plen = rng.choice([8, 12, 16, 20, 24, 28, 30, 32])
    return ipaddress.ip_network((rng.getrandbits(32), plen), strict=False)


def _random_v6(rng: random.Random) -> ipaddress.IPv6Network:
    plen = rng.choice([16, 29, 32, 40, 48, 64, 96, 127, 128])
    base = (0x2000 + rng.randrange(0x400)) << 112 | rng.getrandbits(112)
    return ipaddress.ip_network((base, plen), strict=False)


def _nets(rng: random.Random, n4: int, n6: int) -> list:
    """Random networks, then nested ones inside some of them (inserted after: they win)."""
    outer = [_random_v4(rng) for _ in range(n4)] + [_random_v6(rng) for _ in range(n6)]
    nested = []
    for net in rng.sample(outer, len(outer) // 3):
        if net.prefixlen < net.max_prefixlen - 2:
            sub = list(net.subnets(new_prefix=min(net.max_prefixlen, net.prefixlen + rng.randint(1, 8))))
            nested.append(rng.choice(sub[:50]))
    return outer + nested


def _country_db(path: Path, nets: list, rng: random.Random, v6: bool = True) -> dict:
    w = MMDBWriter(ip_version=6 if v6 else 4, database_type="GeoLite2-Country", ipv4_compatible=v6)
    truth = {}
    for net in nets:
        if net.version == 6 and not v6:
            continue
        cc = rng.choice(COUNTRIES)
        rec: dict = {"country": {"iso_code": cc}, "continent": {"code": CONTINENT[cc]}}
        if cc in NAMES:
            rec["country"]["names"] = {"en": NAMES[cc]}
        w.insert_network(IPSet([str(net)]), rec)
        truth[net] = cc
    w.to_db_file(str(path))
    return truth


def _asn_db(path: Path, nets: list, rng: random.Random) -> None:
    w = MMDBWriter(ip_version=6, database_type="GeoLite2-ASN", ipv4_compatible=True)
    for net in nets:
        asn = rng.randrange(1, 4_300_000_000)
        w.insert_network(IPSet([str(net)]), {"autonomous_system_number": asn,
                                             "autonomous_system_organization": f"Org {asn % 97} Ltd"})
    w.to_db_file(str(path))


def _expected(rec: object) -> dict[str, int]:
    """What the record must give, decoded by maxminddb (the oracle), as codes."""
    out = {"country": 0, "continent": 0, "asn": 0, "as_org": 0}
    if isinstance(rec, dict):
        out["country"] = letters_code(rec.get("country", {}).get("iso_code", ""))
        out["continent"] = letters_code(rec.get("continent", {}).get("code", ""))
        out["asn"] = rec.get("autonomous_system_number", 0)
        org = rec.get("autonomous_system_organization")
        out["as_org"] = TEXTS.find(org) if org else 0
    return out


def _probe_addresses(nets: list, rng: random.Random) -> list[str]:
    """Edges of every network (first, last, ±1), random addresses, and the ends of the space."""
    out = ["0.0.0.0", "255.255.255.255", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::1",
           "::ffff:0.0.0.0", "2001:db8::1", "1.1.1.1"]
    for net in nets:
        top = (1 << net.max_prefixlen) - 1
        for v in (int(net.network_address) - 1, int(net.network_address), int(net.broadcast_address),
                  int(net.broadcast_address) + 1):
            if 0 <= v <= top:
                out.append(str(ipaddress.ip_address(v) if net.version == 4 else ipaddress.IPv6Address(v)))
    out += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(500)]
    out += [str(ipaddress.IPv6Address((0x2000 + rng.randrange(0x400)) << 112 | rng.getrandbits(112)))
            for _ in range(500)]
    return out


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> types.SimpleNamespace:
    d = tmp_path_factory.mktemp("geo")
    rng = random.Random(7)
    nets = _nets(rng, 150, 60)
    ns = types.SimpleNamespace(dir=d, nets=nets, country=d / "country.mmdb", asn=d / "asn.mmdb",
                               country4=d / "country4.mmdb")
    _country_db(ns.country, nets, rng)
    _country_db(ns.country4, nets, random.Random(8), v6=False)
    _asn_db(ns.asn, nets, rng)
    return ns


@pytest.mark.parametrize("which", ["country", "country4", "asn"])
def test_every_lookup_equals_maxminddb(dbs: types.SimpleNamespace, which: str) -> None:
    path = getattr(dbs, which)
    db = load_database(path)
    reader = maxminddb.open_database(str(path))
    rng = random.Random(11)
    checked = 0
    for addr in _probe_addresses(dbs.nets, rng):
        ip = ipaddress.ip_address(addr)
        if ip.version == 6 and ip.ipv4_mapped is not None:
            want = _expected(reader.get(str(ip.ipv4_mapped)))  # looked up as the IPv4 address
        elif ip.version == 6 and reader.metadata().ip_version == 4:
            want = _expected(None)
        else:
            want = _expected(reader.get(addr))
        got = db.get(addr)
        assert {k: got.get(k, 0) for k in want if k in db.provides} == {k: want[k] for k in db.provides}, addr
        checked += 1
    # IPv4-mapped forms of IPv4 edges give the IPv4 answer
    for net in dbs.nets[:40]:
        if net.version == 4:
            a = net.network_address
            assert db.get(f"::ffff:{a}") == db.get(str(a))
    assert checked > 1500


def test_provides_follow_the_database_type(dbs: types.SimpleNamespace) -> None:
    assert load_database(dbs.country).provides == ("country", "continent")
    assert load_database(dbs.asn).provides == ("asn", "as_org")


def test_whole_space_and_host_routes(tmp_path: Path) -> None:
    """/1 + /1 with one value (the whole space: one range) and /32 networks inside it."""
    w = MMDBWriter(ip_version=4, database_type="DBIP-Country-Lite")
    w.insert_network(IPSet(["0.0.0.0/1"]), {"country": {"iso_code": "NL"}})  # netaddr would merge
    w.insert_network(IPSet(["128.0.0.0/1"]), {"country": {"iso_code": "NL"}})  # the two into a /0
    w.insert_network(IPSet(["0.0.0.0/32"]), {"country": {"iso_code": "JP"}})
    w.insert_network(IPSet(["255.255.255.255/32"]), {"country": {"iso_code": "BR"}})
    w.insert_network(IPSet(["10.0.0.7/32"]), {"country": {"iso_code": "ZA"}})
    w.to_db_file(str(tmp_path / "all.mmdb"))
    db = load_database(tmp_path / "all.mmdb")
    reader = maxminddb.open_database(str(tmp_path / "all.mmdb"))
    for a in ("0.0.0.0", "0.0.0.1", "10.0.0.6", "10.0.0.7", "10.0.0.8", "127.255.255.255", "128.0.0.0",
              "255.255.255.254", "255.255.255.255"):
        assert code_letters(db.get(a)["country"]) == reader.get(a)["country"]["iso_code"], a
    assert db.get("2001:db8::1")["country"] == 0  # an IPv4 database knows no IPv6 address
    starts = [(str(ipaddress.IPv4Address(int(a))), code_letters(int(db.values["country"][c])))
              for a, c in zip(db.v4.lo.tolist(), db.v4.code.tolist())]
    assert starts[:4] == [("0.0.0.0", "JP"), ("0.0.0.1", "NL"), ("10.0.0.7", "ZA"), ("10.0.0.8", "NL")]
    assert starts[-1] == ("255.255.255.255", "BR") and len(starts) in (5, 6)  # 128/1: merged if one record


def _batch(rng: np.random.Generator, nets: list, n: int) -> FlowBatch:
    """Flows between addresses inside the test networks (and some outside), a quarter IPv6,
    some IPv6 columns holding IPv4-mapped addresses."""
    cols: dict[int, np.ndarray] = {}
    cols6: dict[int, np.ndarray] = {}
    v4 = [n_ for n_ in nets if n_.version == 4]
    v6 = [n_ for n_ in nets if n_.version == 6]
    for side in ("src", "dst"):
        a4 = np.zeros(n, dtype=np.uint64)
        a6 = np.zeros((n, 2), dtype=np.uint64)
        for i in range(n):
            r = rng.random()
            if r < 0.6:
                net = v4[rng.integers(len(v4))]
                a4[i] = int(net.network_address) + int(rng.integers(net.num_addresses))
            elif r < 0.7:
                a4[i] = int(rng.integers(0, 2**32))
            elif r < 0.8:
                net = v4[rng.integers(len(v4))]
                a6[i] = (0, 0xFFFF_0000_0000 | int(net.network_address))
            else:
                net = v6[rng.integers(len(v6))]
                v = int(net.network_address) + int(rng.integers(min(net.num_addresses, 2**62)))
                a6[i] = (v >> 64, v & (2**64 - 1))
        cols[REGISTRY[f"{side}_addr"].column] = a4
        cols6[REGISTRY[f"{side}_addr6"].column6] = a6
    cols[REGISTRY["bytes"].column] = rng.integers(40, 1_000_000, n).astype(np.uint64)
    cols[REGISTRY["recv_time_ns"].column] = np.full(n, 1_700_000_000 * 10**9, dtype=np.uint64)
    return FlowBatch(n, cols, cols6)


def _addr(batch: FlowBatch, side: str, i: int) -> str:
    hi, lo = (int(x) for x in batch[f"{side}_addr6"][i])
    if hi or lo:
        return str(ipaddress.IPv6Address(hi << 64 | lo))
    return str(ipaddress.IPv4Address(int(batch[f"{side}_addr"][i])))


def _oracle_column(reader: maxminddb.Reader, addr: str, name: str) -> int:
    ip = ipaddress.ip_address(addr)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        addr = str(ip.ipv4_mapped)
    return _expected(reader.get(addr))[name]


def test_enricher_adds_columns_that_match_maxminddb(dbs: types.SimpleNamespace) -> None:
    enricher = Enricher([dbs.country, dbs.asn])
    batch = _batch(np.random.default_rng(3), dbs.nets, 3000)
    enricher.enrich(batch)
    rc, ra = maxminddb.open_database(str(dbs.country)), maxminddb.open_database(str(dbs.asn))
    for side in ("src", "dst"):
        for name, reader in (("country", rc), ("continent", rc), ("asn", ra), ("as_org", ra)):
            got = batch[f"{side}_{name}"].tolist()
            want = [_oracle_column(reader, _addr(batch, side, i), name) for i in range(batch.n)]
            assert got == want, (side, name)
    assert "src_city" not in batch
    shown = texts(batch)
    i = int(np.flatnonzero(batch["src_country"])[0])
    assert shown["src_country"][i] == code_letters(int(batch["src_country"][i]))
    assert shown["src_as_org"][i] == TEXTS.text(int(batch["src_as_org"][i]))
    assert enricher.provides == {f"{s}_{n}" for s in ("src", "dst") for n in ("country", "continent", "asn", "as_org")}


def test_filters_on_enriched_columns_match_a_recount(dbs: types.SimpleNamespace) -> None:
    enricher = Enricher([dbs.country, dbs.asn])
    batch = _batch(np.random.default_rng(4), dbs.nets, 2000)
    enricher.enrich(batch)
    src = [code_letters(int(c)) for c in batch["src_country"]]
    dst = [code_letters(int(c)) for c in batch["dst_country"]]
    dasn = batch["dst_asn"].tolist()
    some_asn = next(a for a in dasn if a)
    org = TEXTS.text(int(next(c for c in batch["src_as_org"] if c)))
    cases = {
        "src country DE": [s == "DE" for s in src],
        "dst country us or fr": [d in ("US", "FR") for d in dst],
        "country JP": [s == "JP" or d == "JP" for s, d in zip(src, dst)],
        "src country ?": [s == "" for s in src],
        f"dst asn {some_asn}": [a == some_asn for a in dasn],
        f"src as-org '{org}'": [TEXTS.text(int(c)) == org for c in batch["src_as_org"]],
        "country_code(src host) DE or 'NL'": [s in ("DE", "NL") for s in src],
        "country(dst host) 'Germany'": [d == "DE" for d in dst],
        "continent(src host) EU and not dst country ?": [
            s in ("DE", "FR", "NL") and d != "" for s, d in zip(src, dst)],
        f"asn(dst host) 1-{some_asn}": [0 < a <= some_asn for a in dasn],
        f"asd(src host) '{org}'": [TEXTS.text(int(c)) == org for c in batch["src_as_org"]],
        "country_code(dst host) '?'": [d == "" for d in dst],
    }
    for text, want in cases.items():
        assert compile_filter(text).evaluate(batch).tolist() == want, text
        assert any(want), text


def test_window_keyed_by_country_matches_a_recount(dbs: types.SimpleNamespace) -> None:
    enricher = Enricher([dbs.country, dbs.asn])
    batch = _batch(np.random.default_rng(5), dbs.nets, 2500)
    enricher.enrich(batch)
    spec = WindowSpec("w", tuple(parse_field(f) for f in ("src country", "country_code(dst host)",
                                                          "asn(src host)", "octets desc")), time=30)
    w = FixedWindow(spec, "t")
    tables = w.add(batch, np.arange(batch.n), batch["recv_time_ns"] // np.uint64(30 * 10**9)) + w.close()
    assert len(tables) == 1
    got = Counter({tuple(r[:3]): r[3] for r in tables[0].rows})
    want: Counter = Counter()
    for i in range(batch.n):
        key = (code_letters(int(batch["src_country"][i])), code_letters(int(batch["dst_country"][i])) or "?",
               int(batch["src_asn"][i]))
        want[key] += int(batch["bytes"][i])
    assert got == want
    assert [c.sqltype for c in spec.fields] == ["TEXT", "TEXT", "BIGINT", "BIGINT"]


def test_reload_swaps_tables_and_keeps_them_on_bad_files(tmp_path: Path, dbs: types.SimpleNamespace) -> None:
    path = tmp_path / "c.mmdb"
    w = MMDBWriter(ip_version=4, database_type="GeoLite2-Country")
    w.insert_network(IPSet(["10.0.0.0/8"]), {"country": {"iso_code": "DE"}})
    w.to_db_file(str(path))
    enricher = Enricher([path])
    batch = _batch(np.random.default_rng(6), [ipaddress.ip_network("10.0.0.0/8"),
                                              ipaddress.ip_network("2001:db8::/32")], 50)
    enricher.enrich(batch)
    before = batch["src_country"].copy()
    assert set(before.tolist()) <= {0, letters_code("DE")}

    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # corrupt: the old tables stay
    enricher.reload(wait=True)
    assert enricher.reload_errors == 1
    enricher.enrich(batch)
    assert batch["src_country"].tolist() == before.tolist()
    path.unlink()  # missing: the old tables stay
    enricher.reload(wait=True)
    assert enricher.reload_errors == 2

    w = MMDBWriter(ip_version=4, database_type="GeoLite2-Country")
    w.insert_network(IPSet(["10.0.0.0/8"]), {"country": {"iso_code": "FR"}})
    w.to_db_file(str(tmp_path / "new.mmdb"))
    os.replace(tmp_path / "new.mmdb", path)
    t = enricher.reload()
    while t is not None and t.is_alive():  # traffic goes on while the new tables load
        enricher.enrich(batch)
        assert set(batch["src_country"].tolist()) <= {0, letters_code("DE"), letters_code("FR")}
    assert t is not None
    t.join()
    enricher.enrich(batch)
    assert batch["src_country"].tolist() == [letters_code("FR") if c else 0 for c in before.tolist()]
    assert enricher.reloads == 1


def test_bad_files_are_clear_errors_at_start(tmp_path: Path) -> None:
    with pytest.raises(GeoError, match="no such GeoIP/ASN database"):
        Enricher([tmp_path / "missing.mmdb"])
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(GeoError, match="not a valid MaxMind DB"):
        Enricher([junk])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GeoError, match="no .mmdb files"):
        Enricher([empty])
    xeno = tmp_path / "xeno"
    xeno.mkdir()
    (xeno / "geo4.db").write_bytes(b"x")
    with pytest.raises(GeoError, match="xemkgeodb.*mmdb"):
        Enricher([xeno])


def test_corrupt_tree_is_refused_not_walked_forever(tmp_path: Path) -> None:
    w = MMDBWriter(ip_version=6, database_type="GeoLite2-Country", ipv4_compatible=True)
    w.insert_network(IPSet(["10.0.0.0/8", "2001:db8::/32"]), {"country": {"iso_code": "DE"}})
    w.to_db_file(str(tmp_path / "ok.mmdb"))
    data = bytearray((tmp_path / "ok.mmdb").read_bytes())
    meta = maxminddb.open_database(str(tmp_path / "ok.mmdb")).metadata()
    size = meta.record_size * 2 // 8
    for node in range(1, meta.node_count):  # every node's records point back at the root
        data[node * size : node * size + size] = b"\x00" * size
    bad = tmp_path / "loop.mmdb"
    bad.write_bytes(bytes(data))
    with pytest.raises(GeoError, match="corrupt"):
        load_database(bad)


def test_folder_of_mmdb_files_and_country_names(dbs: types.SimpleNamespace) -> None:
    enricher = Enricher([dbs.dir])  # xenoeye's geodb key: a folder
    assert sorted(d.path.name for d in enricher.databases) == ["asn.mmdb", "country.mmdb", "country4.mmdb"]
    assert COUNTRY_NAMES[letters_code("DE")] == "Germany"


def test_enriched_fields_need_a_database() -> None:
    obj = types.SimpleNamespace(conf=Path("/mo/a/mo.conf"), filter=compile_filter("src country DE"),
                                windows=(WindowSpec("w", (parse_field("asd(dst host)"), parse_field("octets"))),))
    errors = unprovided([obj], frozenset())
    assert len(errors) == 1
    assert "dst_as_org, src_country need a GeoIP/ASN database" in str(errors[0])
    assert "--geoip" in str(errors[0])
    assert unprovided([obj], frozenset({"src_country", "dst_as_org"})) == []


def test_filter_values_of_enriched_fields() -> None:
    with pytest.raises(FilterError, match="two-letter code"):
        compile_filter("src country DEU")
    assert compile_filter("dst asn 15169").fields == ("dst_asn",)


def test_config_keys_geoip_and_geodb(tmp_path: Path) -> None:
    from appliance.collector.config.settings import load_config
    from appliance.errors import ConfigError

    conf = tmp_path / "collector.conf"
    conf.write_text('{"geodb": "/var/lib/mirrorflow/geoip", /* xenoeye */ "geoip": ["/a.mmdb", "/b.mmdb"]}')
    cfg = load_config(conf)
    assert cfg.geoip == [Path("/a.mmdb"), Path("/b.mmdb"), Path("/var/lib/mirrorflow/geoip")]
    assert not [w for w in getattr(cfg, "warnings", []) if "geo" in w]
    conf.write_text('{"geoip": 5}')
    with pytest.raises(ConfigError, match="geoip must be a .mmdb file or folder"):
        load_config(conf)


def test_range_csv_matches_a_linear_scan(tmp_path: Path) -> None:
    """ip-location-db's CSV (the AS data shipped on npm): every lookup equals a scan of the lines."""
    rng = random.Random(5)
    for version, bits in ((4, 32), (6, 128)):
        cuts = sorted(rng.sample(range(1, 2**bits - 1), 400)) if version == 4 else \
            sorted({rng.getrandbits(128) for _ in range(400)})
        lines, ranges = [], []
        for k in range(0, len(cuts) - 1, 2):
            lo, hi = cuts[k], cuts[k + 1] - 1
            if rng.random() < 0.3:
                continue  # a gap: unknown
            asn = rng.randrange(1, 70000)
            org = f"Org, {asn} \"x\"" if asn % 3 == 0 else f"Org {asn}"
            ranges.append((lo, hi, asn, org))
            w = ipaddress.ip_address if rng.random() < 0.8 else str
            lines.append(f'{w(lo)},{w(hi)},{asn},"{org.replace(chr(34), chr(34) * 2)}"')
        ranges.append((2**bits - 1, 2**bits - 1, 7, "Last"))  # the very last address
        lines.append(f"{ipaddress.ip_address(2**bits - 1) if version == 4 else ipaddress.IPv6Address(2**bits - 1)},"
                     f"{ipaddress.ip_address(2**bits - 1) if version == 4 else ipaddress.IPv6Address(2**bits - 1)},"
                     "7,Last")
        rng.shuffle(lines)
        path = tmp_path / f"asn-ipv{version}.csv"
        path.write_text("\n".join(lines) + "\n")
        from appliance.collector.enrich.csvranges import load_csv

        db = load_csv(path)
        probes = [0, 1, 2**bits - 1, 2**bits - 2] + [x for lo, hi, _, _ in ranges for x in (lo - 1, lo, hi, hi + 1)]
        probes += [rng.getrandbits(bits) for _ in range(300)]
        for v in probes:
            if not 0 <= v < 2**bits:
                continue
            want = next(((a, o) for lo, hi, a, o in ranges if lo <= v <= hi), (0, ""))
            ip = ipaddress.IPv4Address(v) if version == 4 else ipaddress.IPv6Address(v)
            got = db.get(str(ip))
            assert (got["asn"], TEXTS.text(got["as_org"])) == want, ip


def test_range_csv_bad_lines(tmp_path: Path) -> None:
    from appliance.collector.enrich.csvranges import load_csv

    p = tmp_path / "x.csv"
    p.write_text("1.0.0.0,1.0.0.255,13335,Cloudflare\nnot-an-ip,1.0.0.1,5,x\n")
    with pytest.raises(GeoError, match=r"x.csv:2: expected FIRST,LAST"):
        load_csv(p)
    p.write_text("1.0.0.0,::1,13335,Cloudflare\n")
    with pytest.raises(GeoError, match="one address family"):
        load_csv(p)
    p.write_text("1.0.0.0,1.0.0.9,ASx,Cloudflare\n")
    with pytest.raises(GeoError, match="not an AS number"):
        load_csv(p)


def test_merged_databases_first_one_that_knows_wins(tmp_path: Path) -> None:
    """Several databases are merged into one table at load: the first listed that knows an
    address gives each value; a value only the second has still comes from it."""
    a = MMDBWriter(ip_version=6, database_type="GeoLite2-City", ipv4_compatible=True)
    a.insert_network(IPSet(["10.0.0.0/8"]), {"country": {"iso_code": "DE"}, "city": {"names": {"en": "Berlin"}}})
    a.insert_network(IPSet(["2001:db8::/32"]), {"country": {"iso_code": "NL"}})
    a.to_db_file(str(tmp_path / "a.mmdb"))
    b = MMDBWriter(ip_version=4, database_type="GeoLite2-Country")
    b.insert_network(IPSet(["10.0.0.0/7"]), {"country": {"iso_code": "FR"}})  # 10/8 and 11/8
    b.insert_network(IPSet(["10.1.0.0/16"]), {"country": {"iso_code": "JP"}})
    b.to_db_file(str(tmp_path / "b.mmdb"))
    e = Enricher([tmp_path / "a.mmdb", tmp_path / "b.mmdb"])
    addrs = ["10.0.0.1", "10.1.2.3", "11.0.0.1", "12.0.0.1", "2001:db8::5", "::ffff:11.0.0.1"]
    cols: dict[int, np.ndarray] = {REGISTRY["src_addr"].column: np.zeros(len(addrs), np.uint64),
                                   REGISTRY["dst_addr"].column: np.zeros(len(addrs), np.uint64)}
    v6 = np.zeros((len(addrs), 2), dtype=np.uint64)
    for i, s in enumerate(addrs):
        ip = ipaddress.ip_address(s)
        if ip.version == 4:
            cols[REGISTRY["src_addr"].column][i] = int(ip)
        else:
            v6[i] = (int(ip) >> 64, int(ip) & (2**64 - 1))
    batch = FlowBatch(len(addrs), cols, {REGISTRY["src_addr6"].column6: v6})
    e.enrich(batch)
    assert [code_letters(int(c)) for c in batch["src_country"]] == ["DE", "DE", "FR", "", "NL", "FR"]
    assert [TEXTS.text(int(c)) for c in batch["src_city"]] == ["Berlin", "Berlin", "", "", "", ""]
    assert e.provides >= {"src_city", "dst_country"}


def test_networks_file_most_specific_prefix_wins(tmp_path: Path) -> None:
    from appliance.collector.enrich import load_networks

    text = """# prefix name role site
    10.20.0.0/16      office   internal  paris
    10.20.5.0/24      servers  dmz       paris
    10.20.5.128/25    "db farm"
    2001:db8:90::/48  lab      internal  "lyon 2"
    0.0.0.0/0         internet external
    192.0.2.7/32      one
    """
    p = tmp_path / "networks"
    p.write_text(text)
    db = load_networks(p)
    nets = []
    for line in text.splitlines()[1:]:
        import shlex

        w = shlex.split(line)
        if w:
            nets.append((ipaddress.ip_network(w[0]), (w + ["", ""])[1:4]))
    rng = random.Random(3)
    probes = ["10.20.0.0", "10.20.4.255", "10.20.5.0", "10.20.5.127", "10.20.5.128", "10.20.5.255", "10.20.6.0",
              "10.21.0.0", "0.0.0.0", "255.255.255.255", "192.0.2.6", "192.0.2.7", "192.0.2.8", "2001:db8:90::1",
              "2001:db8:91::", "::1"]
    probes += [str(ipaddress.IPv4Address(0x0A140000 + rng.randrange(1 << 16))) for _ in range(300)]
    for a in probes:
        ip = ipaddress.ip_address(a)
        inside = [(n, rec) for n, rec in nets if n.version == ip.version and ip in n]
        want = max(inside, key=lambda x: x[0].prefixlen)[1] if inside else ["", "", ""]
        got = db.get(a)
        assert [TEXTS.text(got.get(k, 0)) for k in ("net_name", "net_role", "net_site")] == want, a
    assert db.provides == ("net_name", "net_role", "net_site")


@pytest.mark.parametrize(("text", "words"), [
    ("10.0.0.0/8\n", "expected PREFIX NAME"), ("10.0.0.300/8 x\n", "not an IPv4 or IPv6 prefix"),
    ("10.0.0.0/8 a\n10.0.0.0/8 b\n", "already named on line 1"), ("10.0.0.0/8 'a\n", "No closing quotation"),
])
def test_networks_file_errors(tmp_path: Path, text: str, words: str) -> None:
    from appliance.collector.enrich import load_networks

    p = tmp_path / "networks"
    p.write_text(text)
    with pytest.raises(GeoError, match=words):
        load_networks(p)


def test_networks_in_filters_and_windows(tmp_path: Path, dbs: types.SimpleNamespace) -> None:
    p = tmp_path / "networks"
    p.write_text("10.0.0.0/8 ten inside\n10.1.0.0/16 'ten one' inside\n2000::/3 six outside\n")
    e = Enricher([dbs.country], networks=p)
    batch = _batch(np.random.default_rng(9), [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("10.1.0.0/16")]
                   * 20 + dbs.nets, 1500)
    e.enrich(batch)

    def name(side: str, i: int) -> str:
        ip = ipaddress.ip_address(_addr(batch, side, i))
        ip = getattr(ip, "ipv4_mapped", None) or ip
        if ip in ipaddress.ip_network("10.1.0.0/16"):
            return "ten one"
        if ip in ipaddress.ip_network("10.0.0.0/8"):
            return "ten"
        return "six" if ip.version == 6 and ip in ipaddress.ip_network("2000::/3") else ""

    src = [name("src", i) for i in range(batch.n)]
    assert [TEXTS.text(int(c)) for c in batch["src_net_name"]] == src
    f = compile_filter("src net-name 'ten one' or dst net-role outside")
    dst_role = ["outside" if name("dst", i) == "six" else ("inside" if name("dst", i) else "")
                for i in range(batch.n)]
    assert f.evaluate(batch).tolist() == [s == "ten one" or r == "outside" for s, r in zip(src, dst_role)]
    assert any(s == "ten one" for s in src)
    assert unprovided([types.SimpleNamespace(conf=Path("x"), filter=f, windows=())], frozenset()) != []
    assert "networks file" in str(unprovided([types.SimpleNamespace(conf=Path("x"), filter=f, windows=())],
                                              frozenset())[0])


def test_interface_names_from_devices_conf(tmp_path: Path) -> None:
    from appliance.collector.config.devices import load_devices
    from appliance.collector.receive.packets import address_to_words
    from appliance.errors import ConfigError

    conf = tmp_path / "devices.conf"
    conf.write_text('[{"ip": "192.0.2.1", "interfaces": {"1": "ge-0/0/1", "2": {"name": "xe-1/0/0", '
                    '"description": "uplink"}}}, {"ip": "2001:db8::9", "id": 5, "interfaces": {"1": "eth0"}}]')
    devices = load_devices(conf)
    e = Enricher([], devices=devices)
    assert e.provides == {"in_if_name", "out_if_name"}
    rng = np.random.default_rng(2)
    n = 500
    exporters = ["192.0.2.1", "2001:db8::9", "192.0.2.77"]
    which = rng.integers(0, 3, n)
    dev6 = np.array([address_to_words(exporters[k]) for k in which], dtype=np.uint64)
    in_if, out_if = rng.integers(0, 4, n).astype(np.uint64), rng.integers(0, 4, n).astype(np.uint64)
    batch = FlowBatch(n, {REGISTRY["in_if"].column: in_if, REGISTRY["out_if"].column: out_if},
                      {REGISTRY["dev_ip6"].column6: dev6})
    e.enrich(batch)
    names = {("192.0.2.1", 1): "ge-0/0/1", ("192.0.2.1", 2): "xe-1/0/0", ("2001:db8::9", 1): "eth0"}
    for col, side in (("in_if", "in_if_name"), ("out_if", "out_if_name")):
        want = [names.get((exporters[k], int(i)), "") for k, i in zip(which, batch[col])]
        assert [TEXTS.text(int(c)) for c in batch[side]] == want
    f = compile_filter("src if-name 'ge-0/0/1' or dst if-name eth0")
    assert f.evaluate(batch).tolist() == [names.get((exporters[k], int(a))) == "ge-0/0/1" or
                                          names.get((exporters[k], int(b))) == "eth0"
                                          for k, a, b in zip(which, in_if, out_if)]
    assert parse_field("dst if-name").source == "out_if_name"
    conf.write_text('[{"ip": "192.0.2.1", "interfaces": {"x1": "ge-0/0/1"}}]')
    with pytest.raises(ConfigError, match="must be an ifIndex"):
        load_devices(conf)


def test_check_config_knows_what_the_files_provide(tmp_path: Path, dbs: types.SimpleNamespace,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.cli import main

    (tmp_path / "mo" / "a").mkdir(parents=True)
    (tmp_path / "mo" / "a" / "mo.conf").write_text(
        '{"filter": "src country DE", "fwm": [{"name": "w", "fields": ["asd(src host)", "octets"]}]}')
    conf = tmp_path / "c.conf"
    conf.write_text(json.dumps({"mo-dir": str(tmp_path / "mo"), "geoip": [str(dbs.country)]}))
    assert main(["check-config", "-c", str(conf)]) == 1
    err = capsys.readouterr().err
    assert "src_as_org need a GeoIP/ASN database" in err and "src_country" not in err.split("need")[0]
    conf.write_text(json.dumps({"mo-dir": str(tmp_path / "mo"), "geoip": [str(dbs.country), str(dbs.asn)]}))
    assert main(["check-config", "-c", str(conf)]) == 0
    conf.write_text(json.dumps({"mo-dir": str(tmp_path / "mo"), "geoip": [str(tmp_path / "gone.mmdb")]}))
    assert main(["check-config", "-c", str(conf)]) == 1
    assert "no such GeoIP/ASN database" in capsys.readouterr().err
