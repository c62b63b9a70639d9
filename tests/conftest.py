"""Shared fixtures: the capture corpus, network namespaces with veth pairs, throwaway PostgreSQL.

Tests marked ``root`` or ``netns`` are skipped when not running as root. CI runs as root and
runs everything; locally, ``scripts/test -m 'not netns'`` leaves them out explicitly.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import pytest

from appliance.demo import DemoError
from appliance.demo.netns import (
    add_namespace,
    add_veth,
    command,
    ip,
    remove_leftovers,
    remove_namespaces_and_links,
)
from appliance.demo.pg import PostgresCluster, free_tcp_port, postgres_bin_dir

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
# The demo's objects (appliance/demo/netns.py) have a prefix of their own: neither removes the other's.
_PREFIX = "mft"
_OWNER = f"{os.getpid():06x}"
_NAME = re.compile(rf"^{_PREFIX}([0-9a-f]{{6}})[nv]\d+[ab]?$")
_counter = itertools.count()


def _remove_leftovers() -> None:
    """Removes mft* namespaces and links whose owning test run is no longer alive."""
    remove_leftovers(_NAME)


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
        add_namespace(name)
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
        add_veth(names[0], netns_a, names[1], netns_b)
        ends = []
        for host, (name, netns) in enumerate(zip(names, (netns_a, netns_b), strict=True), start=1):
            ipv4 = f"198.18.{k // 64 % 256}.{k % 64 * 4 + host}"
            ipv6 = f"fd00:6d66:{k:x}::{host}"
            ip("addr", "add", f"{ipv4}/30", "dev", name, netns=netns)
            ip("addr", "add", f"{ipv6}/64", "dev", name, "nodad", netns=netns)
            ip("link", "set", name, "up", netns=netns)
            ends.append(VethEnd(name, netns, ipv4, ipv6))
        return VethPair(*ends)

    @staticmethod
    def command(netns: str | None, *argv: str) -> list[str]:
        """The argv that runs ``argv`` inside ``netns`` (for subprocess.Popen and friends)."""
        return command(netns, *argv)

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
        errors = remove_namespaces_and_links(self._namespaces, self._links)
        self._namespaces.clear()
        self._links.clear()
        if errors:
            raise DemoError("could not remove: " + "; ".join(errors))

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


class PostgresServer(PostgresCluster):
    """The demo's throwaway cluster (appliance/demo/pg.py), sized for the tests, on 127.0.0.1:port.

    A test that calls stop() or kill() must call start() again before it ends: the server is
    shared by the session.
    """

    settings: ClassVar[Mapping[str, str]] = {"shared_buffers": "64MB", "max_connections": "100"}

    def __init__(self, bin_dir: Path, base_dir: Path, port: int) -> None:
        super().__init__(bin_dir, base_dir, port)
        self._databases = itertools.count()

    def create_database(self, name: str | None = None) -> str:
        """Creates a new empty database (``test_<n>`` unless named) and returns its DSN."""
        return super().create_database(f"test_{next(self._databases)}" if name is None else name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running throwaway PostgreSQL cluster for the session (see PostgresServer)."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.fail(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: "
            "install postgresql (scripts/setup does), or deselect with -m 'not postgres'"
        )
    server = PostgresServer(bin_dir, Path(tempfile.mkdtemp(prefix="mft-pg-")), free_tcp_port())
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> str:
    """DSN of a fresh, empty database on the session's server (restarted if a test left it down)."""
    postgres_server.start()
    return postgres_server.create_database()
