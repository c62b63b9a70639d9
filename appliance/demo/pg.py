"""A throwaway PostgreSQL cluster: initdb/pg_ctl in a directory, 127.0.0.1, trust auth.

As root the server runs as the ``postgres`` user (PostgreSQL refuses to run as root). The
tests' PostgreSQL fixture (tests/conftest.py) is this class too.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from appliance.demo import DemoError
from appliance.demo._proc import group_alive, process_alive

__all__ = ["PostgresCluster", "postgres_bin_dir", "free_tcp_port", "stop_cluster", "kill_cluster"]


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
    """A cluster in ``base_dir`` (data/, server.log, the socket) on 127.0.0.1:port.

    Class attribute ``settings`` goes into postgresql.conf; a subclass may change it.
    """

    settings: ClassVar[Mapping[str, str]] = {"shared_buffers": "32MB", "max_connections": "30"}

    def __init__(self, bin_dir: Path, base_dir: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir
        self.log_path = base_dir / "server.log"
        self.port = port
        self.run_as = "postgres" if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname} connect_timeout=5"

    def _run(self, *argv: str, timeout: float = 90) -> None:
        cmd = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.run_as is not None:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=self.base_dir, check=False)
        if proc.returncode != 0:
            try:
                tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
            except OSError:
                tail = "(no server log)"
            raise DemoError(f"'{' '.join(cmd)}' failed (exit {proc.returncode}):\n"
                            f"{proc.stdout}{proc.stderr}server log {self.log_path}:\n{tail}")

    def _init(self) -> None:
        """Creates the directory and the cluster: trust auth, no fsync.

        fsync only protects against the machine losing power; kill() stays a faithful crash
        because commits still wait for the WAL write (synchronous_commit stays on).
        """
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self.run_as is not None:
            try:
                shutil.chown(self.base_dir, user=self.run_as, group=self.run_as)
            except LookupError as exc:
                raise DemoError("running as root but there is no 'postgres' user: "
                                "install postgresql (scripts/setup does)") from exc
        self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync", "--no-instructions")
        settings = {"listen_addresses": "'127.0.0.1'", "port": str(self.port),
                    "unix_socket_directories": f"'{self.socket_dir}'", "fsync": "off",
                    "full_page_writes": "off", **self.settings}
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# mirrorflow: a throwaway cluster\n")
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())

    @property
    def running(self) -> bool:
        pid = _postmaster_pid(self.data_dir)
        return pid is not None and process_alive(pid)

    def start(self) -> None:
        """Creates the cluster if there is none, starts it and waits for connections; no-op if it runs."""
        if self.running:
            return
        if not (self.data_dir / "PG_VERSION").exists():
            self._init()
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stops the server cleanly (fast shutdown: open sessions are disconnected)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop")

    def kill(self) -> None:
        """SIGKILLs the postmaster and every backend, as a crash would, and waits until they're gone."""
        if not kill_cluster(self.data_dir):
            raise DemoError(f"PostgreSQL processes of {self.data_dir} survived SIGKILL for 10 s")

    def create_database(self, name: str) -> str:
        """Creates database ``name`` and returns its DSN."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def table_rows(self, dbname: str) -> dict[str, int]:
        """Rows of every table in the public schema."""
        import psycopg

        out: dict[str, int] = {}
        with psycopg.connect(self.dsn_for(dbname), autocommit=True) as conn:
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


def _postmaster_file(data_dir: Path) -> list[str]:
    # Line 1 is the postmaster's pid, line 4 the port, line 5 the socket directory.
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return []
    return lines if lines and lines[0].strip().isdigit() else []


def _postmaster_pid(data_dir: Path) -> int | None:
    lines = _postmaster_file(data_dir)
    return int(lines[0]) if lines else None


def kill_cluster(data_dir: Path, wait: float = 10) -> bool:
    """SIGKILLs the postmaster of ``data_dir`` and every backend, and waits until they're gone.

    Returns:
        False if some survived ``wait`` seconds; True once none runs (or none ran).
    """
    lines = _postmaster_file(data_dir)
    if not lines:
        return True
    pid = int(lines[0])
    if group_alive(pid):
        # pg_ctl starts the postmaster in its own session, so its process group is the server.
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:  # not ours to kill (another user's server)
            return False
        # A backend still attached to the old shared memory would stop the next start.
        deadline = time.monotonic() + wait
        while group_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
    # Where nothing reaps orphans the dead postmaster stays a zombie, and PostgreSQL would take
    # the lock files naming it for a live server; the crash is real, so they are stale.
    if Path(f"/proc/{pid}").exists():
        (data_dir / "postmaster.pid").unlink(missing_ok=True)
        if len(lines) > 4 and lines[4]:
            (Path(lines[4]) / f".s.PGSQL.{lines[3]}.lock").unlink(missing_ok=True)
    return True


def stop_cluster(data_dir: Path, bin_dir: Path | None = None, run_as: str | None = None) -> bool:
    """Stops the cluster in ``data_dir`` if it runs: pg_ctl immediate, then SIGKILL of its group.

    Returns:
        False if some of its processes survived; it never raises, so that teardown goes on.
    """
    pid = _postmaster_pid(data_dir)
    if bin_dir is not None and pid is not None and process_alive(pid):
        cmd = [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "-t", "20", "stop"]
        if run_as is not None:
            cmd = ["runuser", "-u", run_as, "--", *cmd]
        try:
            subprocess.run(cmd, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return kill_cluster(data_dir)
