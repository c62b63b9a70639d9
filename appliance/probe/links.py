"""Follow the mirror interfaces through netlink: notice one going away, attach again when it
comes back by the same name.

A VM's NIC hot-plugged or a bridge recreated deletes the interface the program was attached to
(TC filter, clsact qdisc and XDP program go with it) and may create another one with the same
name and a new ifindex. `LinkWatcher` reads the kernel's link notifications (RTM_NEWLINK,
RTM_DELLINK on the RTMGRP_LINK multicast group); `LinkFollower` keeps one `LinkState` per
configured interface and acts on them:

- deleted, or renamed away: a warning with the name and the old ifindex, the state
  ``detached`` (with the time) in the statistics snapshot, the attachment forgotten (nothing to
  undo on a device that is gone; a renamed device gets our program removed). Flows already
  counted stay in the kernel map and are exported by the normal timeouts.
- back by the same name: attached again (promisc, TC or XDP as configured, its MAC set), the
  log says "re-attached", the state ``attached`` with the time and a re-attach counter.
- down (or without carrier): still attached, shown as ``down`` until it is up again.

The watcher is polled from the probe's own loop (before every scan), not from a thread: the
attachment, the kernel's interface MAC map and the exporter's interface names are then only
ever touched by one thread, and a loss is noticed within one scan interval. It is a plain
non-blocking netlink socket decoded with pyroute2's rtnetlink marshal, because pyroute2's
`IPRoute` (0.9) reads its socket from an asyncio loop into a queue of its own, where a
``select`` on its descriptor does not see what is already queued. If the socket overflows
(ENOBUFS: notifications were lost) the follower asks the kernel for each interface instead.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_LINK
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from appliance.probe.attach import Attachment
from appliance.probe.errors import ProbeError

__all__ = [
    "ATTACHED",
    "DETACHED",
    "DOWN",
    "LinkEvent",
    "LinkFollower",
    "LinkState",
    "LinkWatcher",
    "lookup_link",
    "parse_link_messages",
]

log = logging.getLogger("mirrorflow.probe")

ATTACHED, DOWN, DETACHED = "attached", "down", "detached"
RTM_NEWLINK, RTM_DELLINK = 16, 17
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
#: datagrams read per poll (the rest waits for the next scan): a storm of link changes
#: elsewhere on the host cannot hold the probe's loop
MAX_DATAGRAMS_PER_POLL = 256
RCVBUF = 1 << 20
#: while a configured interface exists but attaching to it failed, try again this often
RETRY_S = 5.0


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """One link notification: ``new`` (created or changed) or ``del``."""

    kind: str
    ifindex: int
    ifname: str
    up: bool  # administratively up and with carrier (IFF_UP and IFF_LOWER_UP)


def parse_link_messages(data: bytes, marshal: MarshalRtnl | None = None) -> list[LinkEvent]:
    """The link events in one netlink datagram (other message types are skipped)."""
    out = []
    for msg in (marshal or MarshalRtnl()).parse(data):
        kind = {RTM_NEWLINK: "new", RTM_DELLINK: "del"}.get(msg["header"]["type"])
        if kind is None:
            continue
        flags = int(msg["flags"])
        up = bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)
        out.append(LinkEvent(kind, int(msg["index"]), str(msg.get_attr("IFLA_IFNAME") or ""), up))
    return out


class LinkWatcher:
    """A non-blocking netlink socket on the link multicast group of this network namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            self.sock.bind((0, RTMGRP_LINK))
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self._marshal = MarshalRtnl()
        self.overflows = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def poll(self) -> list[LinkEvent] | None:
        """The events that arrived since the last poll; None when some were lost (overflow)."""
        events: list[LinkEvent] = []
        lost = False
        for _ in range(MAX_DATAGRAMS_PER_POLL):
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.overflows += 1
                lost = True
                continue
            events += parse_link_messages(data, self._marshal)
        return None if lost else events

    def close(self) -> None:
        self.sock.close()


def lookup_link(ifname: str) -> LinkEvent | None:
    """The interface called `ifname` now (as a ``new`` event), or None."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return None
        try:
            link = ipr.link("get", index=idx[0])[0]
        except NetlinkError:
            return None
    flags = int(link["flags"])
    return LinkEvent("new", idx[0], ifname, bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP))


@dataclass(slots=True)
class LinkState:
    """What the probe knows about one configured interface (a row of ``links`` in the stats)."""

    name: str
    ifindex: int  # the current one; when detached, the one it had
    state: str = ATTACHED
    since: float = 0.0  # wall time of the last change of `state`
    attached_at: float | None = None
    detached_at: float | None = None
    reattaches: int = 0
    detaches: int = 0
    reason: str | None = None  # why it is detached or down
    attachment: Attachment | None = field(default=None, repr=False)
    next_retry: float = 0.0  # monotonic

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ifindex": self.ifindex, "state": self.state,
                "since": self.since, "attached_at": self.attached_at,
                "detached_at": self.detached_at, "reattaches": self.reattaches,
                "detaches": self.detaches, "reason": self.reason}


class LinkFollower:
    """Keeps the probe attached to its interfaces by name.

    Args:
        attachments: the attachments made at start, one per interface; re-attachments replace
            their entry (the caller detaches what is in the list when it stops).
        attach_one: attaches the program to an interface by name (promisc, hook, MAC and
            interface names as at start) and returns the attachment; raises ProbeError.
        forget: called with an attachment whose interface is gone (drop per-ifindex state).
        watcher: the netlink watcher (a LinkWatcher); None: only the `events` given to `poll`
            (tests).
        lookup: the interface by name now (default: ask the kernel).
        wall: the wall clock (seconds since the epoch), monotonic: for retries.
    """

    def __init__(self, attachments: list[Attachment], attach_one: Callable[[str], Attachment], *,
                 forget: Callable[[Attachment], None] | None = None,
                 watcher: LinkWatcher | None = None,
                 lookup: Callable[[str], LinkEvent | None] = lookup_link,
                 wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.attachments = attachments
        self.attach_one = attach_one
        self.forget = forget or (lambda _a: None)
        self.watcher = watcher
        self.lookup = lookup
        self.wall = wall
        self.monotonic = monotonic
        now = wall()
        self.links = [LinkState(a.ifname, a.ifindex, ATTACHED, now, now, attachment=a)
                      for a in attachments]
        self.resyncs = 0
        self.resync()  # whatever changed between attaching and opening the watcher

    # --- input -------------------------------------------------------------------------

    def poll(self, events: Iterable[LinkEvent] | None = None) -> None:
        """Reads the watcher (or takes `events`) and acts on every configured interface."""
        if events is None and self.watcher is not None:
            events = self.watcher.poll()
            if events is None:
                log.warning("netlink link notifications were lost (socket overflow): "
                            "checking every interface")
                self.resync()
                return
        for ev in events or ():
            for st in self.links:
                self._on_event(st, ev)
        now = self.monotonic()
        for st in self.links:  # a safety net: the notification of its return is what counts
            if st.state == DETACHED and now >= st.next_retry:
                cur = self.lookup(st.name)
                if cur is None:
                    st.next_retry = now + RETRY_S
                else:
                    self._reattach(st, cur)

    def resync(self) -> None:
        """Compares every interface with what the kernel has now (after lost notifications)."""
        self.resyncs += 1
        for st in self.links:
            cur = self.lookup(st.name)
            if st.state != DETACHED:
                if cur is None:
                    self._lost(st, "deleted")
                elif cur.ifindex != st.ifindex:
                    self._lost(st, f"replaced by ifindex {cur.ifindex}")
                else:
                    self._on_event(st, cur)
            if st.state == DETACHED and cur is not None:
                self._reattach(st, cur)

    def _on_event(self, st: LinkState, ev: LinkEvent) -> None:
        if st.state != DETACHED and ev.ifindex == st.ifindex:
            if ev.kind == "del":
                self._lost(st, "deleted")
            elif ev.ifname and ev.ifname != st.name:
                self._lost(st, f"renamed to {ev.ifname}", device_left=True)
            elif not ev.up and st.state == ATTACHED:
                st.state, st.since, st.reason = DOWN, self.wall(), "down or no carrier"
                log.warning("%s (ifindex %d) is down: no packets until it is up again",
                            st.name, st.ifindex)
            elif ev.up and st.state == DOWN:
                st.state, st.since, st.reason = ATTACHED, self.wall(), None
                log.info("%s (ifindex %d) is up again", st.name, st.ifindex)
        elif st.state == DETACHED and ev.kind == "new" and ev.ifname == st.name:
            self._reattach(st, ev)

    # --- transitions -------------------------------------------------------------------

    def _lost(self, st: LinkState, why: str, device_left: bool = False) -> None:
        att = st.attachment
        if att is not None:
            if device_left:  # renamed: the device still carries our program and promisc
                try:
                    att.detach()
                except (NetlinkError, OSError, ProbeError) as exc:
                    log.warning("%s: could not detach from the renamed device: %s", st.name, exc)
            att.forget()
            self.forget(att)
        now = self.wall()
        st.state, st.since, st.detached_at, st.reason = DETACHED, now, now, why
        st.detaches += 1
        st.next_retry = 0.0
        log.warning("%s (ifindex %d) %s: detached; its flows so far are exported as they end, "
                    "and the probe attaches again when an interface named %s appears",
                    st.name, st.ifindex, why, st.name)

    def _reattach(self, st: LinkState, cur: LinkEvent) -> None:
        try:
            att = self.attach_one(st.name)
        except (ProbeError, NetlinkError, OSError) as exc:
            st.next_retry = self.monotonic() + RETRY_S
            log.warning("%s (ifindex %d) is back but attaching failed (retrying every %g s): %s",
                        st.name, cur.ifindex, RETRY_S, exc)
            return
        old = st.ifindex
        for i, a in enumerate(self.attachments):
            if a is st.attachment:
                self.attachments[i] = att
                break
        else:
            self.attachments.append(att)
        now = self.wall()
        st.attachment, st.ifindex = att, att.ifindex
        st.state, st.since, st.attached_at, st.reason = ATTACHED, now, now, None
        st.reattaches += 1
        log.warning("%s re-attached (ifindex %d, was %d; re-attach %d)", st.name, att.ifindex,
                    old, st.reattaches)
        current = self.lookup(st.name)
        if current is not None and current.ifindex == att.ifindex and not current.up:
            self._on_event(st, current)

    # --- output ------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """One dict per configured interface (``links`` in the probe's statistics)."""
        return [st.as_dict() for st in self.links]

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
