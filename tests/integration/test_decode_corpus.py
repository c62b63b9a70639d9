"""Every canonical capture of the corpus decodes to exactly what Wireshark decoded.

The oracle is ``../shared/corpus/expected/netflow/*.jsonl`` (tshark 4.0.17): per record, the
raw bytes of every template field (``ies``) and the common fields under canonical names.
A record matches when its kind, template id and every field's raw bytes are equal; then
each named field's value must be equal too. Where we decode *more* than Wireshark on
purpose, `MORE_THAN_WIRESHARK` lists the file, the number of extra records and why.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from appliance.collector.decode.decoder import Decoder
from appliance.collector.decode.dump import records
from appliance.collector.receive.pcapfile import read_pcap

# file → (records we decode that tshark did not, why)
MORE_THAN_WIRESHARK = {
    "netflow/akvorado/orig/data+templates.pcap": (
        11,
        "a data set precedes its template in the same packet; tshark skips it, we hold it and "
        "decode it when the template arrives",
    ),
    "netflow/python-netflow/v9_softflowd_tpl_mixed_order.pcap": (
        8,
        "data set before its template inside the packet (held and decoded)",
    ),
    "netflow/logstash-codec-netflow/pcap/50_IPFIX_Netscaler_with_variable_length_fields.pcap": (
        3,
        "data sets before their templates (held and decoded)",
    ),
    "netflow/pmacct/112-IPFIXv10-CISCO-options-map-reassignment__traffic-00.pcap": (
        9,
        "data sets before their templates (held and decoded)",
    ),
    "netflow/logstash-codec-netflow/pcap/08_Netflow_9_invalid_01.pcap": (
        3,
        "header count says 2 flowsets but the packet holds 4; we walk flowsets by length",
    ),
    "netflow/logstash-codec-netflow/pcap/16_Netflow_9_H3C.pcap": (
        15,
        "tshark stops after the first record of an H3C set with a variable-length field; "
        "the remaining records walk cleanly",
    ),
    "netflow/vflow/ipfix_tpl_opttpl_multimessage.pcap": (
        2,
        "tshark marks the packet malformed after a bad set and decodes nothing of it; we decode "
        "the sets before the bad one and count the bad set",
    ),
}


def _canonical_netflow(corpus: Path) -> list[str]:
    lines = (corpus / "MANIFEST.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    rows = [dict(zip(head, line.split("\t"), strict=False)) for line in lines[1:]]
    return [r["file"] for r in rows if r["canonical"] == "yes" and r["file"].startswith("netflow/")]


def _corpus() -> Path:
    import os

    env = os.environ.get("MIRRORFLOW_CORPUS")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "corpus"


_FILES = _canonical_netflow(_corpus()) if (_corpus() / "MANIFEST.tsv").exists() else []


def _key(rec: dict) -> tuple:
    if rec["record_kind"] == "v5":
        return ("v5",)
    return (rec["record_kind"], rec["template_id"], len(rec["ies"]))


def _ies_equal(ours: list, theirs: list) -> bool:
    # Wireshark leaves the element id empty for some enterprise fields it cannot name
    return all(
        a[0] == b[0] and (b[1] is None or a[1] == b[1]) and a[3] == b[3]
        for a, b in zip(ours, theirs, strict=True)
    )


def decode_file(path: Path) -> list[dict]:
    dec = Decoder(apply_sampling=False, emit_options=True)
    out: list[dict] = []
    for packets in read_pcap(path):
        for batch in dec.decode(packets):
            out.extend(records(batch, dec, with_ies=True))
    return out


@pytest.mark.skipif(not _FILES, reason="corpus not found (set MIRRORFLOW_CORPUS)")
@pytest.mark.parametrize("name", _FILES)
def test_capture_matches_wireshark(name: str) -> None:
    corpus = _corpus()
    expected = [json.loads(line) for line in (corpus / "expected" / f"{name}.jsonl").read_text().splitlines()]
    ours = decode_file(corpus / name)

    pool: dict[tuple, list[dict]] = collections.defaultdict(list)
    for rec in ours:
        pool[_key(rec)].append(rec)
    mismatches = []
    for exp in expected:
        candidates = pool.get(_key(exp), [])
        if exp["record_kind"] == "v5":
            match = candidates[0] if candidates else None  # v5 records keep their order
        else:
            match = next((r for r in candidates if _ies_equal(r["ies"], exp["ies"])), None)
        if match is None:
            mismatches.append(f"frame {exp['frame']}: no record like {exp['fields']}")
            continue
        candidates.remove(match)
        if exp["record_kind"] != "v5":
            assert match["exporter"] == exp["exporter"]
            assert match["source_id"] == exp["source_id"]
        for field, value in exp["fields"].items():
            if match.get(field) != value:
                mismatches.append(f"frame {exp['frame']}: {field} = {match.get(field)!r}, tshark {value!r}")
    assert not mismatches, "\n".join(mismatches[:20])

    extra = sum(len(v) for v in pool.values())
    assert extra == MORE_THAN_WIRESHARK.get(name, (0, ""))[0], f"{extra} records tshark did not decode"
