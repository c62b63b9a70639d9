"""The Ansible roles (ansible/): syntax, ansible-lint, and a converge into a Debian chroot.

The tools come from ``ansible/install-tools`` (Ansible in .cache/ansible-venv, debootstrap
from Debian); a test that cannot get them is skipped with the reason. The converge applies
``site.yml`` with ``mirrorflow_live=false`` through the chroot connection, twice: the second
run must report ``changed=0``; then a check-mode run must pass and change nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
VENV_BIN = REPO / ".cache" / "ansible-venv" / "bin"


def _install(part: str) -> None:
    proc = subprocess.run([str(ANSIBLE_DIR / "install-tools"), part], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"ansible/install-tools {part} failed: {proc.stderr.strip()[-400:]}")


@pytest.fixture(scope="module")
def ansible_env() -> dict[str, str]:
    _install("ansible")
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env['PATH']}"
    env["ANSIBLE_CONFIG"] = str(ANSIBLE_DIR / "ansible.cfg")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["NO_COLOR"] = "1"
    return env


def _run(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ANSIBLE_DIR, env=env, capture_output=True, text=True, timeout=timeout)


def test_playbook_syntax(ansible_env: dict[str, str]) -> None:
    proc = _run([str(VENV_BIN / "ansible-playbook"), "--syntax-check", "-i", "inventory/example.yml",
                 "site.yml"], ansible_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint_clean(ansible_env: dict[str, str]) -> None:
    proc = _run([str(VENV_BIN / "ansible-lint"), "--offline", "--nocolor"], ansible_env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed: 0 failure(s), 0 warning(s)" in proc.stdout + proc.stderr


def test_inventory_example_parses(ansible_env: dict[str, str]) -> None:
    proc = _run([str(VENV_BIN / "ansible-inventory"), "-i", "inventory/example.yml", "--list"], ansible_env)
    assert proc.returncode == 0, proc.stderr
    assert "mirror1.example.net" in proc.stdout and "mirror2.example.net" in proc.stdout


def test_every_role_variable_is_documented() -> None:
    """Each role default appears in ansible/README.md, where users look for it."""
    readme = (ANSIBLE_DIR / "README.md").read_text()
    missing = []
    for defaults in sorted(ANSIBLE_DIR.glob("roles/*/defaults/main.yml")):
        for name in re.findall(r"(?m)^(mirrorflow_\w+):", defaults.read_text()):
            if f"`{name}`" not in readme:
                missing.append(f"{defaults.parent.parent.name}: {name}")
    assert not missing, "variables missing from ansible/README.md: " + ", ".join(missing)


# ---------------------------------------------------------------------------------------------
# Converge into a debootstrap chroot
# ---------------------------------------------------------------------------------------------

_SECRET = "Zq7-not-in-any-log"
_RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def _recap(output: str) -> tuple[int, int, int, int]:
    found = _RECAP.findall(output)
    assert found, "no PLAY RECAP in:\n" + output[-3000:]
    ok, changed, unreachable, failed = (int(x) for x in found[-1])
    return ok, changed, unreachable, failed


def _changed_tasks(output: str) -> list[str]:
    """The tasks (and handlers) whose block reports a change."""
    blocks = re.split(r"\n(?=(?:TASK|RUNNING HANDLER) \[)", output)
    return [re.match(r"(?:TASK|RUNNING HANDLER) \[([^\]]+)\]", b).group(1)  # type: ignore[union-attr]
            for b in blocks if re.match(r"(?:TASK|RUNNING HANDLER) \[", b) and re.search(r"^changed:", b, re.M)]


@pytest.fixture(scope="module")
def chroot_root(ansible_env: dict[str, str]) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root: debootstrap and chroot")
    _install("image")
    base = Path(os.environ.get("MIRRORFLOW_VM_TMP", "/var/tmp"))
    root = base / f"mirrorflow-converge-{os.getpid()}"
    proc = subprocess.run([str(REPO / "vm-image" / "mkroot"), str(root)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"debootstrap failed (no Debian mirror?): {proc.stderr.strip()[-400:]}")
    yield root
    for sub in ("dev/pts", "dev", "sys", "proc"):
        subprocess.run(["umount", "-R", "-l", str(root / sub)], capture_output=True, check=False)
    # Never delete through a mount that is still there (it would reach the host's /sys or /dev).
    still = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
             if line.split()[1].startswith(f"{root}/")]
    assert not still, f"still mounted, {root} left in place: {still}"
    shutil.rmtree(root, ignore_errors=True)


def _apply(root: Path, env: dict[str, str], *args: str) -> tuple[str, float]:
    started = time.monotonic()
    proc = subprocess.run([str(REPO / "vm-image" / "apply-roles"), str(root), *args], env=env,
                          capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    return out, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.root
def test_converge_chroot_idempotent_and_check_mode(chroot_root: Path, ansible_env: dict[str, str]) -> None:
    secret = "-e", f"mirrorflow_db_password={_SECRET}"
    first, t_first = _apply(chroot_root, ansible_env, *secret)
    ok, changed, _, failed = _recap(first)
    assert failed == 0 and changed > 10, first[-3000:]

    second, t_second = _apply(chroot_root, ansible_env, *secret)
    assert _recap(second)[1] == 0, f"second run changed: {_changed_tasks(second)}\n{second[-3000:]}"

    check, _ = _apply(chroot_root, ansible_env, *secret, "--check", "--diff")
    assert _recap(check)[1] == 0 and _recap(check)[3] == 0, check[-3000:]

    r = chroot_root
    # What the roles promise, as files in the root.
    etc = r / "etc" / "mirrorflow"
    assert (etc / "probe.json").is_file() and (etc / "collector.conf").is_file()
    for d in ("mo/total/mo.conf", "spool", "spool/failed", "notifications"):
        assert (r / "var/lib/mirrorflow" / d).exists(), d
    network = (r / "etc/systemd/network/10-mirrorflow-mirror.network").read_text()
    assert "Promiscuous=yes" in network and "LinkLocalAddressing=no" in network and "DHCP=no" in network
    probe_unit = (r / "etc/systemd/system/mirrorflow-probe.service").read_text()
    assert "CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_SYS_ADMIN" in probe_unit
    assert "Restart=on-failure" in probe_unit
    collector_unit = (r / "etc/systemd/system/mirrorflow-collector.service").read_text()
    assert "User=mirrorflow" in collector_unit and "\nMemoryDenyWriteExecute=" not in collector_unit
    assert "NUMBA_CACHE_DIR=/var/cache/mirrorflow/collector/numba" in collector_unit
    assert "CapabilityBoundingSet=\n" in collector_unit and "Restart=on-failure" in collector_unit
    wants = r / "etc/systemd/system/multi-user.target.wants"
    for unit in ("mirrorflow-probe.service", "mirrorflow-collector.service", "mirrorflow-db-setup.service",
                 "postgresql.service", "systemd-networkd.service"):
        assert (wants / unit).is_symlink(), f"{unit} not enabled"
    assert (r / "etc/systemd/system/sys-subsystem-net-devices-ens4.device.wants"
            / "mirrorflow-offload@ens4.service").is_symlink()
    # The installed application works in the root: config checks, bcc and numba import.
    proc = subprocess.run(["chroot", str(r), "/usr/local/bin/mirrorflow", "check-config", "-c",
                           "/etc/mirrorflow/collector.conf"], capture_output=True, text=True)
    assert proc.returncode == 0 and "configuration OK" in proc.stdout, proc.stdout + proc.stderr
    proc = subprocess.run(["chroot", str(r), "/opt/mirrorflow/venv/bin/python", "-c", "import bcc, numba, psycopg"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # numba's kernels were compiled at install time, as each unit's user (mirrorflow_warm_cache);
    # the second run found them all cached (changed=0 above).
    for part, owner, kernels in (("collector", "mirrorflow", 40), ("probe", "root", 5)):
        indexes = list((r / "var/cache/mirrorflow" / part / "numba").rglob("*.nbi"))
        assert len(indexes) >= kernels, f"{part}: {len(indexes)} numba cache indexes"
        uids = {p.stat().st_uid for p in indexes}
        expected = int(subprocess.run(["chroot", str(r), "id", "-u", owner], capture_output=True, text=True,
                                      check=True).stdout)
        assert uids == {expected}, (part, uids, expected)
    # The secret went nowhere but its file (0600 postgres), not even into --diff output.
    assert all(_SECRET not in out for out in (first, second, check))
    assert (r / "etc/postgresql/mirrorflow-db-password").read_text() == _SECRET
    assert oct((r / "etc/postgresql/mirrorflow-db-password").stat().st_mode & 0o777) == "0o600"
    print(f"converge: first run {t_first:.0f} s, idempotent re-run {t_second:.0f} s")
