"""The appliance image end to end: build it, boot it under QEMU, mirror traffic into it.

``vm-image/build`` makes the image (debootstrap + the Ansible roles in the chroot + GRUB),
``vm-image/make-seed`` a first-boot seed disk with a fresh SSH key. QEMU boots the qcow2
(through a throwaway overlay) with TCG — this host's /dev/kvm cannot run a stock Debian
kernel, so KVM is used only when the CPU shows vmx/svm. The management NIC and a second
"mirror" NIC sit on one QEMU hub together with a UDP socket port: every Ethernet frame the
test sends to that socket appears on the mirror NIC, as on a switch's SPAN port.

Proved from outside, over SSH (hostfwd): the probe in the VM exported the replayed flows,
the collector counted them (live API), PostgreSQL in the VM holds window rows with the
replayed addresses; after a reboot every unit is active again and new traffic reaches the
database too.

MIRRORFLOW_VM_IMAGE=DIR reuses artifacts of an earlier ``vm-image/build --out DIR``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.synth import udp_frame

REPO = Path(__file__).resolve().parents[2]
VM = REPO / "vm-image"

pytestmark = [pytest.mark.slow, pytest.mark.root]

# Replayed traffic: UDP flows from these sources to one destination, PACKETS frames each.
SOURCES = ("198.51.100.7", "198.51.100.8", "198.51.100.9")
DESTINATION = "203.0.113.9"
PACKETS = 200
TUI_USER = "noc"
# The collector's UDP socket is bound (and its live API answers).
COLLECTOR_UP = "ss -Hlun 'sport = :2055' | grep -q . && curl -sf 127.0.0.1:8787/api/v1/status >/dev/null && echo up"
MGMT_MAC = "52:54:00:00:00:01"


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root: debootstrap, chroot and loop devices")
    reuse = os.environ.get("MIRRORFLOW_VM_IMAGE")
    if reuse:
        yield Path(reuse)
        return
    tools = subprocess.run([str(REPO / "ansible" / "install-tools")], capture_output=True, text=True)
    if tools.returncode != 0:
        pytest.skip(f"ansible/install-tools failed: {tools.stderr.strip()[-400:]}")
    out = Path(os.environ.get("MIRRORFLOW_VM_TMP", "/var/tmp")) / f"mirrorflow-image-{os.getpid()}"
    out.mkdir(parents=True, exist_ok=True)
    # A TUI-only account (ansible/roles/mirrorflow_tui_access) baked in through --vars.
    tui_key = out / "tui_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tui_key)], check=True)
    (out / "test-vars.yml").write_text(json.dumps({"mirrorflow_tui_users": [
        {"name": TUI_USER, "ssh_keys": [(out / "tui_ed25519.pub").read_text().strip()], "tui_only": True}]}))
    proc = subprocess.run([str(VM / "build"), "--out", str(out), "--vars", str(out / "test-vars.yml")],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        shutil.rmtree(out, ignore_errors=True)
        last_step = (proc.stdout.strip().splitlines() or [""])[-1]
        if "debootstrap" in last_step:
            pytest.skip("debootstrap failed (no Debian mirror?): " + proc.stderr[-400:])
        pytest.fail("vm-image/build failed:\n" + proc.stdout[-3000:] + proc.stderr[-3000:])
    print(proc.stdout)
    yield out
    if os.environ.get("MIRRORFLOW_KEEP_IMAGE") == "1":
        print(f"image kept in {out}: rerun with MIRRORFLOW_VM_IMAGE={out}")
    else:
        shutil.rmtree(out, ignore_errors=True)  # ~3.5 GB


def test_build_artifacts(image_dir: Path) -> None:
    info = json.loads((image_dir / "build.json").read_text())
    raw = image_dir / "mirrorflow.raw"
    with raw.open("rb") as f:
        mbr = f.read(512)
    assert info["grub"], "the image was built without a boot loader"
    assert mbr[510:512] == b"\x55\xaa" and b"GRUB" in mbr, "no GRUB boot sector in mirrorflow.raw"
    # One bootable primary partition, type Linux, from sector 2048.
    entry = mbr[446:462]
    assert entry[0] == 0x80 and entry[4] == 0x83 and struct.unpack("<I", entry[8:12])[0] == 2048, entry.hex()
    qinfo = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(image_dir / "mirrorflow.qcow2")],
                                      capture_output=True, text=True, check=True).stdout)
    assert qinfo["format"] == "qcow2" and qinfo["virtual-size"] == raw.stat().st_size
    print(f"image: {info}")


@dataclass
class Guest:
    ssh_port: int
    key: Path
    inject: socket.socket
    inject_to: tuple[str, int]
    console: Path
    proc: subprocess.Popen[bytes]
    tui_key: Path | None = None

    def ssh(self, command: str, timeout: float = 120, check: bool = True) -> str:
        proc = subprocess.run(
            ["ssh", "-i", str(self.key), "-p", str(self.ssh_port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@127.0.0.1", command],
            capture_output=True, text=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"ssh {command!r} failed ({proc.returncode}): {proc.stdout}{proc.stderr}"
                                 f"\nconsole tail:\n{self.console_tail()}")
        return proc.stdout

    def diagnostics(self) -> str:
        """What the appliance says about itself: unit states, journals, the collector's status."""
        try:
            return self.ssh(
                "systemctl --no-pager list-units 'mirrorflow*' postgresql\\*; "
                "for u in mirrorflow-collector mirrorflow-probe mirrorflow-db-setup mirrorflow-firstboot; do "
                "echo \"== $u\"; journalctl -b --no-pager -o short-monotonic -n 40 -u $u; done; "
                "echo '== status'; curl -s 127.0.0.1:8787/api/v1/status | head -c 3000",
                timeout=120, check=False)
        except subprocess.TimeoutExpired:
            return "no diagnostics (ssh timed out); console:\n" + self.console_tail()

    def console_tail(self) -> str:
        try:
            return self.console.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def wait_ssh(self, deadline_s: float = 600) -> float:
        started = time.monotonic()
        while time.monotonic() - started < deadline_s:
            if self.proc.poll() is not None:
                raise AssertionError("qemu exited:\n" + self.console_tail())
            try:
                if self.ssh("true", timeout=30, check=False) == "" and self._ssh_ok():
                    return time.monotonic() - started
            except subprocess.TimeoutExpired:
                pass
            time.sleep(3)
        raise AssertionError(f"no SSH after {deadline_s} s; console:\n{self.console_tail()}")

    def _ssh_ok(self) -> bool:
        try:
            return self.ssh("echo up", timeout=30, check=False).strip() == "up"
        except subprocess.TimeoutExpired:
            return False

    def replay(self, sources: tuple[str, ...], packets: int, sport: int = 40000) -> None:
        for n in range(packets):
            for i, src in enumerate(sources):
                self.inject.sendto(_frame(src, DESTINATION, sport + i, 5353, n), self.inject_to)
            if n % 50 == 49:
                time.sleep(0.05)  # the guest is emulated: do not overrun its RX ring


def _frame(src: str, dst: str, sport: int, dport: int, seq: int) -> bytes:
    return udp_frame(src, dst, sport, dport, struct.pack("!I", seq) + b"m" * 60, ident=seq,
                     src_mac=bytes.fromhex("020000000007"), dst_mac=bytes.fromhex("020000000009"))


def _accel() -> str:
    cpu = Path("/proc/cpuinfo").read_text()
    return "kvm" if os.path.exists("/dev/kvm") and (" vmx" in cpu or " svm" in cpu) else "tcg"


@pytest.fixture(scope="module")
def guest(image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    work = tmp_path_factory.mktemp("vm")
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    seed = work / "seed.iso"
    # cloud-init NoCloud, as cloud-localds or Proxmox write it; the management NIC by MAC.
    netcfg = work / "network-config"
    netcfg.write_text(json.dumps({"version": 2, "ethernets": {"mgmt": {"match": {"macaddress": MGMT_MAC},
                                                                      "dhcp4": True}}}))
    subprocess.run([str(VM / "make-seed"), str(seed), "--ssh-key", f"{key}.pub", "--mirror", "ens4",
                    "--hostname", "mirror-test", "--network-config", str(netcfg)],
                   check=True, capture_output=True)
    overlay = work / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                    str(image_dir / "mirrorflow.qcow2"), str(overlay)], check=True)
    ssh_port = _free_port()
    inject = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    inject.bind(("127.0.0.1", 0))
    qemu_in = _free_port(socket.SOCK_DGRAM)
    console = work / "console.log"
    info = json.loads((image_dir / "build.json").read_text())
    # A disk without GRUB (no usable loop devices at build time) boots with the kernel outside.
    direct = [] if info["grub"] else [
        "-kernel", str(image_dir / "vmlinuz"), "-initrd", str(image_dir / "initrd.img"),
        "-append", "root=LABEL=root ro console=ttyS0,115200n8 net.ifnames=1",
    ]
    cmd = [
        # numpy's wheels need x86-64-v2 (SSE4.2, POPCNT): QEMU's default qemu64 CPU lacks it.
        "qemu-system-x86_64", "-accel", _accel(), "-cpu", "max" if _accel() == "tcg" else "host",
        "-machine", "pc", "-m", "2048", "-smp", "2",
        "-display", "none", "-serial", f"file:{console}", "-monitor", "none",
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-drive", f"file={seed},if=virtio,format=raw,readonly=on",
        "-netdev", f"user,id=u0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-netdev", "hubport,id=hp0,hubid=0,netdev=u0",
        # The replay port: frames sent to 127.0.0.1:qemu_in enter the hub.
        "-netdev", f"socket,id=inj,udp=127.0.0.1:{inject.getsockname()[1]},localaddr=127.0.0.1:{qemu_in}",
        "-netdev", "hubport,id=hp3,hubid=0,netdev=inj",
        "-netdev", "hubport,id=hp1,hubid=0",
        "-device", f"virtio-net-pci,netdev=hp1,addr=3,mac={MGMT_MAC}",
        "-netdev", "hubport,id=hp2,hubid=0",
        "-device", "virtio-net-pci,netdev=hp2,addr=4,mac=52:54:00:00:00:02",
        *direct,
    ]
    with (work / "qemu.err").open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    tui_key = image_dir / "tui_ed25519"
    g = Guest(ssh_port, key, inject, ("127.0.0.1", qemu_in), console, proc, tui_key if tui_key.exists() else None)
    try:
        yield g
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        inject.close()


def _wait(what: str, probe: Callable[[], Any], timeout: float, guest: Guest) -> Any:
    started = time.monotonic()
    last: object = None
    while time.monotonic() - started < timeout:
        last = probe()
        if last:
            return last
        time.sleep(5)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})\n{guest.diagnostics()}")


def _db_rows(guest: Guest, sources: tuple[str, ...]) -> dict[str, int]:
    out = guest.ssh("runuser -u postgres -- psql -d mirrorflow -AtF' ' -c "
                    "\"SELECT host(src_host), sum(packets) FROM total_saddr GROUP BY 1\" 2>/dev/null", check=False)
    rows = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
    return {s: int(rows[s]) for s in sources if s in rows}


def test_boot_mirror_probe_collector_postgresql_and_reboot(guest: Guest) -> None:
    timings: dict[str, float] = {}
    timings["boot_to_ssh"] = guest.wait_ssh()
    assert guest.ssh("hostname").strip() == "mirror-test", "the seed's hostname was not applied"

    # The appliance is up: units active, mirror NIC promiscuous without any address.
    def units_active() -> bool:
        out = guest.ssh("systemctl is-active mirrorflow-probe mirrorflow-collector postgresql "
                        "mirrorflow-db-setup systemd-networkd", check=False)
        return out.split() == ["active"] * 5

    started = time.monotonic()
    _wait("units active", units_active, 300, guest)
    timings["units_active"] = time.monotonic() - started
    link = guest.ssh("ip -d -j addr show dev ens4")
    info = json.loads(link)[0]
    assert info["promiscuity"] >= 1 and "UP" in info["flags"], info
    assert info.get("addr_info") == [], f"the mirror NIC has addresses: {info.get('addr_info')}"
    features = guest.ssh("ethtool -k ens4")
    assert "generic-receive-offload: off" in features, features

    # Wait until the probe is attached (bcc compiles under TCG), then replay.
    _wait("probe stats", lambda: guest.ssh("mirrorflow probe --stats --json", check=False).strip(), 900, guest)
    timings["probe_running"] = time.monotonic() - started
    # Flows the probe exports before the collector listens are lost, as with any UDP exporter.
    _wait("collector listening", lambda: guest.ssh(COLLECTOR_UP, check=False).strip(), 600, guest)
    timings["collector_listening"] = time.monotonic() - started
    guest.replay(SOURCES, PACKETS)

    def probe_exported() -> dict | None:
        snap = json.loads(guest.ssh("mirrorflow probe --stats --json"))
        return snap if _exported_flows(snap) >= len(SOURCES) else None

    probe = _wait("probe exports the replayed flows", probe_exported, 600, guest)

    def collector_counts() -> dict | None:
        body = guest.ssh("curl -sf 127.0.0.1:8787/api/v1/exporters", check=False)
        doc = json.loads(body) if body.strip() else {}
        records = sum(_records(e) for e in doc.get("exporters", []))
        return doc if records >= len(SOURCES) else None

    exporters = _wait("collector counts the probe's records", collector_counts, 600, guest)
    rows = _wait("window rows in PostgreSQL", lambda: len(_db_rows(guest, SOURCES)) == len(SOURCES) and
                 _db_rows(guest, SOURCES), 150, guest)
    assert all(count == PACKETS for count in rows.values()), rows
    timings["first_rows"] = time.monotonic() - started

    # numba's kernels came compiled in the image (vm-image/build): nothing compiled at boot.
    cache = guest.ssh("find /var/cache/mirrorflow -name '*.nbi' | wc -l; "
                      "find /var/cache/mirrorflow -name '*.nbi' -newer /etc/hostname")
    total, *recompiled = cache.split()
    assert int(total) > 20 and recompiled == [], f"{total} cache indexes; compiled at boot: {recompiled}"
    # The seed's network-config replaced the image's DHCP-on-every-NIC default.
    network = guest.ssh(f"grep -l 'MACAddress={MGMT_MAC}' /etc/systemd/network/*.network; "
                        "ls /etc/systemd/network", check=False)
    assert "20-mirrorflow-cloud-" in network and "90-mirrorflow-management" not in network, network

    # The TUI-only account gets the dashboard and nothing else.
    screen = _tui_session(guest)
    assert "127.0.0.1:8787" in screen, screen[-2000:]

    # Reboot: everything comes back by itself, and new traffic reaches the database again.
    guest.ssh("systemctl reboot", check=False, timeout=30)
    time.sleep(10)
    timings["reboot_to_ssh"] = guest.wait_ssh()
    _wait("units active after reboot", units_active, 300, guest)
    assert guest.ssh("hostname").strip() == "mirror-test"
    _wait("probe stats after reboot", lambda: guest.ssh("mirrorflow probe --stats --json", check=False).strip(),
          300, guest)
    _wait("collector listening after reboot", lambda: guest.ssh(COLLECTOR_UP, check=False).strip(), 300, guest)
    again = ("198.51.100.77",)
    guest.replay(again, PACKETS, sport=41000)
    rows2 = _wait("window rows after reboot", lambda: _db_rows(guest, again), 200, guest)
    assert rows2 == {again[0]: PACKETS}, rows2
    print(f"timings: {timings}; probe: {_exported_flows(probe)} flows exported; "
          f"exporters: {[e.get('address') for e in exporters['exporters']]}")


_ANSI = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78])")


def _tui_session(guest: Guest, timeout: float = 240) -> str:
    """Logs in as the TUI-only user asking for a shell command; returns the screen text.

    sshd's ForceCommand runs ``mirrorflow tui`` instead of ``id``; the TUI is quit with ``q``.
    """
    key = guest.tui_key
    assert key is not None and key.exists(), "no TUI key (image built without the test's --vars)"
    proc = subprocess.Popen(
        ["ssh", "-tt", "-i", str(key), "-p", str(guest.ssh_port), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
         f"{TUI_USER}@127.0.0.1", "id"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    raw = b""
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout and b"8787" not in _ANSI.sub(b"", raw):
            if proc.poll() is not None:
                break
            chunk = proc.stdout.read()
            raw += chunk or b""
            time.sleep(0.5)
        if proc.poll() is None:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(b"q")
                proc.stdin.flush()
        proc.wait(60)
        raw += proc.stdout.read() or b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()
    text = _ANSI.sub(b"", raw).decode(errors="replace")
    assert "uid=" not in text, f"the TUI user ran a command: {text[-500:]}"
    return text


def _exported_flows(snap: dict) -> int:
    """Flows the probe reports exported, wherever its stats put the counter."""
    for key in ("flows_exported", "exported_flows"):
        if key in snap:
            return int(snap[key])
    export = snap.get("export") or snap.get("exporter") or {}
    if isinstance(export, dict):
        for key in ("flows", "flows_exported", "records"):
            if key in export:
                return int(export[key])
    return 0


def _records(exporter: dict) -> int:
    for key in ("records", "data_records", "flows"):
        value = exporter.get(key) or exporter.get("counters", {}).get(key)
        if value:
            return int(value)
    return 0
