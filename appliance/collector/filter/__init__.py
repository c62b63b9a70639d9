"""The filter language of monitoring objects, and the IP lists filters refer to.

Public API::

    lists = IPLists.load(Path("/var/lib/mirrorflow/iplists"))   # or IPLists.empty()
    flt = compile_filter("net mynets and dst port https", lists, source="mo/web/mo.conf")
    mask = flt.evaluate(batch)        # bool[batch.n], vectorised over the columns
    flt.text, flt.fields              # the expression; registry columns it reads
    except FilterError as e: e.source, e.position, e.line, e.column

Grammar (xenoeye's, keywords case-insensitive, ``//`` and ``/* */`` comments)::

    expr   := term {or term}
    term   := factor {and factor}
    factor := not factor | '(' expr ')' | rule
    rule   := [src|dst] FIELD value {or value}  |  tcp | udp | icmp | icmp6 | sctp | gre | esp

Fields: xenoeye's filter names — host, net, host6, net6, port, proto, tos, tcp-flags, ifidx,
as, vlan, mac, min-ttl, max-ttl, frag-id, endreason, d1qvlan, d1qcvlan, bgp-nh, dir, fwdst,
smplr, vrf, dev-ip, dev-ip6, dev-id (plus next-hop) — and every registry field by its
registry name or xenoeye alias (``flow_label6 5``, ``in_if 3``, ``src_as 64500``; ``-`` and
``_`` are interchangeable). Without ``src``/``dst`` a field with both forms matches either;
single-column xenoeye names (proto, tcp-flags, ...) accept and ignore a direction as
xenoeye does; a direction on a registry name is an error.

Values: numbers (``010`` is ten, ``0x11`` is hex), ranges ``lo-hi``, names (``proto tcp``,
``port https`` from a built-in table, then the system services file; ``dir ingress``,
``endreason idle``, ``fwdst dropped``), IPv4/IPv6 addresses and prefixes (``host`` and
``net`` are the same), IP list names, MAC addresses, ``'strings'`` for string fields.
``host``/``net``/``bgp-nh``/``dev-ip`` with an IPv4 value read the IPv4 columns, with an
IPv6 value the IPv6 columns, with an IP list both parts; ``host6``/``net6`` only IPv6.

After a value, ``or`` continues the value list unless the next word starts a rule: so
``port 80 or 443`` is one rule and ``dst port 80 or src port 22`` keeps both directions.
Values bind tighter than ``and``/``or``: ``port 80 or 443 and tcp`` = ``(port 80 or 443) and tcp``.
An IP list named like a field must be written after a field only (``net port`` is the list).

``tcp-flags syn`` / ``tcp-flags syn+ack``: the flow's accumulated flags contain *all* the
named bits (a flow that saw SYN then ACK matches ``syn``). A number or range compares the
whole flags value, as in xenoeye: ``tcp-flags 2`` (or ``0x02``) is "only SYN".

Fields missing from a batch compare as 0 (addresses as 0.0.0.0 / ::), strings as ''. So an
IPv6 flow has src_addr 0.0.0.0 and ``not net 10.0.0.0/8`` is true for it.

Functions (xenoeye's): ``div(octets, packets) 100-1500``, ``div_r(a, b, N)`` / ``divr``,
``div_l(a, b, N)`` / ``divl``, ``min(src port, dst port) 0-1023``, ``mfreq(src port, dst port) 80``
take numbers and ranges; ``tfstr(tcp-flags) SYN or 'ACK+PSH'``, ``portstr(dst port) 'https (443)'``,
``ppstr(src port, dst port) '40000 -> https(443)'`` take texts, compared case-insensitively
(see `appliance.collector.fields.functions` for their exact values). mfreq's frequency map belongs
to the compiled filter and counts every flow the filter is applied to (for a nested object:
the flows its parent matched), each argument once.

Limits: a filter is at most ``MAX_FILTER_CHARS`` (65,536) characters and nests ``(`` and
``not`` at most ``MAX_FILTER_DEPTH`` (64) deep; beyond either the filter is refused with a
`FilterError` pointing at the character where the limit was crossed (never a RecursionError).

Not supported: GeoIP/AS functions (they need xenoeye's geo databases), ``dev-mark``,
``class*``, sFlow payload fields (``dns-name``, ``sni``); floating-point fields.
"""

from __future__ import annotations

from appliance.collector.filter._compile import Filter, compile_filter
from appliance.collector.filter._errors import FilterError
from appliance.collector.filter._iplists import IPList, IPLists
from appliance.collector.filter._parser import MAX_DEPTH as MAX_FILTER_DEPTH
from appliance.collector.filter._parser import MAX_FILTER_CHARS
from appliance.collector.filter._sql import filter_to_sql  # the same language as DuckDB SQL (archive)

__all__ = ["compile_filter", "filter_to_sql", "Filter", "FilterError", "IPLists", "IPList", "MAX_FILTER_DEPTH",
           "MAX_FILTER_CHARS"]
