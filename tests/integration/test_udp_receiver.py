"""UdpReceiver over real loopback sockets (IPv4 and IPv6): payloads, senders, buffers, drops, stop."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from appliance import MirrorflowError
from appliance.collector.receive.packets import PacketBatch, words_to_address
from appliance.collector.receive.udp import DEFAULT_RCVBUF, ListenAddress, ListenSpecError, UdpReceiver, parse_listen

Row = tuple[str, int, bytes]


def rows(batch: PacketBatch) -> list[Row]:
    out = []
    for i in range(len(batch)):
        o = int(batch.offset[i])
        out.append((words_to_address(batch.addr_hi[i], batch.addr_lo[i]), int(batch.port[i]),
                    bytes(batch.buf[o : o + int(batch.length[i])])))
    return out


def collect(rx: UdpReceiver, want: int, deadline_s: float = 5.0) -> list[Row]:
    got: list[Row] = []
    end = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < end:
        got += rows(rx.receive(0.2))
    return got


def senders(family: socket.AddressFamily, count: int, host: str) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind((host, 0))
        socks.append(s)
    return socks


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4:
        s4.bind(("0.0.0.0", 0))
        return s4.getsockname()[1]


@pytest.fixture
def closing() -> Iterator[list[UdpReceiver]]:
    made: list[UdpReceiver] = []
    yield made
    for rx in made:
        rx.close()


def open_rx(closing: list[UdpReceiver], *specs: str, **kw: object) -> UdpReceiver:
    rx = UdpReceiver(list(specs), **kw)  # type: ignore[arg-type]
    closing.append(rx)
    return rx


# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0.0.0.0:2055", [ListenAddress("0.0.0.0", 2055)]),
        ("[::1]:2055", [ListenAddress("::1", 2055)]),
        ("[::]:9995", [ListenAddress("::", 9995)]),
        ("2055", [ListenAddress("0.0.0.0", 2055), ListenAddress("::", 2055)]),
        (" 127.0.0.1:0 ", [ListenAddress("127.0.0.1", 0)]),
    ],
)
def test_parse_listen(spec: str, expected: list[ListenAddress]) -> None:
    assert parse_listen(spec) == expected


@pytest.mark.parametrize("spec", ["", "::1:2055", "[::1]", "host.example:2055", "1.2.3.4:70000", "1.2.3.4:", "[::1]:x"])
def test_parse_listen_rejects(spec: str) -> None:
    with pytest.raises(ListenSpecError, match="listen address"):
        parse_listen(spec)


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_every_datagram_arrives_exactly(closing: list[UdpReceiver], family: socket.AddressFamily, host: str) -> None:
    rx = open_rx(closing, f"[{host}]:0" if family == socket.AF_INET6 else f"{host}:0", batch=64)
    port = rx.listeners[0].port
    tx = senders(family, 4, host)
    sent: list[Row] = []
    for i in range(1000):
        s = tx[i % 4]
        payload = os.urandom(20 + i % 1400)
        s.sendto(payload, (host, port))
        sent.append((host, s.getsockname()[1], payload))
    before = time.time_ns()
    got = []
    while len(got) < len(sent):
        batch = rx.receive(2.0)
        assert 0 < len(batch) <= 64
        assert (batch.recv_ns >= before - 10**9).all()
        got += rows(batch)
    assert sorted(got) == sorted(sent)
    # One socket delivers in order per sender.
    for s in tx:
        sport = s.getsockname()[1]
        assert [p for _, sp, p in got if sp == sport] == [p for _, sp, p in sent if sp == sport]
    assert rx.drops() == 0
    for s in tx:
        s.close()


def test_v4_and_v6_wildcards_share_a_port(closing: list[UdpReceiver]) -> None:
    port = free_port()
    rx = open_rx(closing, f"0.0.0.0:{port}", f"[::]:{port}")
    assert [str(a) for a in rx.listeners] == [f"0.0.0.0:{port}", f"[::]:{port}"]
    with (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4,
          socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6):
        s4.sendto(b"over v4", ("127.0.0.1", port))
        s6.sendto(b"over v6", ("::1", port))
        got = collect(rx, 2)
        assert sorted(got) == sorted([("127.0.0.1", s4.getsockname()[1], b"over v4"),
                                      ("::1", s6.getsockname()[1], b"over v6")])


def test_bound_address_is_honoured(closing: list[UdpReceiver]) -> None:
    port = free_port()
    only_1 = open_rx(closing, f"127.0.0.1:{port}")
    only_2 = open_rx(closing, f"127.0.0.2:{port}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"for .2", ("127.0.0.2", port))
        assert [p for *_, p in collect(only_2, 1)] == [b"for .2"]
        assert len(only_1.receive(0.2)) == 0


def test_two_listeners_one_receiver(closing: list[UdpReceiver]) -> None:
    rx = open_rx(closing, "127.0.0.1:0", "[::1]:0", batch=16)
    (a, b) = rx.listeners
    with (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4,
          socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6):
        for i in range(100):
            s4.sendto(b"4-%d" % i, ("127.0.0.1", a.port))
            s6.sendto(b"6-%d" % i, ("::1", b.port))
        got = collect(rx, 200)
    assert sorted(p for *_, p in got) == sorted([b"4-%d" % i for i in range(100)] + [b"6-%d" % i for i in range(100)])


def test_granted_receive_buffer_is_reported(closing: list[UdpReceiver]) -> None:
    rx = open_rx(closing, "127.0.0.1:0")
    if os.geteuid() == 0:  # SO_RCVBUFFORCE: the whole 64 MiB, reported doubled by Linux
        assert rx.rcvbuf_granted == 2 * DEFAULT_RCVBUF
    else:
        with open("/proc/sys/net/core/rmem_max") as f:
            assert rx.rcvbuf_granted == 2 * min(int(f.read()), DEFAULT_RCVBUF)


def test_overflow_is_counted_as_drops(closing: list[UdpReceiver]) -> None:
    rx = open_rx(closing, "127.0.0.1:0", rcvbuf=4096)
    assert rx.rcvbuf_granted < 20000
    sent = 2000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(sent):
            s.sendto(b"%d" % i + b"." * 300, ("127.0.0.1", rx.listeners[0].port))
    received = 0
    while len(batch := rx.receive(0.2)):
        received += len(batch)
    drops = rx.drops()
    assert drops > 0 and received > 0
    assert received + drops == sent


def test_oversized_datagrams_are_dropped_and_counted(closing: list[UdpReceiver]) -> None:
    rx = open_rx(closing, "127.0.0.1:0", slot_size=512)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for payload in (b"a" * 100, b"b" * 600, b"c" * 512):
            s.sendto(payload, ("127.0.0.1", rx.listeners[0].port))
        got = collect(rx, 2)
    assert [p for *_, p in got] == [b"a" * 100, b"c" * 512]
    assert rx.truncated == 1


def test_copy_survives_the_next_receive(closing: list[UdpReceiver]) -> None:
    rx = open_rx(closing, "127.0.0.1:0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"first", ("127.0.0.1", rx.listeners[0].port))
        first = rx.receive(2.0)
        kept = first.copy()
        s.sendto(b"XXXXX", ("127.0.0.1", rx.listeners[0].port))
        rx.receive(2.0)
    assert [p for *_, p in rows(first)] == [b"XXXXX"]  # documented: valid until the next call
    assert [p for *_, p in rows(kept)] == [b"first"]


def test_sigterm_handler_stops_a_blocked_receive(closing: list[UdpReceiver]) -> None:
    rx = open_rx(closing, "127.0.0.1:0")
    previous = signal.signal(signal.SIGTERM, lambda *_: rx.stop())
    try:
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        start = time.monotonic()
        ticks = list(rx.run(timeout_s=30.0))
        timer.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert time.monotonic() - start < 2.0
    assert all(len(b) == 0 for b in ticks) and rx.stopped


def test_run_yields_idle_ticks_and_stop_from_another_thread(closing: list[UdpReceiver]) -> None:
    rx = open_rx(closing, "127.0.0.1:0")
    threading.Timer(0.35, rx.stop).start()
    ticks = list(rx.run(timeout_s=0.1))
    assert 2 <= len(ticks) <= 6


def test_close_releases_the_port() -> None:
    rx = UdpReceiver("127.0.0.1:0")
    port = rx.listeners[0].port
    rx.close()
    rx.close()
    again = UdpReceiver(f"127.0.0.1:{port}")
    again.close()


def test_a_taken_port_is_a_clear_error(closing: list[UdpReceiver]) -> None:
    rx = open_rx(closing, "127.0.0.1:0")
    with pytest.raises(MirrorflowError, match=f"cannot listen on 127.0.0.1:{rx.listeners[0].port}"):
        UdpReceiver(f"127.0.0.1:{rx.listeners[0].port}")
