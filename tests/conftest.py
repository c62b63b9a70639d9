"""Shared fixtures: the capture corpus, network namespaces with veth pairs, throwaway PostgreSQL.

Tests marked ``root`` or ``netns`` are skipped when not running as root. CI runs as root and
runs everything; locally, ``scripts/test -m 'not netns'`` leaves them out explicitly.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
IS_ROOT = os.geteuid() == 0

_ROOT_MARKERS = ("root", "netns")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_ROOT:
        return
    for item in items:
        marker = next((m for m in _ROOT_MARKERS if item.get_closest_marker(m)), None)
        if marker:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"marked {marker!r}: needs root (CI runs as root; "
                    "run 'sudo scripts/test', or deselect with -m 'not netns and not root')"
                )
            )


# ---------------------------------------------------------------------------------------------
# Capture corpus
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The real-world capture corpus: $MIRRORFLOW_CORPUS, or ../shared/corpus beside the repo."""
    configured = os.environ.get("MIRRORFLOW_CORPUS")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "corpus"
    if not path.is_dir():
        origin = "MIRRORFLOW_CORPUS" if configured else "the default location"
        pytest.skip(
            f"capture corpus not found at {path} ({origin}): put it at ../shared/corpus "
            "beside the repository or point MIRRORFLOW_CORPUS at it"
        )
    return path


# ---------------------------------------------------------------------------------------------
# Network namespaces and veth pairs
# ---------------------------------------------------------------------------------------------

# Every namespace and interface is named mft<owner pid, 6 hex digits><n|v><counter>, so a
# later run can tell a crashed run's leftovers (owner dead) from a parallel run's (owner alive).
# Interface names must fit in 15 bytes: 3 + 6 + 1 + up to 4 digits + 1 for the end (a/b).
_PREFIX = "mft"
_OWNER = f"{os.getpid():06x}"
_NAME = re.compile(rf"^{_PREFIX}([0-9a-f]{{6}})[nv]\d+[ab]?$")
_counter = itertools.count()


class NetnsError(RuntimeError):
    """An ``ip`` command failed while building or removing test namespaces."""


def _ip(
    *args: str, netns: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *args] if netns is None else ["ip", "-n", netns, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise NetnsError(f"'{' '.join(cmd)}' failed: {proc.stderr.strip()}")
    return proc


def _list_namespaces() -> list[str]:
    # Lines look like "name (id: 3)" or just "name".
    return [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()]


def _list_links(netns: str | None = None) -> list[str]:
    # Lines look like "7: mft0012abv3a@mft0012abv3b: <BROADCAST,...> ...".
    out = _ip("-o", "link", "show", netns=netns).stdout
    return [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()]


def _process_alive(pid: int) -> bool:
    """True while pid runs; a zombie counts as dead (this machine's init may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _group_alive(pgid: int) -> bool:
    """True while any process of the group runs (zombies excluded)."""
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_path.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _kill_netns_processes(netns: str) -> None:
    # A process still inside keeps the namespace (and its interfaces) alive after `ip netns del`.
    for pid in _ip("netns", "pids", netns, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _remove_leftovers() -> None:
    """Removes mft* namespaces and links whose owning test run is no longer alive."""

    def stale(name: str) -> bool:
        match = _NAME.match(name)
        return bool(match) and not _process_alive(int(match.group(1), 16))

    for name in filter(stale, _list_namespaces()):
        _kill_netns_processes(name)
        _ip("netns", "del", name, check=False)
    for name in filter(stale, _list_links()):
        _ip("link", "del", name, check=False)


@dataclass(frozen=True)
class VethEnd:
    """One end of a veth pair: interface name, namespace (None: the root one), addresses."""

    name: str
    netns: str | None
    ipv4: str
    ipv6: str


@dataclass(frozen=True)
class VethPair:
    a: VethEnd
    b: VethEnd


class NetnsFactory:
    """Creates namespaces and veth pairs and removes all of them in cleanup().

    Addresses come from the benchmarking range 198.18.0.0/15 (a /30 per pair) and from
    fd00:6d66::/32 (a /64 per pair), so they never collide with the machine's own networks.
    """

    def __init__(self) -> None:
        self._namespaces: list[str] = []
        self._links: list[str] = []
        self._children: list[NetnsFactory] = []

    def namespace(self) -> str:
        """Creates a network namespace with lo up and returns its name."""
        name = f"{_PREFIX}{_OWNER}n{next(_counter)}"
        self._namespaces.append(name)
        _ip("netns", "add", name)
        _ip("link", "set", "lo", "up", netns=name)
        return name

    def veth_pair(self, netns_a: str | None, netns_b: str | None) -> VethPair:
        """Creates a veth pair, moves its ends into the namespaces, addresses them, brings them up.

        Args:
            netns_a: namespace for end ``a``; None keeps it in the root namespace.
            netns_b: namespace for end ``b``.
        """
        k = next(_counter)
        names = (f"{_PREFIX}{_OWNER}v{k}a", f"{_PREFIX}{_OWNER}v{k}b")
        self._links.append(names[0])
        _ip("link", "add", names[0], "type", "veth", "peer", "name", names[1])
        ends = []
        for host, (name, netns) in enumerate(zip(names, (netns_a, netns_b), strict=True), start=1):
            if netns is not None:
                _ip("link", "set", name, "netns", netns)
            ipv4 = f"198.18.{k // 64 % 256}.{k % 64 * 4 + host}"
            ipv6 = f"fd00:6d66:{k:x}::{host}"
            _ip("addr", "add", f"{ipv4}/30", "dev", name, netns=netns)
            _ip("addr", "add", f"{ipv6}/64", "dev", name, "nodad", netns=netns)
            _ip("link", "set", name, "up", netns=netns)
            ends.append(VethEnd(name, netns, ipv4, ipv6))
        return VethPair(*ends)

    @staticmethod
    def command(netns: str | None, *argv: str) -> list[str]:
        """The argv that runs ``argv`` inside ``netns`` (for subprocess.Popen and friends)."""
        return list(argv) if netns is None else ["ip", "netns", "exec", netns, *argv]

    def run(
        self, netns: str | None, *argv: str, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Runs a command inside ``netns`` and returns it finished, output captured as text."""
        return subprocess.run(
            self.command(netns, *argv), capture_output=True, text=True, timeout=timeout, check=False
        )

    def scoped(self) -> NetnsFactory:
        """A factory whose objects go at the end of a ``with`` block (and with this one's at the latest)."""
        child = NetnsFactory()
        self._children.append(child)
        return child

    def cleanup(self) -> None:
        """Removes every namespace and link this factory and its scoped children created."""
        for child in self._children:
            child.cleanup()
        self._children.clear()
        errors = []
        present = set(_list_links())
        for name in self._links:
            if name in present:
                proc = _ip("link", "del", name, check=False)
                if proc.returncode != 0 and name in _list_links():
                    errors.append(f"link {name}: {proc.stderr.strip()}")
        self._links.clear()
        present = set(_list_namespaces())
        for name in self._namespaces:
            if name in present:
                _kill_netns_processes(name)
                proc = _ip("netns", "del", name, check=False)
                if proc.returncode != 0:
                    errors.append(f"namespace {name}: {proc.stderr.strip()}")
        self._namespaces.clear()
        if errors:
            raise NetnsError("could not remove: " + "; ".join(errors))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


@pytest.fixture(scope="session")
def netns_factory() -> Iterator[NetnsFactory]:
    """Session-wide namespaces and veth pairs; everything is removed when the session ends.

    Leftovers of a crashed earlier run are removed first.
    """
    if not IS_ROOT:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.fail("'ip' not found: install iproute2 (scripts/setup does)")
    _remove_leftovers()
    factory = NetnsFactory()
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture
def netns(netns_factory: NetnsFactory) -> Iterator[NetnsFactory]:
    """Like netns_factory, but what the test creates is removed when the test ends."""
    with netns_factory.scoped() as factory:
        yield factory


# ---------------------------------------------------------------------------------------------
# Throwaway PostgreSQL
# ---------------------------------------------------------------------------------------------


class PostgresError(RuntimeError):
    """The throwaway PostgreSQL cluster could not be created, started or stopped."""


def _postgres_bin_dir() -> Path:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        pytest.fail(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: "
            "install postgresql (scripts/setup does), or deselect with -m 'not postgres'"
        )
    return candidates[-1].parent


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory, on 127.0.0.1:port with trust auth.

    As root the server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
    A test that calls stop() or kill() must call start() again before it ends: the server is
    shared by the session.
    """

    def __init__(self, bin_dir: Path, base_dir: Path, port: int, run_as: str | None) -> None:
        self.bin_dir = bin_dir
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir
        self.log_path = base_dir / "server.log"
        self.port = port
        self._run_as = run_as
        self._databases = itertools.count()

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname} connect_timeout=5"

    def _run(self, *argv: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self._run_as is not None:
            cmd = ["runuser", "-u", self._run_as, "--", *cmd]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=self.base_dir, check=False
        )
        if proc.returncode != 0:
            raise PostgresError(
                f"'{' '.join(cmd)}' failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
                f"server log {self.log_path}:\n{self._log_tail()}"
            )
        return proc

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def init(self) -> None:
        """Creates the cluster: trust auth, no fsync.

        fsync only protects against the machine losing power; kill() stays a faithful crash
        because commits still wait for the WAL write (synchronous_commit stays on).
        """
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "full_page_writes": "off",
            "shared_buffers": "64MB",
            "max_connections": "100",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# throwaway test cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None

    @property
    def running(self) -> bool:
        pid = self._postmaster_pid()
        return pid is not None and _process_alive(pid)

    def start(self) -> None:
        """Starts the server and waits until it accepts connections; no-op if it runs."""
        if self.running:
            return
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "60", "start"
        )

    def stop(self) -> None:
        """Stops the server cleanly (fast shutdown: open sessions are disconnected)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop")

    def kill(self) -> None:
        """SIGKILLs the postmaster and every backend, as a crash would, and waits until they're gone."""
        pid = self._postmaster_pid()
        if pid is None or not _process_alive(pid):
            return
        # pg_ctl starts the postmaster in its own session, so its process group is the server.
        os.killpg(pid, signal.SIGKILL)
        # A backend still attached to the old shared memory would stop the next start.
        deadline = time.monotonic() + 10
        while _group_alive(pid):
            if time.monotonic() > deadline:
                raise PostgresError(
                    f"PostgreSQL processes of group {pid} survived SIGKILL for 10 s"
                )
            time.sleep(0.02)
        # Where nothing reaps orphans the dead postmaster stays a zombie, and PostgreSQL would take
        # the lock files naming it for a live server; the crash is real, so they are stale.
        if Path(f"/proc/{pid}").exists():
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
            (self.socket_dir / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)

    def create_database(self) -> str:
        """Creates a new empty database and returns its DSN."""
        import psycopg  # imported here: only postgres tests need it

        name = f"test_{next(self._databases)}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def destroy(self) -> None:
        """Stops the server whatever its state and removes the directory."""
        try:
            if self.running:
                try:
                    self._run(
                        "pg_ctl",
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                        timeout=30,
                    )
                except (PostgresError, subprocess.TimeoutExpired):
                    self.kill()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running throwaway PostgreSQL cluster for the session (see PostgresServer)."""
    bin_dir = _postgres_bin_dir()
    base_dir = Path(tempfile.mkdtemp(prefix="mft-pg-"))
    run_as = None
    if IS_ROOT:
        run_as = "postgres"
        try:
            shutil.chown(base_dir, user=run_as, group=run_as)
        except LookupError:
            shutil.rmtree(base_dir)
            pytest.fail("running as root but there is no 'postgres' user: install postgresql")
    server = PostgresServer(bin_dir, base_dir, _free_tcp_port(), run_as)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> str:
    """DSN of a fresh, empty database on the session's server (restarted if a test left it down)."""
    postgres_server.start()
    return postgres_server.create_database()
