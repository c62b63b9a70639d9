"""Synthetic mirrored traffic: crafted Ethernet frames sent on a raw socket, bounded in rate.

Run inside the traffic namespace (``python -m appliance.demo.traffic --iface IF``). The mix:
hundreds of conversations between our network (10.20.0.0/16, fd00:20::/48) and the outside —
web (TCP 443/80), DNS, NTP, SSH, mail, video-sized downloads, pings — with a few heavy
talkers and a long tail, conversations ending and new ones starting; and every ``--attack-every``
seconds one outside source floods one of our hosts for ``--attack-for`` seconds (UDP and SYN to
random source ports). Frames (from `appliance.synth`) are built once per conversation and
resent, so Python's cost is one ``send`` per frame. Stops after ``--duration`` or when its
parent (the demo) dies.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import os
import random
import socket
import sys
import time
from dataclasses import dataclass

from appliance.synth import icmp_echo_frame, tcp_frame, udp_frame

__all__ = ["Conversation", "Frames", "ATTACKER", "VICTIM", "main"]

ATTACKER = "203.0.113.66"
VICTIM = "10.20.5.10"
TICK_S = 0.05
_MAC_INSIDE = bytes.fromhex("02000a140001")  # the mirrored router's inside port
_MAC_OUTSIDE = bytes.fromhex("02000a140002")


class Frames:
    """Builds Ethernet + IPv4/IPv6 + TCP/UDP/ICMP frames of a given IP length."""

    @staticmethod
    def build(src: str, dst: str, proto: int, sport: int, dport: int, ip_len: int,
              flags: int = 0x18, ttl: int = 60) -> bytes:
        """`proto` 1 means an ICMP echo (ICMPv6 between IPv6 addresses), `sport`/`dport` its
        identifier and sequence number; the frame is padded to `ip_len` bytes of IP."""
        a = ipaddress.ip_address(src)
        inbound = a not in _OURS4 and a not in _OURS6
        src_mac, dst_mac = (_MAC_OUTSIDE, _MAC_INSIDE) if inbound else (_MAC_INSIDE, _MAC_OUTSIDE)
        ident = random.getrandbits(16) if a.version == 4 else 0
        headers = (20 if a.version == 4 else 40) + {6: 20, 17: 8}.get(proto, 8)
        pad = bytes(max(0, ip_len - headers))
        if proto == 6:
            return tcp_frame(src, dst, sport, dport, pad, flags=flags, seq=random.getrandbits(32),
                             ack=random.getrandbits(32) if flags != 0x02 else 0, ttl=ttl, ident=ident,
                             src_mac=src_mac, dst_mac=dst_mac)
        if proto == 17:
            return udp_frame(src, dst, sport, dport, pad, ttl=ttl, ident=ident, src_mac=src_mac, dst_mac=dst_mac)
        return icmp_echo_frame(src, dst, sport, dport, pad, ttl=ttl, src_mac=src_mac, dst_mac=dst_mac)


_OURS4 = ipaddress.ip_network("10.20.0.0/16")
_OURS6 = ipaddress.ip_network("fd00:20::/48")

# (name, proto, server port, client→server pps, bytes, server→client pps, bytes, weight)
_KINDS = (
    ("web", 6, 443, 8, 120, 14, 1400, 40),
    ("http", 6, 80, 4, 200, 8, 1400, 8),
    ("video", 6, 443, 20, 80, 120, 1448, 2),
    ("dns", 17, 53, 2, 72, 2, 180, 14),
    ("ntp", 17, 123, 0.5, 76, 0.5, 76, 4),
    ("ssh", 6, 22, 6, 100, 6, 140, 4),
    ("smtp", 6, 25, 5, 600, 3, 80, 3),
    ("ping", 1, 0, 1, 84, 1, 84, 5),
    ("backup", 6, 873, 60, 1400, 10, 66, 1),  # one of our hosts uploading: egress talker
)


@dataclass
class Conversation:
    """One client/server exchange; frames for each direction, built once."""

    up: list[bytes]
    down: list[bytes]
    up_pps: float
    down_pps: float
    ends: float
    credit_up: float = 0.0
    credit_down: float = 0.0


class Mix:
    """The background: ``n`` conversations at a time, each living 3–40 s."""

    def __init__(self, rng: random.Random, n: int, scale: float) -> None:
        self.rng = rng
        self.scale = scale
        self._cum: dict[int, list[float]] = {}
        self.inside4 = [f"10.20.{rng.randrange(1, 8)}.{rng.randrange(2, 250)}" for _ in range(120)]
        self.inside6 = [f"fd00:20::{rng.randrange(1, 0xFFFF):x}" for _ in range(20)]
        self.outside4 = [self._public(rng) for _ in range(400)]
        self.outside6 = [f"2001:db8:{rng.randrange(1, 0xFFFF):x}::{rng.randrange(1, 0xFFFF):x}"
                         for _ in range(40)]
        # a few servers of our own that the outside reaches (inbound conversations)
        self.our_servers = ["10.20.1.10", "10.20.1.11", VICTIM]
        self.conversations = [self._new(time.monotonic()) for _ in range(n)]

    @staticmethod
    def _public(rng: random.Random) -> str:
        while True:
            addr = ipaddress.IPv4Address(rng.randrange(0x01000000, 0xDF000000))
            if addr.is_global and addr not in _OURS4:
                return str(addr)

    def _pick(self, pool: list[str]) -> str:
        # a long tail (Zipf-like): low indexes are picked far more often, the top talkers
        cum = self._cum.get(len(pool))
        if cum is None:
            cum = self._cum[len(pool)] = list(itertools.accumulate(1 / (i + 1) ** 0.8 for i in range(len(pool))))
        return self.rng.choices(pool, cum_weights=cum)[0]

    def _new(self, now: float) -> Conversation:
        rng = self.rng
        name, proto, port, up_pps, up_b, down_pps, down_b, _ = rng.choices(
            _KINDS, weights=[k[-1] for k in _KINDS])[0]
        v6 = rng.random() < 0.15
        if v6:
            client, server = self._pick(self.inside6), self._pick(self.outside6)
        elif name in ("web", "smtp", "ssh") and rng.random() < 0.25:
            client, server = self._pick(self.outside4), rng.choice(self.our_servers)
        else:
            client, server = self._pick(self.inside4), self._pick(self.outside4)
        sport = rng.randrange(32768, 61000) if proto != 1 else rng.randrange(1, 65535)
        dport = port if proto != 1 else 0
        f = Frames.build
        if proto == 6:
            up = [f(client, server, 6, sport, dport, 60, 0x02)] + [f(client, server, 6, sport, dport, up_b, 0x18)] * 3
            down = ([f(server, client, 6, dport, sport, 60, 0x12)]
                    + [f(server, client, 6, dport, sport, down_b, 0x10)] * 3)
        else:
            up = [f(client, server, proto, sport, dport, up_b)]
            down = [f(server, client, proto, dport, sport, down_b)] if proto == 17 else \
                [f(server, client, proto, sport, dport, down_b)]
        k = self.scale * rng.uniform(0.5, 1.5)
        return Conversation(up, down, up_pps * k, down_pps * k, now + rng.uniform(3, 40))

    def frames(self, now: float, dt: float) -> list[bytes]:
        out: list[bytes] = []
        for i, c in enumerate(self.conversations):
            if now >= c.ends:
                c = self.conversations[i] = self._new(now)
                out.append(c.up[0])  # the SYN / first request
                out.append(c.down[0])
            c.credit_up += c.up_pps * dt
            c.credit_down += c.down_pps * dt
            n_up, n_down = int(c.credit_up), int(c.credit_down)
            c.credit_up -= n_up
            c.credit_down -= n_down
            out.extend(c.up[-1] for _ in range(n_up))
            out.extend(c.down[-1] for _ in range(n_down))
        return out


def attack_frames(rng: random.Random, n: int = 512) -> list[bytes]:
    """The flood: one source, one victim, random source ports, UDP to 53/123 and SYN to 443."""
    out = []
    for i in range(n):
        sport = rng.randrange(1024, 65535)
        if i % 3 == 2:
            out.append(Frames.build(ATTACKER, VICTIM, 6, sport, 443, 60, 0x02, ttl=47))
        else:
            out.append(Frames.build(ATTACKER, VICTIM, 17, sport, (53, 123)[i % 2], 468, ttl=47))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m appliance.demo.traffic", description=__doc__)
    p.add_argument("--iface", required=True)
    p.add_argument("--duration", type=float, default=60.0, help="seconds (bounded: stops after it)")
    p.add_argument("--conversations", type=int, default=300)
    p.add_argument("--scale", type=float, default=0.5, help="multiplies every conversation's rate")
    p.add_argument("--attack-start", type=float, default=8.0, help="first burst after S seconds")
    p.add_argument("--attack-every", type=float, default=40.0)
    p.add_argument("--attack-for", type=float, default=10.0)
    p.add_argument("--attack-pps", type=float, default=6000.0)
    p.add_argument("--seed", type=int, default=6)
    args = p.parse_args(argv)
    parent = os.getppid()
    rng = random.Random(args.seed)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((args.iface, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    mix = Mix(rng, args.conversations, args.scale)
    flood = attack_frames(rng)
    start = time.monotonic()
    sent = attack_sent = 0
    attack_credit = 0.0
    tick = 0
    attacking = False
    while True:
        now = time.monotonic()
        t = now - start
        if t >= args.duration or os.getppid() != parent:
            break
        frames = mix.frames(now, TICK_S)
        in_burst = t >= args.attack_start and (t - args.attack_start) % args.attack_every < args.attack_for
        if in_burst != attacking:
            attacking = in_burst
            print(f"traffic: attack burst {'starts' if attacking else 'ends'} at {t:.1f} s "
                  f"({ATTACKER} → {VICTIM})", flush=True)
        if in_burst:
            attack_credit += args.attack_pps * TICK_S
            n = int(attack_credit)
            attack_credit -= n
            frames.extend(flood[(attack_sent + i) % len(flood)] for i in range(n))
            attack_sent += n
        rng.shuffle(frames)
        for frame in frames:
            try:
                sock.send(frame)
            except BlockingIOError:
                pass
            except OSError as exc:  # e.g. the interface went away: the demo is ending
                print(f"traffic: send failed: {exc}", file=sys.stderr, flush=True)
                return 1
        sent += len(frames)
        tick += 1
        if tick % 200 == 0:
            print(f"traffic: {sent} frames sent ({attack_sent} of them attack) in {t:.0f} s", flush=True)
        time.sleep(max(0.0, start + tick * TICK_S - time.monotonic()))
    print(f"traffic: done, {sent} frames sent ({attack_sent} attack)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
