"""Where the probe's datagrams go: destinations, the transports that carry them (UDP, or
memory for tests), and the per-destination delivery state and statistics."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from appliance.probe.errors import ProbeConfigError

__all__ = ["MATCH_BYTES", "Destination", "DestinationStats", "MemoryTransport", "Transport", "UdpTransport",
           "parse_destination"]

#: bytes of a datagram that identify it in an ICMP error (headers with sequence numbers)
MATCH_BYTES = 48
_IP_RECVERR = 11
_IPV6_RECVERR = 25
_MSG_ERRQUEUE = 0x2000


@dataclass(frozen=True, slots=True)
class Destination:
    host: str
    port: int
    family: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family == socket.AF_INET6 else (
            f"{self.host}:{self.port}"
        )


def parse_destination(text: str) -> Destination:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``HOST`` (port 2055). Host names are resolved once."""
    host, port = text, "2055"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        portn = int(port)
        if not 0 < portn < 65536:
            raise ValueError
    except ValueError:
        raise ProbeConfigError(f"destination {text!r}: port must be 1..65535") from None
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        try:
            info = socket.getaddrinfo(host, portn, type=socket.SOCK_DGRAM)[0]
        except OSError as exc:
            raise ProbeConfigError(f"destination {text!r}: cannot resolve {host!r}: {exc}") from None
        addr = ipaddress.ip_address(info[4][0])
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    return Destination(str(addr), portn, family)


class Transport(Protocol):
    def send(self, payload: bytes) -> None: ...

    def refused(self) -> list[bytes]:
        """The first bytes of datagrams an ICMP error reported refused since the last call."""
        ...

    def local_port(self) -> int: ...

    def close(self) -> None: ...


class UdpTransport:
    """A connected, non-blocking UDP socket towards one destination."""

    def __init__(self, dest: Destination, sndbuf: int = 0, bind: str | None = None) -> None:
        self.sock = socket.socket(dest.family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        if sndbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        if bind:
            self.sock.bind((bind, 0))
        # ICMP errors also go to the error queue, with the start of the datagram they refer to
        if dest.family == socket.AF_INET6:
            self.sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
        else:
            self.sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
        self.sock.connect((dest.host, dest.port))

    def send(self, payload: bytes) -> None:
        self.sock.send(payload)

    def refused(self) -> list[bytes]:
        out = []
        while True:
            try:
                data, _, _, _ = self.sock.recvmsg(65535, 512, _MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError:
                return out
            out.append(data)

    def local_port(self) -> int:
        return int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()


class MemoryTransport:
    """Keeps what is sent; `fail_with` makes the next sends raise that errno.

    `listening = False` acts like a connected UDP socket towards a closed port: the datagram
    leaves, its ICMP error puts it on the error queue (`refused`) and makes the next send
    fail with ECONNREFUSED (that one is not sent).
    """

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.fail_with: int | None = None
        self.listening = True
        self.attempts = 0
        self._errqueue: list[bytes] = []
        self._pending_error = False

    def send(self, payload: bytes) -> None:
        self.attempts += 1
        if self.fail_with is not None:
            raise OSError(self.fail_with, errno.errorcode.get(self.fail_with, "error"))
        if self._pending_error:
            self._pending_error = False
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        if not self.listening:
            self._errqueue.append(payload[:MATCH_BYTES])
            self._pending_error = True
            return
        self.sent.append(payload)

    def refused(self) -> list[bytes]:
        out, self._errqueue = self._errqueue, []
        return out

    def local_port(self) -> int:
        return 0

    def close(self) -> None:
        pass


@dataclass(slots=True)
class DestinationStats:
    packets: int = 0
    bytes: int = 0
    flows: int = 0
    errors: int = 0
    #: errno name → count (ENOBUFS/EAGAIN: buffer full; ECONNREFUSED: ICMP unreachable)
    errors_by_cause: dict[str, int] = field(default_factory=dict)
    flows_lost: int = 0
    last_error: str = ""
    #: datagrams an ICMP error reported refused (each is held and sent again)
    refused: int = 0
    #: datagrams held now because the destination refuses; resent ones so far
    held: int = 0
    resent: int = 0


@dataclass(slots=True)
class _Link:
    """One destination's delivery state: what was sent recently, what is held back."""

    recent: dict[bytes, tuple[int, bytes, int]] = field(default_factory=dict)
    recent_order: deque[tuple[bytes, int]] = field(default_factory=deque)  # (key, index), oldest first
    hold: list[tuple[int, bytes, int]] = field(default_factory=list)  # (index, payload, flows)
    held_bytes: int = 0
    refusing: bool = False
    probe: bytes | None = None  # the match key of the probe sent at the last retry
