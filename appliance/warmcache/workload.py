"""warm-cache's workload: the probe's loop, then the collector replaying its captures as
``collect --pcap`` does, with monitoring objects that reach every kernel and the live API's
endpoints, then once more as a live collector restarting on the templates the replay saved.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from appliance.warmcache.traffic import FakeClock, probe_datagrams, router_datagrams, write_captures

__all__ = ["run_workload"]

log = logging.getLogger("mirrorflow.warm")

#: tiny GeoIP/ASN databases (made-up values for private and documentation prefixes)
_GEO_DATA = Path(__file__).with_name("data")


def run_workload(component: str, tmp: Path) -> None:
    """Run what `component` ("probe", "collector" or "all") compiles, with files in `tmp`."""
    clock = FakeClock()
    probe_stats = tmp / "probe-stats.json"
    datagrams = probe_datagrams(clock, run_probe=component != "collector", stats=probe_stats)
    if component == "probe":
        return
    datagrams += router_datagrams(clock)
    datagrams.sort(key=lambda d: d.time_ns)
    pcap, pcapng = tmp / "export.pcap", tmp / "export.pcapng"
    write_captures(datagrams, pcap, pcapng)
    cfg = _collector_config(tmp)
    _replay(cfg, [pcap, pcapng], probe_stats if probe_stats.exists() else None)
    _live_restart(cfg, [pcap, pcapng])
    _bounded_decoder([pcap, pcapng])


# ---- collector side -------------------------------------------------------------------------

# Monitoring objects that reach every kernel: IP lists with few, many (bucket index) and IPv6
# ranges, text and function filters, nested objects, windows with every function and a text
# key, an extended window, and moving averages with limits files, an overlimit that is
# crossed, an underlimit on a key that never shows up (both run their scripts).
_OBJECTS = {
    "lan": """{
        "filter": "net mynet",
        "fwm": [
            {"name": "total", "time": 10, "fields": ["packets", "octets", "flows"]},
            {"name": "talkers", "time": 10, "fields": ["octets desc", "packets", "src host", "dst host"], "limit": 10},
            {"name": "victims", "time": 10, "extended": true, "limit": 20,
             "fields": ["packets desc", "octets", "src host", "dst host", "proto", "dst port"]}
        ],
        "mavg": [
            {"name": "pps", "time": 5, "fields": ["src host", "packets", "bits"],
             "overlimit": [{"name": "flood", "default": [null, null], "limits": "limits.csv", @SCRIPTS@
                            "back2norm-time": 5, "ext": ["victims"]}],
             "underlimit": [{"name": "gone", "default": [null, null], "limits": "expected.csv", @SCRIPTS@
                             "back2norm-time": 5}]},
            {"name": "ports", "time": 10, "fields": ["dst port", "proto", "flows"]}
        ]}""",
    "lan/tcp": """{
        "filter": "proto tcp and not mfreq(src port, dst port) 53 or tfstr(tcp-flags) 'ACK+PSH'",
        "fwm": [{"name": "functions", "time": 10, "limit": 50, "fields": ["flows desc", "div(octets, packets)",
                 "div_r(octets, packets, 100)", "div_l(octets, packets, 10)", "min(src port, dst port)",
                 "mfreq(src port, dst port)", "tfstr(tcp-flags)", "portstr(dst port)", "ppstr(src port, dst port)"]}]
        }""",
    "blocks": """{
        "filter": "src net blocks or dst net blocks",
        "fwm": [{"name": "hosts", "time": 10, "fields": ["octets desc", "src host", "dst port"], "limit": 20}]
        }""",
    "routers": """{
        "filter": "dev-ip 192.0.2.1 or dev-ip 2001:db8::1",
        "fwm": [{"name": "interfaces", "time": 10, "limit": 20,
                 "fields": ["octets desc", "if_name", "dev-ip", "src ifidx", "vrf_name"]}]
        }""",
    "eth0": """{
        "filter": "if_name 'eth0' or 'xe-1/2/3.100'",
        "fwm": [{"name": "total", "time": 10, "fields": ["packets", "octets", "flows"]}]
        }""",
    "geo": """{
        "filter": "country DE or dst asn 64501 or net-name office or if-name 'ge-0/0/1' or continent EU",
        "fwm": [{"name": "countries", "time": 10, "limit": 20,
                 "fields": ["octets desc", "src country", "dst asn", "country(src host)", "city(dst host)",
                            "asd(src host)", "lat(src host)", "src net-name", "src if-name"]}]
        }""",
    "functions": """{
        "filter": "div(octets, packets) 100-1500 or divl(octets, packets, 10) 100 or min(src port, dst port) 0-1023",
        "fwm": [{"name": "exporters", "time": 10, "fields": ["packets desc", "octets", "dev-ip", "dir", "smplr"]}]
        }""",
}
_API_REQUESTS: list[tuple[str, dict[str, list[str]]]] = [
    ("/", {}),
    ("/api/v1/status", {}),
    ("/api/v1/exporters", {}),
    ("/api/v1/objects", {}),
    ("/api/v1/windows", {}),
    ("/api/v1/windows/lan/talkers", {}),
    ("/api/v1/mavg", {}),
    ("/api/v1/alerts", {}),
    ("/api/v1/probe", {}),
    ("/api/v1/schema", {}),
    ("/api/v1/flows", {"limit": ["1000"]}),
    ("/api/v1/flows", {"filter": ["net mynet and tcp or if_name 'eth0' or src net blocks"]}),
    ("/api/v1/flows", {"object": ["lan"], "filter": ["dst port 443 or tfstr(tcp-flags) 'SYN'"]}),
]


def _collector_config(tmp: Path) -> Any:
    """The monitoring objects, IP lists, limits files and devices.conf of the workload."""
    from appliance.collector.config.settings import CollectorConfig

    iplists = tmp / "iplists"
    iplists.mkdir()
    (iplists / "mynet").write_text("10.20.0.0/16\nfd00:20::/48\n")
    blocks = [f"10.20.{k}.0/24" for k in range(0, 48, 2)] + [f"2001:db8:{k}::/48" for k in range(0, 16, 2)]
    (iplists / "blocks").write_text("\n".join(blocks) + "\n")
    true = shutil.which("true")  # without one, the levels run no scripts
    scripts = f'"action-script": "{true}", "back2norm-script": "{true}",' if true else ""
    for rel, text in _OBJECTS.items():
        d = tmp / "mo" / rel
        d.mkdir(parents=True)
        (d / "mo.conf").write_text(text.replace("@SCRIPTS@", scripts))
    (tmp / "mo" / "lan" / "limits.csv").write_text("# src host, packets/s, bits/s\n10.20.0.1,1000,-\n")
    (tmp / "mo" / "lan" / "expected.csv").write_text("10.20.200.200,100,-\n")
    devices = tmp / "devices.conf"
    devices.write_text(
        '[{"ip": "192.0.2.5", "sampling-rate": 10, "interfaces": {"1": "ge-0/0/1", "2": {"name": "xe-1/0/0"}}},\n'
        ' {"ip": "2001:db8::1", "id": 1, "sampling-rate": 2}]\n'
    )
    networks = tmp / "networks"
    networks.write_text("10.20.0.0/17 office lan hq\n10.20.1.0/24 servers dc hq\n2001:db8::/32 partner wan\n")
    return CollectorConfig(
        geoip=sorted(_GEO_DATA.glob("*.mmdb")),
        networks=networks,
        templates_file=tmp / "templates.json",
        devices_file=devices,
        stats_interval_s=0,
        mo_dir=tmp / "mo",
        iplists_dir=iplists,
        export_dir=tmp / "export",
        notifications_dir=tmp / "notifications",
        script_timeout_s=10,
    )


def _replay(cfg: Any, captures: list[Path], probe_stats: Path | None) -> None:
    """``mirrorflow collect --pcap A --pcap B --mo-dir ... --export-dir ...``, in-process."""
    from appliance.collector.api import ApiSettings
    from appliance.collector.config import load_runtime
    from appliance.collector.export.archive import ArchiveSettings
    from appliance.collector.pipeline import Pipeline

    cfg.export_dir.mkdir()
    pipeline = Pipeline(cfg, load_runtime(cfg), live=False,
                        api=ApiSettings(address=None, probe_stats=probe_stats, flows_interval_s=0),
                        archive=ArchiveSettings(directory=cfg.export_dir.with_name("archive")))
    pipeline.start_api()
    try:
        pipeline.collector.run_pcap(captures)
        _ask_api(pipeline.api)
    finally:
        pipeline.close()  # the capture's last windows are exported too
    pipeline.collector.log_stats(0)
    if not any(cfg.export_dir.iterdir()):
        log.warning("the replay exported no window: the workload misses the window code")


def _live_restart(cfg: Any, captures: list[Path]) -> None:
    """A live collector after a restart: templates from the file the replay saved, receive
    batches the size recvmmsg gives, receive times from the wall clock (so the objects see the
    decoder's own column views, not the replay's time slices), a reload as on SIGHUP."""
    from appliance.collector.api import ApiSettings
    from appliance.collector.config import load_runtime
    from appliance.collector.pipeline import Pipeline
    from appliance.collector.receive import PcapReader

    pipeline = Pipeline(cfg, load_runtime(cfg), live=True,
                        api=ApiSettings(address=None, probe_stats=None, flows_interval_s=0))
    pipeline.start_api()
    try:
        for path in captures:
            with PcapReader(path) as reader:
                for packets in reader.batches(chunk=256):
                    packets.recv_ns[:] = time.time_ns()
                    pipeline.collector.process(packets)
        pipeline.reload()
        _ask_api(pipeline.api)
    finally:
        pipeline.close()


def _bounded_decoder(captures: list[Path]) -> None:
    """A decoder with a quota of one template per exporter (it drops templates and compacts
    its table), and single-address lookups in each GeoIP database."""
    from appliance.collector.decode import Decoder
    from appliance.collector.enrich import load_database
    from appliance.collector.receive import PcapReader

    dec = Decoder(template_quota=1)
    for path in captures:
        with PcapReader(path) as reader:
            for packets in reader.batches(chunk=64):
                for _batch in dec.decode(packets):
                    pass
    for db in sorted(_GEO_DATA.glob("*.mmdb")):
        geo = load_database(db)
        geo.get("10.20.0.1")
        geo.get("2001:db8::1")


def _ask_api(api: Any) -> None:
    """Every endpoint of the live API, answered in-process (no HTTP server is started)."""
    from appliance.collector.api.metrics import render_metrics
    from appliance.collector.api.server import route

    snap = api.publish()
    for path, query in _API_REQUESTS:
        route(snap, path, query)
    render_metrics(snap)
