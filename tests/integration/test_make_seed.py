"""vm-image/make-seed: a NoCloud ISO (volume id cidata) that mirrorflow-firstboot reads.

Runs the script, then reads the ISO back with isoinfo (genisoimage's companion, as the guest
kernel cannot be asked here: the host has no iso9660) and checks that the files parse to the
expected cloud-config, and that mirrorflow-firstboot accepts them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_firstboot import fb

REPO = Path(__file__).resolve().parents[2]
MAKE_SEED = REPO / "vm-image" / "make-seed"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHbX0Fh2m3y1mJ2Lrj2bJ4x0mirrorflowKEY1 me@laptop"



@pytest.fixture(autouse=True, scope="module")
def _genisoimage() -> None:
    """genisoimage (and isoinfo) come from the project's ansible/install-tools, as for the image."""
    if shutil.which("genisoimage") and shutil.which("isoinfo"):
        return
    proc = subprocess.run([str(REPO / "ansible" / "install-tools"), "image"], capture_output=True, text=True)
    if proc.returncode != 0 or not shutil.which("genisoimage"):
        pytest.skip(f"genisoimage missing and ansible/install-tools image failed: {proc.stderr.strip()[-300:]}")


def make_seed(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MAKE_SEED), *map(str, args)], capture_output=True, text=True, timeout=60, check=False)


def iso_file(iso: Path, name: str) -> str:
    proc = subprocess.run(["isoinfo", "-J", "-x", f"/{name}", "-i", str(iso)], capture_output=True, check=True)
    return proc.stdout.decode()


def iso_names(iso: Path) -> list[str]:
    out = subprocess.run(["isoinfo", "-J", "-f", "-i", str(iso)], capture_output=True, text=True, check=True).stdout
    return sorted(out.split())


def extract(iso: Path, into: Path) -> Path:
    into.mkdir()
    for name in iso_names(iso):
        (into / name.lstrip("/")).write_text(iso_file(iso, name.lstrip("/")))
    return into


def test_options_make_a_cidata_iso_with_the_cloud_config(tmp_path: Path) -> None:
    key = tmp_path / "id.pub"
    key.write_text(KEY + "\n")
    iso = tmp_path / "seed.iso"

    proc = make_seed(iso, "--ssh-key", key, "--hostname", "mirror1", "--user", "admin", "--mirror", "ens4",
                     "--mirror", "ens5", "--router", "192.0.2.1", "--listen", "0.0.0.0:2055", "--listen", "[::]:2055",
                     "--instance-id", "iid-mirror1")

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(iso)
    info = subprocess.run(["isoinfo", "-d", "-i", str(iso)], capture_output=True, text=True, check=True).stdout
    assert "Volume id: cidata" in info.splitlines()
    assert "Joliet" in info and "Rock Ridge" in info
    assert iso_names(iso) == ["/meta-data", "/user-data"]
    user_data = iso_file(iso, "user-data")
    assert user_data.startswith("#cloud-config\n")
    expected: dict[str, Any] = {
        "hostname": "mirror1",
        "user": "admin",
        "ssh_authorized_keys": [KEY],
        "mirrorflow": {
            "mirror_interfaces": ["ens4", "ens5"],
            "collector": {"listen": ["0.0.0.0:2055", "[::]:2055"], "allowed_routers": ["192.0.2.1"]},
        },
    }
    assert yaml.safe_load(user_data) == expected
    assert yaml.safe_load(iso_file(iso, "meta-data")) == {"instance-id": "iid-mirror1", "local-hostname": "mirror1"}

    seed = fb.load_seed(extract(iso, tmp_path / "seed"), tmp_path / "no-root")
    assert (seed.hostname, seed.instance_id) == ("mirror1", "iid-mirror1")
    assert [(a.name, a.keys, a.groups) for a in seed.accounts] == [("admin", [KEY], ["sudo"])]
    assert seed.mirrorflow == expected["mirrorflow"]
    assert seed.network is None


def test_user_data_as_is_and_network_config(tmp_path: Path) -> None:
    user_data = tmp_path / "user-data.yaml"
    user_data.write_text(f"#cloud-config\n# my own\nusers:\n  - name: ops\n    ssh_authorized_keys: ['{KEY}']\n")
    network_config = tmp_path / "net.yaml"
    network_config.write_text("version: 2\nethernets:\n  ens3:\n    dhcp4: true\n")
    iso = tmp_path / "seed.iso"

    proc = make_seed(iso, "--user-data", user_data, "--network-config", network_config)

    assert proc.returncode == 0, proc.stderr
    assert iso_names(iso) == ["/meta-data", "/network-config", "/user-data"]
    assert iso_file(iso, "user-data") == user_data.read_text()
    assert iso_file(iso, "network-config") == network_config.read_text()
    meta = yaml.safe_load(iso_file(iso, "meta-data"))
    assert list(meta) == ["instance-id"] and meta["instance-id"].startswith("iid-mirrorflow-")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--user-data", "{ud}", "--mirror", "ens4"], "--user-data is used as is"),
        (["--network-config", "{bad_net}"], "a network-config needs version: 1 or version: 2"),
        (["--ssh-key", "{missing}"], "cannot read"),
        (["--hostname"], "--hostname needs a value"),
        (["--json", "x"], "unknown option --json"),
    ],
)
def test_mistakes_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "ud").write_text("#cloud-config\n")
    (tmp_path / "bad_net").write_text("ethernets: {}\n")
    names = {"ud": tmp_path / "ud", "bad_net": tmp_path / "bad_net", "missing": tmp_path / "missing.pub"}
    iso = tmp_path / "seed.iso"

    proc = make_seed(iso, *(a.format(**names) for a in args))

    assert proc.returncode != 0
    assert message in proc.stderr
    assert not iso.exists()
