"""mirrorflow-firstboot: cloud-init NoCloud seeds → files under a temporary image root.

The script (vm-image/files/mirrorflow-firstboot) is imported as a module. Every file it writes
is under the ``root`` it is given; the commands it would run on the appliance (useradd,
chpasswd, hostname, visudo, ssh-keygen) all go through its ``run`` function, which these tests
replace with a recorder: that is the one thing a host cannot do for real.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import stat
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRSTBOOT = REPO / "vm-image" / "files" / "mirrorflow-firstboot"


def _load() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("mirrorflow_firstboot", str(FIRSTBOOT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


fb = _load()

KEY1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHbX0Fh2m3y1mJ2Lrj2bJ4x0mirrorflowKEY1 me@laptop"
KEY2 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDmirrorflowKEY2 ops@bastion"
HASH = "$6$mirrorflow$uJ3pLw3a0Yx7D4vV6P5m2C8Qe1Rk9Hn0sTg4bZq7Wc2yXf5Nl8Ka3Sd6Jh1Gp0Oe9Iu4Ty2Rw"

# The mirror port's networkd file as the mirror_interface role writes it (abridged).
MIRROR_NETWORK = """\
# Ansible managed
# Mirror (SPAN) port: up, promiscuous, no ARP, no address of any kind.
[Match]
Name=ens4

[Link]
Promiscuous=yes
ARP=no
"""
PROBE_JSON = {"interfaces": ["ens4"], "destinations": ["127.0.0.1:2055"], "state-dir": "/run/mirrorflow/probe"}
COLLECTOR_CONF = {
    "capture": [{"socket": {"listen-on": "0.0.0.0", "port": 2055}}],
    "api": "127.0.0.1:8787",
    "db": "host=/run/postgresql dbname=mirrorflow user=mirrorflow",
}
OFFLOAD_UNIT = "/etc/systemd/system/mirrorflow-offload@.service"
Commands = list[tuple[list[str], str | None]]  # what the script ran, with its stdin


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An image root as vm-image/build and the roles leave it (the files the script touches)."""
    root = tmp_path / "root"
    files = {
        "etc/hostname": "mirrorflow\n",
        "etc/hosts": "127.0.0.1\tlocalhost\n127.0.1.1\tmirrorflow\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\npostgres:x:104:110::/var/lib/postgresql:/bin/bash\n",
        "etc/group": "root:x:0:\nsudo:x:27:\n",
        "etc/resolv.conf": "nameserver 10.0.2.3\n",
        "etc/systemd/network/10-mirrorflow-mirror.network": MIRROR_NETWORK,
        "etc/systemd/network/90-mirrorflow-management.network": (
            REPO / "vm-image/files/90-mirrorflow-management.network"
        ).read_text(),
        "etc/systemd/system/mirrorflow-offload@.service": "[Service]\nType=oneshot\n",
        "etc/mirrorflow/probe.json": json.dumps(PROBE_JSON, indent=2) + "\n",
        "etc/mirrorflow/collector.conf": json.dumps(COLLECTOR_CONF, indent=2) + "\n",
    }
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    for rel in ("etc/mirrorflow/probe.json", "etc/mirrorflow/collector.conf"):
        (root / rel).chmod(0o640)  # the roles' mode (group mirrorflow): the DSN may be secret
    wants = root / "etc/systemd/system/sys-subsystem-net-devices-ens4.device.wants"
    wants.mkdir()
    (wants / "mirrorflow-offload@ens4.service").symlink_to(OFFLOAD_UNIT)
    (root / "root").mkdir(mode=0o700)
    return root


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> Commands:
    """The commands the script runs, with their stdin, instead of running them."""
    ran: Commands = []

    def run(cmd: list[str], stdin: str | None = None) -> str:
        ran.append((cmd, stdin))
        return ""

    monkeypatch.setattr(fb, "run", run)
    return ran


def make_seed(tmp_path: Path, user_data: str | bytes | None, meta_data: str | None = "instance-id: iid-test\n",
              network_config: str | None = None) -> Path:
    seed = tmp_path / "seed"
    seed.mkdir()
    for name, content in (("user-data", user_data), ("meta-data", meta_data), ("network-config", network_config)):
        if isinstance(content, bytes):
            (seed / name).write_bytes(content)
        elif content is not None:
            (seed / name).write_text(content)
    return seed


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and link under root: content or link target, and mode."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = ("-> " + os.readlink(path), 0)
        elif path.is_file():
            out[rel] = (path.read_text(), stat.S_IMODE(path.stat().st_mode))
        else:
            out[rel] = ("/", stat.S_IMODE(path.stat().st_mode))
    return out


def logged(capsys: pytest.CaptureFixture[str]) -> list[str]:
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith("mirrorflow-firstboot: ") for line in lines), lines
    return [line.removeprefix("mirrorflow-firstboot: ") for line in lines]


# --- network-config -------------------------------------------------------------------------

# What Proxmox VE writes (qemu-server PVE/QemuServer/Cloudinit.pm, nocloud_network and
# cloudinit_userdata) for: net0 virtio=BC:24:11:5E:AA:01, ipconfig0
# ip=192.0.2.10/24,gw=192.0.2.1,ip6=2001:db8::10/64,gw6=2001:db8::1, nameserver "192.0.2.53
# 2001:db8::53", searchdomain example.net, name mirror1, ciuser admin, cipassword, sshkeys.
PROXMOX_NETWORK_CONFIG = """\
version: 1
config:
    - type: physical
      name: eth0
      mac_address: 'bc:24:11:5e:aa:01'
      subnets:
      - type: static
        address: '192.0.2.10'
        netmask: '255.255.255.0'
        gateway: '192.0.2.1'
      - type: static6
        address: '2001:db8::10/64'
        gateway: '2001:db8::1'
    - type: nameserver
      address:
      - '192.0.2.53'
      - '2001:db8::53'
      search:
      - 'example.net'
"""
PROXMOX_USER_DATA = f"""\
#cloud-config
hostname: mirror1
manage_etc_hosts: true
fqdn: mirror1.example.net
user: admin
password: {HASH}
ssh_authorized_keys:
  - {KEY1}
chpasswd:
  expire: False
users:
  - default
package_upgrade: true
"""


def test_proxmox_cloud_init_drive(
    tmp_path: Path, root: Path, commands: Commands, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = make_seed(tmp_path, PROXMOX_USER_DATA, "instance-id: 7a3f1c0e9b2d4f6a8c1e3b5d7f9a0c2e4b6d8f0a\n",
                     PROXMOX_NETWORK_CONFIG)
    (seed / "vendor-data").write_text("")

    assert fb.configure(seed, root) == 0

    net = root / "etc/systemd/network"
    assert (net / "20-mirrorflow-cloud-0.network").read_text() == (
        "# From the seed's network-config (cloud-init NoCloud), by mirrorflow-firstboot.\n"
        "[Match]\n"
        "MACAddress=bc:24:11:5e:aa:01\n"
        "\n"
        "[Network]\n"
        "Address=192.0.2.10/24\n"
        "Address=2001:db8::10/64\n"
        "Gateway=192.0.2.1\n"
        "Gateway=2001:db8::1\n"
    )
    assert sorted(p.name for p in net.iterdir()) == ["10-mirrorflow-mirror.network", "20-mirrorflow-cloud-0.network"]
    assert (root / "etc/resolv.conf").read_text() == (
        "# From the seed's network-config, by mirrorflow-firstboot.\n"
        "nameserver 192.0.2.53\n"
        "nameserver 2001:db8::53\n"
        "search example.net\n"
    )
    assert (root / "etc/hostname").read_text() == "mirror1\n"
    assert (root / "etc/hosts").read_text() == (
        "127.0.0.1\tlocalhost\n127.0.1.1\tmirror1.example.net mirror1\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    assert (root / "home/admin/.ssh/authorized_keys").read_text() == KEY1 + "\n"
    # A user with a password: the sudo group, no rule without a password.
    assert commands == [
        (["hostname", "mirror1"], None),
        (["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", "admin"], None),
        (["chown", "-R", "admin:", str(root / "home/admin/.ssh")], None),
        (["chpasswd", "--encrypted"], f"admin:{HASH}\n"),
    ]
    assert not (root / "etc/sudoers.d").exists()
    log = logged(capsys)
    assert "ignored cloud-config keys: package_upgrade" in log
    assert (
        "network: eth0 (MAC bc:24:11:5e:aa:01): 192.0.2.10/24, 2001:db8::10/64 → 20-mirrorflow-cloud-0.network" in log
    )
    assert log[-1] == "seed 7a3f1c0e9b2d4f6a8c1e3b5d7f9a0c2e4b6d8f0a applied"


def test_v2_dhcp4_matched_by_mac(
    tmp_path: Path, root: Path, commands: Commands, capsys: pytest.CaptureFixture[str]
) -> None:
    network_config = """\
network:
  version: 2
  ethernets:
    mgmt:
      match:
        macaddress: "52:54:00:AB:CD:01"
      set-name: mgmt0
      dhcp4: true
"""
    seed = make_seed(tmp_path, "#cloud-config\n", network_config=network_config)

    assert fb.configure(seed, root) == 0

    net = root / "etc/systemd/network"
    assert (net / "20-mirrorflow-cloud-0.network").read_text() == (
        "# From the seed's network-config (cloud-init NoCloud), by mirrorflow-firstboot.\n"
        "[Match]\n"
        "MACAddress=52:54:00:ab:cd:01\n"
        "\n"
        "[Network]\n"
        "DHCP=ipv4\n"
    )
    assert not (net / "90-mirrorflow-management.network").exists()
    assert (root / "etc/resolv.conf").read_text() == "nameserver 10.0.2.3\n"
    assert commands == []
    log = logged(capsys)
    assert "network-config: ethernets: mgmt: set-name mgmt0 not applied: the NIC keeps its name" in log


def test_v2_static_routes_and_nameservers_by_name(tmp_path: Path, root: Path, commands: Commands) -> None:
    network_config = """\
version: 2
ethernets:
  ens3:
    addresses: [198.51.100.7/24]
    routes:
      - {to: default, via: 198.51.100.1}
      - {to: 10.0.0.0/8, via: 198.51.100.254, metric: 200}
    nameservers: {addresses: [198.51.100.53], search: [lab.example]}
"""
    seed = make_seed(tmp_path, "#cloud-config\n", network_config=network_config)

    assert fb.configure(seed, root) == 0

    assert (root / "etc/systemd/network/20-mirrorflow-cloud-0.network").read_text() == (
        "# From the seed's network-config (cloud-init NoCloud), by mirrorflow-firstboot.\n"
        "[Match]\n"
        "Name=ens3\n"
        "\n"
        "[Network]\n"
        "Address=198.51.100.7/24\n"
        "DNS=198.51.100.53\n"
        "Domains=lab.example\n"
        "\n"
        "[Route]\n"
        "Gateway=198.51.100.1\n"
        "\n"
        "[Route]\n"
        "Destination=10.0.0.0/8\n"
        "Gateway=198.51.100.254\n"
        "Metric=200\n"
    )
    assert (root / "etc/resolv.conf").read_text() == (
        "# From the seed's network-config, by mirrorflow-firstboot.\nnameserver 198.51.100.53\nsearch lab.example\n"
    )


def test_mirror_interface_is_never_management(
    tmp_path: Path, root: Path, commands: Commands, capsys: pytest.CaptureFixture[str]
) -> None:
    network_config = "version: 2\nethernets:\n  ens4: {dhcp4: true}\n"
    seed = make_seed(tmp_path, "#cloud-config\n", network_config=network_config)
    before = tree(root)

    assert fb.configure(seed, root) == 0

    assert tree(root) == before  # the image's DHCP on every other NIC stays
    log = logged(capsys)
    assert "network-config: ens4 is a mirror interface: not used for management" in log
    assert "network-config configures no interface: keeping DHCP on every NIC" in log


# --- user-data -------------------------------------------------------------------------------


def test_cloud_config_user_keys_password_and_mirrorflow(
    tmp_path: Path, root: Path, commands: Commands, capsys: pytest.CaptureFixture[str]
) -> None:
    user_data = f"""\
#cloud-config
hostname: mirror2
user: netops
ssh_authorized_keys:
  - {KEY1}
  - "  {KEY2}  "
password: "{HASH}"
chpasswd: {{expire: true}}
packages: [tcpdump]
runcmd:
  - [touch, /tmp/x]
mirrorflow:
  mirror_interfaces: [ens5, ens6]
  collector:
    listen: ["0.0.0.0:9995", "[::]:9995"]
    allowed_routers: [192.0.2.1, 198.51.100.0/24]
    settings: {{stats-interval: 60}}
  probe: {{active-timeout: 120}}
"""
    seed = make_seed(tmp_path, user_data)

    assert fb.configure(seed, root) == 0

    assert (root / "etc/hostname").read_text() == "mirror2\n"
    assert (root / "etc/hosts").read_text() == (
        "127.0.0.1\tlocalhost\n127.0.1.1\tmirror2\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    ssh = root / "home/netops/.ssh"
    assert (ssh / "authorized_keys").read_text() == f"{KEY1}\n{KEY2}\n"
    assert stat.S_IMODE((ssh / "authorized_keys").stat().st_mode) == 0o600
    assert stat.S_IMODE(ssh.stat().st_mode) == 0o700
    assert not (root / "root/.ssh").exists()
    # A crypt hash: chpasswd --encrypted, and not expired (cloud-init expires text passwords).
    assert commands == [
        (["hostname", "mirror2"], None),
        (["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", "netops"], None),
        (["chown", "-R", "netops:", str(ssh)], None),
        (["chpasswd", "--encrypted"], f"netops:{HASH}\n"),
    ]

    mirror = (root / "etc/systemd/network/10-mirrorflow-mirror.network").read_text()
    assert [line for line in mirror.splitlines() if line.startswith("Name=")] == ["Name=ens5 ens6"]
    units = root / "etc/systemd/system"
    links = sorted(str(p.relative_to(units)) for p in units.glob("*.device.wants/*"))
    assert links == [
        "sys-subsystem-net-devices-ens5.device.wants/mirrorflow-offload@ens5.service",
        "sys-subsystem-net-devices-ens6.device.wants/mirrorflow-offload@ens6.service",
    ]
    assert all(os.readlink(units / link) == OFFLOAD_UNIT for link in links)
    assert (units / "mirrorflow-probe.service.d/seed.conf").read_text() == (
        "[Unit]\n"
        "After=sys-subsystem-net-devices-ens5.device mirrorflow-offload@ens5.service\n"
        "Wants=sys-subsystem-net-devices-ens5.device\n"
        "After=sys-subsystem-net-devices-ens6.device mirrorflow-offload@ens6.service\n"
        "Wants=sys-subsystem-net-devices-ens6.device\n"
    )
    modes = {f: stat.S_IMODE((root / "etc/mirrorflow" / f).stat().st_mode) for f in ("probe.json", "collector.conf")}
    assert modes == {"probe.json": 0o640, "collector.conf": 0o640}
    probe = json.loads((root / "etc/mirrorflow/probe.json").read_text())
    assert probe == {**PROBE_JSON, "interfaces": ["ens5", "ens6"], "active-timeout": 120}
    collector = json.loads((root / "etc/mirrorflow/collector.conf").read_text())
    assert collector == {
        **COLLECTOR_CONF,
        "capture": [{"socket": {"listen-on": "0.0.0.0", "port": 9995}}, {"socket": {"listen-on": "::", "port": 9995}}],
        "stats-interval": 60,
    }
    assert (units / "mirrorflow-collector.service.d/seed.conf").read_text() == (
        "[Service]\nIPAddressAllow=192.0.2.1 198.51.100.0/24\n"
    )
    # No network-config: the image's DHCP management network stays.
    assert (root / "etc/systemd/network/90-mirrorflow-management.network").exists()
    log = logged(capsys)
    assert log.count("ignored cloud-config keys: packages, runcmd") == 1


@pytest.mark.root
def test_rewritten_config_keeps_its_owner(tmp_path: Path, root: Path, commands: Commands) -> None:
    # collector.conf is root:mirrorflow 0640: a root:root copy would stop the collector reading it.
    conf = root / "etc/mirrorflow/collector.conf"
    os.chown(conf, 0, 4242)
    seed = make_seed(tmp_path, "#cloud-config\nmirrorflow: {collector: {listen: ['0.0.0.0:9995']}}\n")

    assert fb.configure(seed, root) == 0

    assert json.loads(conf.read_text())["capture"] == [{"socket": {"listen-on": "0.0.0.0", "port": 9995}}]
    assert (conf.stat().st_uid, conf.stat().st_gid, stat.S_IMODE(conf.stat().st_mode)) == (0, 4242, 0o640)


def test_key_only_user_may_sudo_without_password(tmp_path: Path, root: Path, commands: Commands) -> None:
    seed = make_seed(tmp_path, f"#cloud-config\nuser: admin\nssh_authorized_keys: ['{KEY1}']\n")

    assert fb.configure(seed, root) == 0

    sudoers = root / "etc/sudoers.d/90-mirrorflow-cloud"
    assert (
        sudoers.read_text() == "# From the seed's user-data, by mirrorflow-firstboot.\nadmin ALL=(ALL) NOPASSWD:ALL\n"
    )
    assert stat.S_IMODE(sudoers.stat().st_mode) == 0o440
    assert commands[-1] == (["visudo", "-c", "-q", "-f", str(sudoers)], None)


def test_virt_install_cloud_init_seed(
    tmp_path: Path, root: Path, commands: Commands, capsys: pytest.CaptureFixture[str]
) -> None:
    # virt-install --cloud-init root-password-generate=on,root-ssh-key=K,clouduser-ssh-key=K2
    # (virtinst/install/cloudinit.py): an empty meta-data and this user-data.
    user_data = f"""\
#cloud-config
chpasswd:
  list: |
    root:Zq4vT9pLk2Xw8RbN
  expire: True
users:
  - default
  - name: root
    ssh_authorized_keys:
      - {KEY1}
ssh_authorized_keys:
  - {KEY2}
runcmd:
- echo "Disabled by virt-install" > /etc/cloud/cloud-init.disabled
"""
    seed = make_seed(tmp_path, user_data, meta_data="")

    assert fb.configure(seed, root) == 0

    # No `user`: the default user is root, so both keys are root's.
    assert (root / "root/.ssh/authorized_keys").read_text() == f"{KEY2}\n{KEY1}\n"
    assert commands == [
        (["chpasswd"], "root:Zq4vT9pLk2Xw8RbN\n"),
        (["passwd", "--expire", "root"], None),
    ]
    assert not (root / "home").exists()
    log = logged(capsys)
    assert "ignored cloud-config keys: runcmd" in log
    assert log[-1] == "seed (no instance-id) applied"


def test_users_entries(tmp_path: Path, root: Path, commands: Commands) -> None:
    user_data = f"""\
#cloud-config
users:
  - name: ops
    groups: [sudo, netdev]
    sudo: "ALL=(ALL) ALL"
    lock_passwd: false
    passwd: "{HASH}"
    ssh_authorized_keys: ["{KEY2}"]
  - name: viewer
    shell: /usr/bin/rbash
"""
    seed = make_seed(tmp_path, user_data)

    assert fb.configure(seed, root) == 0

    sudoers = root / "etc/sudoers.d/90-mirrorflow-cloud"
    assert commands == [
        (["groupadd", "netdev"], None),
        (["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo,netdev", "ops"], None),
        (["chpasswd", "--encrypted"], f"ops:{HASH}\n"),
        (["chown", "-R", "ops:", str(root / "home/ops/.ssh")], None),
        (["useradd", "--create-home", "--shell", "/usr/bin/rbash", "viewer"], None),
        (["visudo", "-c", "-q", "-f", str(sudoers)], None),
    ]
    assert sudoers.read_text().splitlines()[1:] == ["ops ALL=(ALL) ALL"]
    assert (root / "home/ops/.ssh/authorized_keys").read_text() == KEY2 + "\n"


# --- broken and unsupported seeds ------------------------------------------------------------


@pytest.mark.parametrize(
    "files, message",
    [
        (
            {"user-data": "#cloud-config\nhostname: mirror3\nssh_authorized_keys:\n  - [unclosed\n"},
            "user-data: line 5 column 1: not valid YAML (expected ',' or ']', but got '<stream end>')",
        ),
        (
            {"user-data": "#cloud-config\nhostname: mirror3\n",
             "network-config": "version: 1\nconfig:\n\t- type: physical\n"},
            "network-config: line 3 column 1: not valid YAML (found character '\\t' that cannot start any token)",
        ),
        ({"user-data": "#cloud-config\nhostname: mirror3\n", "meta-data": "instance-id: [a\n"},
         "meta-data: line 2 column 1"),
        ({"user-data": "#cloud-config\nssh_authorized_keys: {root: x}\n"},
         "user-data: ssh_authorized_keys must be a string or a list of strings"),
        ({"user-data": "#cloud-config\nhostname: mirror3\n", "network-config": "version: 3\n"},
         "network-config: version 3 not supported (1 or 2)"),
        (
            {"user-data": "#cloud-config\nhostname: mirror3\n",
             "network-config": "version: 2\nethernets:\n  ens3: {addresses: [192.0.2.300/24]}\n"},
            "network-config: ethernets: ens3: addresses: '192.0.2.300/24' "
            "does not appear to be an IPv4 or IPv6 interface",
        ),
        ({"user-data": "#cloud-config\nmirrorflow: {collector: {listen: [2055]}}\n"},
         "user-data: mirrorflow: collector: listen: '2055' is not ADDR:PORT"),
        ({"user-data": None}, "no user-data file (NoCloud needs meta-data and user-data, even empty)"),
        ({"user-data": "#cloud-config\n", "meta-data": None}, "no meta-data file"),
    ],
    ids=["bad-user-data-yaml", "bad-network-config-yaml", "bad-meta-data-yaml", "wrong-type", "network-version",
         "bad-address", "bad-listen", "no-user-data", "no-meta-data"],
)
def test_broken_seed_is_logged_and_nothing_is_written(
    tmp_path: Path,
    root: Path,
    commands: Commands,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str | None],
    message: str,
) -> None:
    files = {"meta-data": "instance-id: iid-test\n", **files}
    seed = make_seed(tmp_path, files["user-data"], files["meta-data"], files.get("network-config"))
    before = tree(root)

    assert fb.configure(seed, root) == 1

    assert tree(root) == before
    assert commands == []
    log = logged(capsys)
    assert log[-1].startswith("seed not applied, nothing changed: " + message), log


@pytest.mark.parametrize(
    "user_data, kind",
    [
        ("#!/bin/sh\necho hello > /root/x\n", "a shell script"),
        ('Content-Type: multipart/mixed; boundary="==B=="\nMIME-Version: 1.0\n\n--==B==\n', "MIME multipart"),
        ("#include\nhttps://example.net/cloud-config\n", "an #include list"),
    ],
)
def test_user_data_that_is_not_cloud_config_is_skipped(
    tmp_path: Path,
    root: Path,
    commands: Commands,
    capsys: pytest.CaptureFixture[str],
    user_data: str,
    kind: str,
) -> None:
    seed = make_seed(tmp_path, user_data, "instance-id: iid-1\nlocal-hostname: probe7\n")

    assert fb.configure(seed, root) == 0

    assert f"user-data is {kind}, not #cloud-config: not supported (no cloud-init), skipped" in logged(capsys)
    # meta-data still applies.
    assert (root / "etc/hostname").read_text() == "probe7\n"
    assert commands == [(["hostname", "probe7"], None)]


def test_no_seed_exits_0_after_the_host_keys(
    monkeypatch: pytest.MonkeyPatch, commands: Commands, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(fb, "find_seed", lambda: None)

    assert fb.main() == 0

    assert commands == [(["ssh-keygen", "-A"], None)]
    assert logged(capsys) == ["no seed (no filesystem labelled cidata): keeping the built-in settings"]


def test_a_failing_part_does_not_stop_the_others(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(cmd: list[str], stdin: str | None = None) -> str:
        if cmd[0] == "useradd":
            raise fb.SeedError("useradd admin failed (9): useradd: user 'admin' already exists")
        return ""

    monkeypatch.setattr(fb, "run", run)
    seed = make_seed(tmp_path, "#cloud-config\nuser: admin\nmirrorflow: {mirror_interfaces: [ens5]}\n")

    assert fb.configure(seed, root) == 1

    assert json.loads((root / "etc/mirrorflow/probe.json").read_text())["interfaces"] == ["ens5"]
    log = logged(capsys)
    assert "users not applied: useradd admin failed (9): useradd: user 'admin' already exists" in log
    assert log[-1] == "seed iid-test applied in part (see above)"
