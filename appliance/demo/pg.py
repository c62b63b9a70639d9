"""A throwaway PostgreSQL cluster: initdb/pg_ctl in a directory, 127.0.0.1, trust auth.

As root the server runs as the ``postgres`` user (PostgreSQL refuses to run as root). The
same logic as the tests' fixture (tests/conftest.py), which the demo must not import.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from . import DemoError

__all__ = ["PostgresCluster", "postgres_bin_dir", "free_tcp_port"]


def postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin holding pg_ctl, or None."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """A cluster in ``base_dir`` (data/, server.log, the socket) on 127.0.0.1:port."""

    def __init__(self, bin_dir: Path, base_dir: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.log_path = base_dir / "server.log"
        self.port = port
        self.run_as = "postgres" if os.geteuid() == 0 else None

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname} connect_timeout=5"

    def _run(self, *argv: str, timeout: float = 90) -> None:
        cmd = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.run_as is not None:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=self.base_dir, check=False)  # fmt: skip
        if proc.returncode != 0:
            try:
                tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
            except OSError:
                tail = "(no server log)"
            raise DemoError(f"'{' '.join(cmd)}' failed (exit {proc.returncode}):\n"
                            f"{proc.stdout}{proc.stderr}server log {self.log_path}:\n{tail}")

    def start(self) -> None:
        """initdb (no fsync: the data is thrown away), then starts and waits for connections."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self.run_as is not None:
            try:
                shutil.chown(self.base_dir, user=self.run_as, group=self.run_as)
            except LookupError as exc:
                raise DemoError("running as root but there is no 'postgres' user: "
                                "install postgresql (scripts/setup does)") from exc
        self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync", "--no-instructions")  # fmt: skip
        settings = {"listen_addresses": "'127.0.0.1'", "port": str(self.port),
                    "unix_socket_directories": f"'{self.base_dir}'", "fsync": "off",
                    "full_page_writes": "off", "shared_buffers": "32MB", "max_connections": "30"}  # fmt: skip
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# mirrorflow demo: a throwaway cluster\n")
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "60", "start")

    def create_database(self, name: str) -> str:
        """Creates database ``name`` and returns its DSN."""
        import psycopg  # noqa: PLC0415 - only when a database is used

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def table_rows(self, dbname: str) -> dict[str, int]:
        """Rows of every table in the public schema."""
        import psycopg  # noqa: PLC0415

        out: dict[str, int] = {}
        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            names = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
            for name in names:
                row = conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()
                out[name] = int(row[0]) if row else 0
        return out

    def destroy(self) -> None:
        """Stops the server whatever its state (immediate, then SIGKILL) and removes the directory."""
        try:
            stop_cluster(self.data_dir, self.bin_dir, self.run_as)
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)


def stop_cluster(data_dir: Path, bin_dir: Path | None = None, run_as: str | None = None) -> None:
    """Stops the cluster in ``data_dir`` if it runs (pg_ctl immediate; SIGKILL of its group)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    if bin_dir is not None:
        cmd = [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "-t", "20", "stop"]
        if run_as is not None:
            cmd = ["runuser", "-u", run_as, "--", *cmd]
        try:
            subprocess.run(cmd, capture_output=True, timeout=30, check=False)
        except subprocess.TimeoutExpired:
            pass
    try:  # pg_ctl starts the postmaster in its own session: its process group is the server
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
