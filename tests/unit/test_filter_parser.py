"""Filter language: every construct parses to the expected tree; every error points at its cause."""

from __future__ import annotations

import pytest

from appliance import MirrorflowError
from appliance.collector.config.jsonc import ConfigError
from appliance.collector.filter import FilterError, IPLists, compile_filter

LISTS = IPLists.from_texts({"mynets": "10.0.0.0/8\n2001:db8::/32\n", "Bad": "192.0.2.0/24"})


def canon(text: str) -> str:
    return str(compile_filter(text, LISTS).ast)


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("", ""),
        ("  // only a comment\n /* and another */ ", ""),
        ("port 80", "port 80"),
        ("PORT 80", "port 80"),
        ("dst port 80", "dst port 80"),
        ("SRC Port 80", "src port 80"),
        ("port 80 or 443", "port 80 or 443"),
        ("port 80 or 443 or 1024-65535", "port 80 or 443 or 1024-65535"),
        # or between full rules keeps each rule's direction (xenoeye drops it)
        ("dst port 80 or src port 22", "(dst port 80) or (src port 22)"),
        ("host 1.2.3.4 or host 5.6.7.8", "(host 1.2.3.4/32) or (host 5.6.7.8/32)"),
        ("host 1.2.3.4 or 5.6.7.8", "host 1.2.3.4/32 or 5.6.7.8/32"),
        ("port 80 or 443 and proto tcp", "(port 80 or 443) and (proto 6)"),
        ("port 80 or not port 22", "(port 80) or (not (port 22))"),
        ("port 80 or (port 22)", "(port 80) or (port 22)"),
        ("net mynets or 192.0.2.0/24", "net mynets or 192.0.2.0/24"),
        ("net 10.0.0.0/8 and dst port 443 or src host 192.0.2.1",
         "((net 10.0.0.0/8) and (dst port 443)) or (src host 192.0.2.1/32)"),
        ("port 1 or port 2 and port 3", "(port 1) or ((port 2) and (port 3))"),
        ("(port 1 or port 2) and port 3", "((port 1) or (port 2)) and (port 3)"),
        ("not port 22", "not (port 22)"),
        ("not not port 22", "not (not (port 22))"),
        ("NOT NOT NOT tcp", "not (not (not (proto 6)))"),
        ("not (port 1 and port 2)", "not ((port 1) and (port 2))"),
        ("((port 1))", "port 1"),
        # decimal is decimal; hex allowed
        ("proto 010", "proto 10"),
        ("port 0x16", "port 22"),
        ("port 0X1f-0x20", "port 31-32"),
        # names
        ("proto tcp", "proto 6"),
        ("proto UDP or icmp6", "proto 17 or 58"),  # protocol names are values of proto
        ("port 80 or udp", "(port 80) or (proto 17)"),  # and rules elsewhere
        ("proto UDP or 58", "proto 17 or 58"),
        ("tcp", "proto 6"),
        ("udp and port dns", "(proto 17) and (port 53)"),
        ("icmp or icmp6", "(proto 1) or (proto 58)"),
        ("port https", "port 443"),
        ("port ssh or http", "port 22 or 80"),
        ("port ftp-data", "port 20"),
        ("port ftp-data-ssh", "port 20-22"),
        ("port http-https", "port 80-443"),
        ("dir egress", "dir 1"),
        ("endreason idle or 3", "endreason 1 or 3"),
        ("tcp-flags syn", "tcp-flags syn"),
        ("tcp-flags SYN+ACK", "tcp-flags syn+ack"),
        ("tcp-flags syn|fin", "tcp-flags fin+syn"),
        ("tcp-flags 2 or 0x12", "tcp-flags 2 or 18"),
        # addresses
        ("host 10.1.2.3/8", "host 10.0.0.0/8"),
        ("net 2001:db8::1", "net 2001:db8::1/128"),
        ("host6 2001:db8::/32", "host6 2001:db8::/32"),
        ("dst net6 mynets", "dst net6 mynets"),
        ("src host mynets", "src host mynets"),
        ("dev-ip 192.0.2.1 or 2001:db8::9", "dev-ip 192.0.2.1/32 or 2001:db8::9/128"),
        ("bgp-nh 192.0.2.1", "bgp-nh 192.0.2.1/32"),
        ("mac 00:11:22:33:44:55", "mac 73588229205"),
        ("src mac 0011.2233.4455", "src mac 73588229205"),
        ("dst mac 00-11-22-33-44-55", "dst mac 73588229205"),
        # every registry field by its own name, and xenoeye aliases
        ("flow_label6 5", "flow_label6 5"),
        ("in_if 3", "in_if 3"),
        ("src_as 64500", "src_as 64500"),
        ("flow-label6 5", "flow_label6 5"),
        ("l4_dst_port https", "dst_port 443"),
        ("dst_port 1-1024", "dst_port 1-1024"),
        ("src_addr 10.0.0.0/8", "src_addr 10.0.0.0/8"),
        ("src_addr6 2001:db8::/32", "src_addr6 2001:db8::/32"),
        ("if_name 'eth0' or \"ge-0/0/1\"", "if_name 'eth0' or 'ge-0/0/1'"),
        ("bytes 0-100", "bytes 0-100"),
        # xenoeye names, every one
        ("tos 0x10 and ifidx 3 and as 64500 and vlan 10", "(tos 16) and (ifidx 3) and (as 64500) and (vlan 10)"),
        ("min-ttl 1 and max-ttl 64 and frag-id 7", "(min-ttl 1) and (max-ttl 64) and (frag-id 7)"),
        ("d1qvlan 5 and d1qcvlan 6 and fwdst 64 and smplr 1",
         "(d1qvlan 5) and (d1qcvlan 6) and (fwdst 64) and (smplr 1)"),
        ("src vrf 1 and dev-id 7 and dev-ip6 ::1", "(src vrf 1) and (dev-id 7) and (dev-ip6 ::1/128)"),
        # a direction on a single-column xenoeye name is accepted and ignored, as in xenoeye
        ("src proto tcp", "proto 6"),
        # comments anywhere
        ("port /* web */ 80 // end", "port 80"),
        ("port 80\n  or 443 /* multi\nline */ and tcp", "(port 80 or 443) and (proto 6)"),
    ],
)
def test_parses_to(text: str, tree: str) -> None:
    assert canon(text) == tree


@pytest.mark.parametrize(
    ("text", "at", "message"),
    [
        ("port", "", "expected a port number, a range like 1024-65535 or a service name like https after 'port', "
                     "got end of filter"),
        ("port 80 or", "", "expected a port number"),
        ("port foo", "foo", "'foo' is not a valid value for 'port'"),
        ("port 70000", "70000", "70000 is out of range for 'port' (0-65535)"),
        ("port 1-70000", "70000", "out of range"),
        ("port 1024-80", "1024-80", "range 1024-80 is empty; write the lower bound first (80-1024)"),
        ("port -5", "-5", "negative numbers never match"),
        ("proto tcpx", "tcpx", "'tcpx' is not a valid value for 'proto'; expected a protocol number or a name"),
        ("proto 256", "256", "out of range for 'proto' (0-255)"),
        ("tcp-flags syn+foo", "syn+foo", "not a valid value for 'tcp-flags'"),
        ("prot 6", "prot", "unknown field 'prot'; did you mean 'proto'?"),
        ("zzzz 6", "zzzz", "unknown field 'zzzz'"),
        ("10.0.0.1", "10.0.0.1", "a value needs a field before it: write 'host 10.0.0.1'"),
        ("mynets", "mynets", "a value needs a field before it"),
        ("80", "80", "write e.g. 'port 80'"),
        ("port 80 && tcp", "&&", "expected 'and', 'or' or the end of the filter, got '&&'"),
        ("&& tcp", "&&", "'&&' is not part of the filter language; write 'and'"),
        ("port 80 or", "", "got end of filter"),
        ("port 80 and", "", "expected a rule"),
        ("and port 80", "and", "expected a rule"),
        ("not", "", "expected a rule"),
        ("(port 80", "", "expected ')' to close the '(' at column 1, got end of filter"),
        ("port 80)", ")", "')' has no matching '('"),
        ("()", ")", "expected a rule"),
        ("port 80 443", "443", "expected 'and', 'or' or the end of the filter, got '443'"),
        ("port 80, 443", ",", "values are separated by 'or', not ','"),
        ("src", "", "expected a field name after 'src'"),
        ("dst and port 1", "and", "expected a field name after 'dst'"),
        ("src tcp", "src", "'tcp' is a protocol; it takes no 'src'"),
        ("src src_as 1", "src_as", "'src_as' names one column already; drop 'src'"),
        ("host 10.0.0.300", "10.0.0.300", "'10.0.0.300' is not a valid IPv4 or IPv6 address or prefix"),
        ("host 10.0.0.0/33", "10.0.0.0/33", "not a valid IPv4 or IPv6 address or prefix"),
        ("net nolist", "nolist", "'nolist' is not an address, prefix or IP list name (no list 'nolist' loaded)"),
        ("net bad", "bad", "list names are case-sensitive: did you mean 'Bad'?"),
        ("host6 10.0.0.1", "10.0.0.1", "'host6' matches IPv6 addresses; for 10.0.0.1 use host"),
        ("src_addr 2001:db8::1", "2001:db8::1", "'src_addr' is an IPv4 field; for 2001:db8::1 use src_addr6"),
        ("mac 00:11:22", "00:11:22", "not a MAC address"),
        ("sni 'x'", "sni", "sFlow payload parsing"),
        ("class0 'x'", "class0", "classification"),
        ("dev-mark 1", "dev-mark", "not supported yet"),
        ("asd(src port) 'Google'", "asd", "takes one address"),
        ("nosuch(port) 1", "nosuch", "unknown function 'nosuch(...)'"),
        ("sampling_probability 1", "sampling_probability", "floating-point field"),
        ("port 'abc", "'abc", "string is not closed"),
        ("port 80 /* open", "/*", "comment '/*' is not closed"),
        ("port 80 or or 443", "or 443", "expected a port number"),
    ],
)
def test_error_points_at_cause(text: str, at: str, message: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(text, LISTS)
    err = info.value
    expected_pos = text.rindex(at) if at else len(text)
    assert message in err.reason
    assert err.position == expected_pos, (err.position, expected_pos, str(err))
    assert err.line == 1 and err.column == expected_pos + 1
    assert str(err).startswith(f"<filter>:1:{expected_pos + 1}: ")
    lines = str(err).splitlines()
    assert lines[-2] == "  " + text and lines[-1] == "  " + " " * expected_pos + "^"


def test_error_on_a_later_line_counts_lines_and_columns() -> None:
    text = "net mynets // ours\n  and dst port htps"
    with pytest.raises(FilterError) as info:
        compile_filter(text, LISTS, source="mo/web/mo.conf")
    err = info.value
    assert (err.line, err.column, err.position) == (2, 16, text.index("htps"))
    assert err.source == "mo/web/mo.conf"
    assert str(err).splitlines() == [
        "mo/web/mo.conf:2:16: 'htps' is not a valid value for 'port'; expected a port number,"
        " a range like 1024-65535 or a service name like https",
        "    and dst port htps",
        "                 ^",
    ]


def test_filter_error_is_a_config_error_and_a_mirrorflow_error() -> None:
    with pytest.raises(FilterError) as info:
        compile_filter("port x")
    assert isinstance(info.value, ConfigError) and isinstance(info.value, MirrorflowError)
    assert info.value.path == "<filter>"


def test_list_names_need_the_lists() -> None:
    with pytest.raises(FilterError, match="no list 'mynets'"):
        compile_filter("net mynets")


def test_text_and_fields() -> None:
    f = compile_filter("net 10.0.0.0/8 and dst port 443 or src host 192.0.2.1")
    assert f.text == "net 10.0.0.0/8 and dst port 443 or src host 192.0.2.1"
    assert f.fields == ("src_addr", "dst_port", "dst_addr")
    assert compile_filter("host 2001:db8::1").fields == ("src_addr6", "dst_addr6")
    assert compile_filter("host mynets", LISTS).fields == ("src_addr", "dst_addr", "src_addr6", "dst_addr6")
    assert compile_filter("dst mac 00:11:22:33:44:55").fields == ("post_dst_mac", "dst_mac")
    assert compile_filter("").fields == () and compile_filter("").match_all
    assert not compile_filter("tcp").match_all


def test_port_names_come_from_the_built_in_table(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_services(name: str, proto: str) -> int:
        raise OSError("no services file")

    monkeypatch.setattr(socket, "getservbyname", no_services)
    assert canon("port https or ssh or domain") == "port 443 or 22 or 53"
    with pytest.raises(FilterError, match="not a valid value"):
        compile_filter("port nosuchservice")
