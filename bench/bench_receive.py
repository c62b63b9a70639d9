"""Loopback receive throughput: `UdpReceiver` (recvmmsg batches) against a `recvfrom_into` loop.

A separate process sends bursts of 1352-byte datagrams (sendmmsg via ctypes) to 127.0.0.1
that fill the socket buffer; the receiver then drains each burst as fast as it can and only
the drain is timed. Prints packets/s, MB/s, packets per CPU-second and the ratio of the two
methods. Bounded: about 2 × seconds.

    python bench/bench_receive.py [--seconds 2] [--batch 256]
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing as mp
import socket
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np

from appliance.collector.receive.udp import UdpReceiver

SIZE = 1352


def _sender(port: int, orders: Connection) -> None:
    """Send bursts of SIZE-byte datagrams with sendmmsg (64 per call) when asked; 0 ends it."""
    libc = ctypes.CDLL(None, use_errno=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    payload = np.frombuffer(b"\x00\x0a" + bytes(SIZE - 2), np.uint8).copy()
    iov = np.array([payload.ctypes.data, SIZE], np.uint64)
    hdr = np.zeros((64, 8), np.uint64)  # struct mmsghdr, 64 bytes; only iov/iovlen are set
    hdr[:, 2] = iov.ctypes.data
    hdr[:, 3] = 1
    while count := orders.recv():
        sent = 0
        while sent < count:
            done = libc.sendmmsg(sock.fileno(), ctypes.c_void_p(hdr.ctypes.data), min(64, count - sent), 0)
            sent += max(done, 0)
        orders.send(sent)
    sock.close()


@dataclass
class Result:
    packets: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    drops: int = 0

    def line(self, name: str) -> str:
        pps = self.packets / self.wall_s
        return (
            f"{name:<14} {pps / 1e6:6.3f} M packets/s  {pps * SIZE / 1e6:7.1f} MB/s  "
            f"{self.packets / max(self.cpu_s, 1e-9) / 1e6:6.3f} M packets per CPU-s  "
            f"(drained {self.packets:,} in {self.wall_s:.2f} s, kernel drops {self.drops})"
        )


def _drain_recvfrom(sock: socket.socket, count: int) -> None:
    view = memoryview(bytearray(65536))
    for _ in range(count):
        sock.recvfrom_into(view)


def _drain_recvmmsg(rx: UdpReceiver, count: int) -> None:
    got = 0
    while got < count:
        got += len(rx.receive(1.0))


def _measure(method: str, seconds: float, batch: int) -> Result:
    """Fill the socket buffer with a burst while the receiver waits, then time the drain.

    Draining a full buffer measures what the receiver can take, not what one Python sender
    on the same two cores can produce (on loopback the sender also pays for delivery).
    """
    with UdpReceiver("127.0.0.1:0", batch=batch, slot_size=2048) as rx:
        # A 1352-byte datagram costs about 2.3 KiB of buffer (skb overhead); stay well inside.
        burst = max(1000, min(50_000, rx.rcvbuf_granted // 2 // 2304 * 3 // 4))
        ours, theirs = mp.get_context("fork").Pipe()
        proc = mp.get_context("fork").Process(target=_sender, args=(rx.listeners[0].port, theirs))
        proc.start()
        sock = rx._socks[0]
        result = Result()
        drops0 = rx.drops()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ours.send(burst)
            ours.recv()
            time.sleep(0.01)  # let softirq delivery finish
            cpu0, t0 = time.thread_time(), time.perf_counter()
            if method == "recvmmsg":
                _drain_recvmmsg(rx, burst)
            else:
                sock.setblocking(True)
                _drain_recvfrom(sock, burst)
                sock.setblocking(False)
            result.wall_s += time.perf_counter() - t0
            result.cpu_s += time.thread_time() - cpu0
            result.packets += burst
        ours.send(0)
        proc.join()
        result.drops = rx.drops() - drops0
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per method (fill + drain)")
    parser.add_argument("--batch", type=int, default=256, help="recvmmsg slots per call")
    args = parser.parse_args(argv)
    results = {}
    for method in ("recvfrom_into", "recvmmsg"):
        results[method] = _measure(method, args.seconds, args.batch)
        print(results[method].line(method), flush=True)
    plain, batched = results["recvfrom_into"], results["recvmmsg"]
    print(
        f"ratio recvmmsg/recvfrom_into: {batched.packets / batched.wall_s / (plain.packets / plain.wall_s):.2f}x "
        f"packets/s, {(batched.packets / batched.cpu_s) / (plain.packets / plain.cpu_s):.2f}x per CPU-second"
    )


if __name__ == "__main__":
    main()
