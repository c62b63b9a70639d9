"""`UdpReceiver`: NetFlow/IPFIX datagrams from any number of UDP sockets as `PacketBatch`es.

Each listen address gets its own socket bound to exactly that address (`[::]` is IPv6 only,
so `0.0.0.0:2055` and `[::]:2055` coexist), a large receive buffer and non-blocking
`recvmmsg` batches into one preallocated buffer. One clock read stamps a whole batch.

A batch returned by `receive` points into that buffer: it is valid until the next call to
`receive` (use `PacketBatch.copy()` to keep it longer). Payload i sits at
`buf[offset[i]:offset[i] + length[i]]`; payloads are not back to back (one slot each).

Example:
    >>> rx = UdpReceiver(["0.0.0.0:2055", "[::]:2055"])
    >>> signal.signal(signal.SIGTERM, lambda *_: rx.stop())
    >>> for batch in rx.run(timeout_s=0.5):   # empty batches on idle ticks
    ...     decoder.feed(batch)
    >>> rx.close()
"""

from __future__ import annotations

import logging
import os
import select
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from appliance import MirrorflowError
from appliance.collector.receive._recvmmsg import RecvRing
from appliance.collector.receive.packets import PacketBatch

__all__ = ["ListenAddress", "ListenSpecError", "UdpReceiver", "parse_listen", "socket_drops"]

log = logging.getLogger(__name__)

DEFAULT_RCVBUF = 64 << 20
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


class ListenSpecError(MirrorflowError):
    """A listen address the receiver cannot parse."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """One address:port to bind; `host` is a numeric IPv4 or IPv6 address."""

    host: str
    port: int

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family == socket.AF_INET6 else f"{self.host}:{self.port}"


def parse_listen(spec: str) -> list[ListenAddress]:
    """Parse `0.0.0.0:2055`, `[::1]:2055` or a bare `2055` (every IPv4 and IPv6 address).

    Raises:
        ListenSpecError: no port, a port out of range, or a host that is not a numeric address.
    """
    text = spec.strip()
    if text.isdigit():
        port = _port(spec, text)
        return [ListenAddress("0.0.0.0", port), ListenAddress("::", port)]
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]:")
        if not sep:
            raise ListenSpecError(f"listen address {spec!r}: write IPv6 as [addr]:port, e.g. [::]:2055")
    else:
        host, sep, rest = text.rpartition(":")
        if not sep or ":" in host:
            raise ListenSpecError(f"listen address {spec!r}: expected addr:port, [addr6]:port or a port")
    try:
        socket.getaddrinfo(host, 0, 0, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        raise ListenSpecError(f"listen address {spec!r}: {host!r} is not a numeric IP address") from None
    return [ListenAddress(host, _port(spec, rest))]


def _port(spec: str, text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ListenSpecError(f"listen address {spec!r}: port must be 0..65535")
    return int(text)


def _open_socket(addr: ListenAddress, rcvbuf: int, reuse_port: bool) -> tuple[socket.socket, int]:
    sock = socket.socket(addr.family, socket.SOCK_DGRAM)
    try:
        if addr.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:  # root (CAP_NET_ADMIN) may exceed net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, rcvbuf)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        info = socket.getaddrinfo(addr.host, addr.port, addr.family, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST)
        sock.bind(info[0][4])
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise MirrorflowError(f"cannot listen on {addr}: {exc.strerror or exc}") from exc
    if granted < 2 * rcvbuf:  # Linux reports twice what was asked for when it grants it all
        log.warning(
            "%s: receive buffer %d bytes granted of %d asked; raise net.core.rmem_max "
            "(sysctl -w net.core.rmem_max=%d) or run with CAP_NET_ADMIN",
            addr, granted // 2, rcvbuf, rcvbuf,
        )
    return sock, granted


class UdpReceiver:
    """Receives datagrams from one or more UDP listen addresses in batches.

    Args:
        listen: specs such as `0.0.0.0:2055`, `[::]:2055`, `2055` (see `parse_listen`).
        batch: most datagrams per `receive` (recvmmsg slots).
        slot_size: bytes per slot; longer datagrams are dropped and counted in `truncated`.
        rcvbuf: receive buffer to ask for per socket (SO_RCVBUFFORCE when permitted).
        reuse_port: set SO_REUSEPORT so several processes can share a port.
        clock_ns: clock stamping each batch (injectable for tests).

    Attributes:
        listeners: the bound addresses (port 0 resolved to the port the kernel chose).
        rcvbuf_granted: smallest SO_RCVBUF the kernel reports for the sockets; Linux
            reports double the usable size it set aside.
        truncated: datagrams dropped for being longer than `slot_size`.
    """

    def __init__(
        self,
        listen: Iterable[str] | str,
        batch: int = 256,
        slot_size: int = 65536,
        rcvbuf: int = DEFAULT_RCVBUF,
        reuse_port: bool = False,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        specs = [listen] if isinstance(listen, str) else list(listen)
        addrs = [a for spec in specs for a in parse_listen(spec)]
        if not addrs:
            raise ListenSpecError("no listen address given")
        self._clock_ns = clock_ns
        self._socks: list[socket.socket] = []
        self._stop_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll = select.epoll()
        self._epoll.register(self._stop_fd, select.EPOLLIN)
        self._stopped = False
        self._next = 0
        self.truncated = 0
        granted = []
        try:
            for addr in addrs:
                sock, got = _open_socket(addr, rcvbuf, reuse_port)
                self._socks.append(sock)
                granted.append(got)
                self._epoll.register(sock.fileno(), select.EPOLLIN)
        except BaseException:
            self.close()
            raise
        self.rcvbuf_granted = min(granted)
        self.listeners = [_bound(s) for s in self._socks]
        self._inodes = {os.fstat(s.fileno()).st_ino for s in self._socks}
        self._ring = RecvRing(batch, slot_size)

    def receive(self, timeout_s: float | None = None) -> PacketBatch:
        """Next batch of datagrams; waits up to `timeout_s` (None: forever) for the first.

        Returns an empty batch on timeout or after `stop()`. The batch is valid until the
        next call (its buffer is reused).
        """
        n = self._drain()
        if n == 0 and not self._stopped:
            events = self._epoll.poll(-1 if timeout_s is None else timeout_s)
            if any(fd == self._stop_fd for fd, _ in events):
                self._stopped = True
            else:
                n = self._drain()
        return self._batch(n, self._clock_ns())

    def run(self, timeout_s: float = 0.5) -> Iterator[PacketBatch]:
        """Yield batches until `stop()`, including an empty one every `timeout_s` when idle."""
        while not self._stopped:
            yield self.receive(timeout_s)

    def stop(self) -> None:
        """Wake `receive` and end `run`; safe from a signal handler or another thread."""
        self._stopped = True
        os.eventfd_write(self._stop_fd, 1)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def drops(self) -> int:
        """Datagrams the kernel dropped on these sockets (full receive buffer), since open."""
        return sum(socket_drops(self._inodes).values())

    def close(self) -> None:
        """Close the sockets and the wake-up descriptor; idempotent."""
        for sock in self._socks:
            sock.close()
        self._socks = []
        if self._stop_fd >= 0:
            self._epoll.close()
            os.close(self._stop_fd)
            self._stop_fd = -1

    def __enter__(self) -> UdpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drain(self) -> int:
        """Fill the ring from every socket, starting one further each call for fairness."""
        ring, socks = self._ring, self._socks
        n = 0
        k = len(socks)
        for i in range(k):
            n += ring.recv(socks[(self._next + i) % k], n)
            if n == ring.slots:
                break
        self._next = (self._next + 1) % k
        return n

    def _batch(self, n: int, now_ns: int) -> PacketBatch:
        ring = self._ring
        hi, lo, port = ring.senders(n)
        offset, length = ring.offsets[:n], ring.lengths(n)
        if n:
            cut = ring.truncated(n)
            if cut.any():
                self.truncated += int(cut.sum())
                keep = ~cut
                hi, lo, port, offset, length = hi[keep], lo[keep], port[keep], offset[keep], length[keep]
        return PacketBatch(
            buf=ring.buf,
            offset=offset,
            length=length,
            addr_hi=hi,
            addr_lo=lo,
            port=port,
            recv_ns=np.full(len(offset), now_ns, np.int64),
        )


def _bound(sock: socket.socket) -> ListenAddress:
    host, port = sock.getsockname()[:2]
    return ListenAddress(host, port)


def socket_drops(inodes: Iterable[int]) -> dict[int, int]:
    """The `drops` column of /proc/net/udp and /proc/net/udp6 for sockets with these inodes."""
    wanted = set(inodes)
    found: dict[int, int] = {}
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if int(cols[9]) in wanted:
                        found[int(cols[9])] = int(cols[-1])
        except FileNotFoundError:
            continue
    return found
