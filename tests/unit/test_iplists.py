"""IP lists: file format, overlapping prefixes, v4 + v6 in one file, precise errors."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.collector.filter import FilterError, IPLists, compile_filter
from appliance.collector.flowbatch import FlowBatch
from appliance.netflow.registry import REGISTRY


def write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_bytes(text.encode())
    return p


def test_overlapping_prefixes_match_everything_they_cover(tmp_path: Path) -> None:
    """xenoeye's trie loses 10.9.9.9 when 10.1.2.0/24 is listed after 10.0.0.0/8."""
    write(tmp_path, "nets", "10.0.0.0/8\n10.1.2.0/24\n")
    lst = IPLists.load(tmp_path)["nets"]
    assert "10.9.9.9" in lst and "10.1.2.3" in lst and "10.255.255.255" in lst
    assert "11.0.0.0" not in lst and "9.255.255.255" not in lst
    assert lst.v4_lo.tolist() == [0x0A000000] and lst.v4_hi.tolist() == [0x0AFFFFFF]
    # the other order, and a more specific prefix first
    write(tmp_path, "nets", "10.1.2.0/24\n10.0.0.0/8\n")
    assert "10.9.9.9" in IPLists.load(tmp_path)["nets"]


def test_v4_and_v6_in_one_file_last_line_without_newline(tmp_path: Path) -> None:
    write(tmp_path, "mixed", "# our networks\n192.0.2.0/24\n\n   // v6 too\n2001:db8::/32  # docs\n198.51.100.7")
    lst = IPLists.load(tmp_path)["mixed"]
    assert "192.0.2.200" in lst and "2001:db8:ffff::1" in lst
    assert "198.51.100.7" in lst  # the last line, no newline after it
    assert "198.51.100.8" not in lst and "2001:db9::" not in lst
    assert (lst.prefixes4, lst.prefixes6) == (2, 1)


def test_ipv6_without_mask_is_one_host(tmp_path: Path) -> None:
    """xenoeye reads a bare IPv6 address as /32."""
    write(tmp_path, "h", "2001:db8::1\n")
    lst = IPLists.load(tmp_path)["h"]
    assert "2001:db8::1" in lst
    assert "2001:db8::2" not in lst and "2001:db8:1::1" not in lst


def test_crlf_comments_and_host_bits(tmp_path: Path) -> None:
    write(tmp_path, "w", "10.1.2.3/24\r\n# 11.0.0.0/8\r\n172.16.0.1 // one host\r\n")
    lst = IPLists.load(tmp_path)["w"]
    assert "10.1.2.200" in lst and "172.16.0.1" in lst
    assert "11.0.0.1" not in lst and "172.16.0.2" not in lst


def test_adjacent_prefixes_merge(tmp_path: Path) -> None:
    write(tmp_path, "a", "10.0.0.0/25\n10.0.0.128/25\n10.0.1.0/24\n::/1\n8000::/1\n")
    lst = IPLists.load(tmp_path)["a"]
    assert list(zip(lst.v4_lo.tolist(), lst.v4_hi.tolist())) == [(0x0A000000, 0x0A0001FF)]
    assert lst.v6_lo.tolist() == [[0, 0]] and lst.v6_hi.tolist() == [[2**64 - 1, 2**64 - 1]]


def test_directory_rules(tmp_path: Path) -> None:
    write(tmp_path, "good", "192.0.2.0/24")
    write(tmp_path, ".hidden", "not an address")
    write(tmp_path, "good~", "not an address")
    (tmp_path / "subdir").mkdir()
    write(tmp_path, "empty", "")
    lists = IPLists.load(tmp_path)
    assert lists.names() == ["empty", "good"] and len(lists) == 2
    assert "good" in lists and lists.get("nope") is None
    assert "192.0.2.1" not in lists["empty"]
    assert len(IPLists.empty()) == 0


def test_bad_entry_names_file_line_and_column(tmp_path: Path) -> None:
    p = write(tmp_path, "bad", "10.0.0.0/8\n# fine\n  10.0.0.300/24 # typo\n")
    with pytest.raises(FilterError) as info:
        IPLists.load(tmp_path)
    err = info.value
    assert (err.source, err.line, err.column) == (str(p), 3, 3)
    assert str(err).startswith(f"{p}:3:3: '10.0.0.300/24' is not an IPv4 or IPv6 address or prefix")
    assert "e.g. 192.0.2.0/24" in str(err)
    assert str(err).splitlines()[-1] == "    ^"


def test_two_prefixes_on_one_line_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "two", "10.0.0.0/8 11.0.0.0/8\n")
    with pytest.raises(FilterError, match=r":1:12: one address or prefix per line; move '11.0.0.0/8'"):
        IPLists.load(tmp_path)


def test_unreadable_directory_and_file(tmp_path: Path) -> None:
    with pytest.raises(FilterError, match="cannot read the IP list directory"):
        IPLists.load(tmp_path / "missing")
    write(tmp_path, "latin", "")
    (tmp_path / "latin").write_bytes(b"10.0.0.0/8 # caf\xe9\n")
    with pytest.raises(FilterError, match="not UTF-8 text"):
        IPLists.load(tmp_path)


def test_filter_refers_to_loaded_list(tmp_path: Path) -> None:
    write(tmp_path, "mynets", "10.0.0.0/8\n10.1.2.0/24\n2001:db8::/32")
    lists = IPLists.load(tmp_path)
    addrs = [0x0A090909, 0x0B000001, 0]
    six = np.array([[0, 0], [0, 0], [0x20010DB8 << 32, 7]], dtype=np.uint64)
    b = FlowBatch(3, {REGISTRY.column("src_addr"): np.array(addrs, dtype=np.uint64)},
                  {REGISTRY["src_addr6"].column6: six})
    assert compile_filter("src net mynets", lists).evaluate(b).tolist() == [True, False, True]
    with pytest.raises(FilterError, match=f"no list 'other' in {tmp_path}"):
        compile_filter("net other", lists)


prefixes = st.one_of(
    st.tuples(st.just(4), st.integers(0, 2**32 - 1), st.integers(0, 32)),
    st.tuples(st.just(6), st.integers(0, 2**128 - 1), st.integers(0, 128)),
)


@settings(max_examples=100, deadline=None)
@given(nets=st.lists(prefixes, max_size=40), probes=st.lists(prefixes, max_size=40))
def test_random_lists_match_like_ipaddress(nets: list[tuple[int, int, int]],
                                           probes: list[tuple[int, int, int]]) -> None:
    networks = [(ipaddress.IPv4Network if v == 4 else ipaddress.IPv6Network)((a, m), strict=False)
                for v, a, m in nets]
    text = "\n".join(str(n) for n in networks)
    lst = IPLists.from_texts({"l": text})["l"]
    # probe random addresses and each network's edges
    addrs = [ipaddress.IPv4Address(a) if v == 4 else ipaddress.IPv6Address(a) for v, a, _ in probes]
    for n in networks:
        addrs += [n.network_address, n.broadcast_address]
        if int(n.network_address) > 0:
            addrs.append(n.network_address - 1)
        if int(n.broadcast_address) < (2**32 - 1 if n.version == 4 else 2**128 - 1):
            addrs.append(n.broadcast_address + 1)
    for addr in addrs:
        assert (addr in lst) == any(addr.version == n.version and addr in n for n in networks), addr
