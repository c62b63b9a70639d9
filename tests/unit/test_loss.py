"""Loss made visible: sequence numbers kept across a restart (so its gap is counted), and loss
(gaps, windows refused by a full spool) keeping health "degraded" with count and time."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from appliance.collector.api.loss import LossTracker
from appliance.collector.api.metrics import render_metrics
from appliance.collector.decode.decoder import Decoder
from appliance.collector.receive.packets import PacketBatch
from appliance.netflow.encoder import V5Encoder
from appliance.netflow.header import SET_HEADER_STRUCT, V9_HEADER_STRUCT
from tests.unit.test_api import parse_metrics

S = 10**9
EXP = "192.0.2.1"


def _v9(seq: int, sid: int = 1) -> bytes:
    """One template (IN_BYTES) and one data record per datagram."""
    tmpl = struct.pack("!HHHH", 256, 1, 1, 4)
    sets = SET_HEADER_STRUCT.pack(0, 4 + len(tmpl)) + tmpl + SET_HEADER_STRUCT.pack(256, 8) + struct.pack("!I", seq)
    return V9_HEADER_STRUCT.pack(9, 2, 1000, 1_700_000_000, seq, sid) + sets


def _feed(dec: Decoder, payloads: list[bytes], t: int = S) -> int:
    return sum(b.n for b in dec.decode(PacketBatch.from_payloads(payloads, exporter=EXP, recv_ns=t)))


def _lost(dec: Decoder) -> dict[str, int]:
    (e,) = dec.exporter_stats()
    return {k: e.counters[k] for k in ("lost_packets", "lost_flows", "seq_resets")}


def test_a_restarts_gap_is_counted(tmp_path: Path) -> None:
    f = tmp_path / "templates.json"
    dec = Decoder(template_file=f)
    assert _feed(dec, [_v9(s) for s in range(10)]) == 10
    dec.save_templates(final=True)
    # datagrams 10..13 arrive while the collector restarts: nobody receives them
    again = Decoder(template_file=f)
    assert _feed(again, [_v9(s) for s in range(14, 20)]) == 6
    assert _lost(again) == {"lost_packets": 4, "lost_flows": 0, "seq_resets": 0}
    (st,) = json.loads(f.read_text())["streams"]
    assert (st["exporter"], st["source_id"], st["next_seq"]) == (EXP, 1, 10)


def test_v5_flows_lost_across_a_restart(tmp_path: Path) -> None:
    f = tmp_path / "templates.json"
    n = 30 * 10
    cols = {"src_addr": np.arange(1, n + 1, dtype=np.uint64), "packets": np.ones(n, np.uint64),
            "bytes": np.full(n, 100, np.uint64)}
    datagrams = V5Encoder().encode(cols)  # flow_sequence counts records
    count = [int.from_bytes(d[2:4], "big") for d in datagrams]  # the header's record count
    assert len(datagrams) == 11 and sum(count) == n
    dec = Decoder(template_file=f)
    _feed(dec, datagrams[:4])
    dec.save_templates(final=True)
    again = Decoder(template_file=f)
    assert _feed(again, datagrams[7:]) == sum(count[7:])
    assert _lost(again) == {"lost_packets": 0, "lost_flows": sum(count[4:7]), "seq_resets": 0}


def test_a_save_while_running_restores_no_sequence(tmp_path: Path) -> None:
    f = tmp_path / "templates.json"
    dec = Decoder(template_file=f)
    _feed(dec, [_v9(s) for s in range(10)])
    dec.save_templates()  # periodic: datagrams decoded after it would count as lost after a crash
    again = Decoder(template_file=f)
    _feed(again, [_v9(s) for s in range(14, 20)])
    assert _lost(again) == {"lost_packets": 0, "lost_flows": 0, "seq_resets": 0}
    assert json.loads(f.read_text())["streams"][0]["next_seq"] is None


def test_loss_tracker_period_and_report() -> None:
    t = LossTracker(period_s=600)
    t.update(1000.0, {"spool_refused_windows": 0, "sequence_gaps": 0})
    assert not t.degraded and t.problems() == []
    t.update(1010.0, {"spool_refused_windows": 2, "sequence_gaps": 5})
    t.update(1030.0, {"spool_refused_windows": 3, "sequence_gaps": 5})
    assert t.degraded
    assert t.report() == {"period_s": 600,
                          "spool_refused_windows": {"total": 3, "recent": 3, "last_at": 1030.0},
                          "sequence_gaps": {"total": 5, "recent": 5, "last_at": 1010.0}}
    assert t.problems() == [
        ("3 windows refused because the spool was full (lost) in the last 10 min, last at 1970-01-01 00:17:10 UTC: "
        "free space in spool-dir or raise spool-max-mb / spool-max-files, and check the database"),
        ("5 packets/flows lost to exporter sequence gaps (a collector restart included) in the last 10 min, last at "
        "1970-01-01 00:16:50 UTC: see /api/v1/exporters"),
    ]
    t.update(1615.0, {"spool_refused_windows": 3, "sequence_gaps": 5})  # the gap is older than 600 s now
    assert t.report()["sequence_gaps"] == {"total": 5, "recent": 0, "last_at": 1010.0}
    assert t.degraded  # the windows (1030 s) are not
    t.update(1700.0, {"spool_refused_windows": 3, "sequence_gaps": 5})
    assert not t.degraded and t.report()["spool_refused_windows"]["total"] == 3


def test_status_and_metrics_show_the_loss(tmp_path: Path) -> None:
    from appliance.collector.api.server import ApiSettings
    from appliance.collector.config import CollectorConfig, load_runtime
    from appliance.collector.export.postgres import PgExporter
    from appliance.collector.monitoring.windows import Column, WindowTable
    from appliance.collector.pipeline import Pipeline

    (tmp_path / "mo" / "all").mkdir(parents=True)
    (tmp_path / "mo" / "all" / "mo.conf").write_text('{"fwm": [{"name": "t", "fields": ["flows"]}]}')
    cfg = CollectorConfig(mo_dir=tmp_path / "mo", db=f"host={tmp_path}/nowhere dbname=x connect_timeout=1",
                          spool_dir=tmp_path / "spool", spool_max_files=0)
    p = Pipeline(cfg, load_runtime(cfg), live=False, api=ApiSettings(address=None))
    try:
        assert p.live is not None and p.monitoring is not None
        status = p.live.publish().status
        assert status["health"] == "ok" and status["loss"]["sequence_gaps"]["total"] == 0
        for b in p.collector.decoder.decode(PacketBatch.from_payloads([_v9(s) for s in (0, 1, 2, 9)], exporter=EXP)):
            p.process(b)
        (pg,) = [e for e in p.monitoring.monitor.exporters if isinstance(e, PgExporter)]
        pg(WindowTable("all_t", 60, 60, [Column("flows", "BIGINT")], [(1,)]))  # the spool is full: refused
        snap = p.live.publish()
        loss = snap.status["loss"]
        assert snap.status["health"] == "degraded"
        assert (loss["sequence_gaps"]["total"], loss["sequence_gaps"]["recent"]) == (6, 6)
        assert (loss["spool_refused_windows"]["total"], loss["spool_refused_windows"]["recent"]) == (1, 1)
        assert snap.status["problems"][0].startswith("1 windows refused because the spool was full (lost)")
        m = parse_metrics(render_metrics(snap))
        assert m["mirrorflow_loss_total"] == {(("kind", "spool_refused_windows"),): 1, (("kind", "sequence_gaps"),): 6}
        assert m["mirrorflow_health_degraded"][()] == 1
    finally:
        p.close()
