"""Attach the flow cache to an interface (TC clsact ingress or XDP, via pyroute2), set promisc.

TC is the default: it works on every interface and sees what the stack receives. XDP
(``--attach xdp``) runs earlier, in the driver ("native", where the driver supports it) or
right after it ("generic", any interface); both run the same parser.

Every attachment writes a state file first (`<state_dir>/<ifname>.json`: our pid, the hook,
whether we created the clsact qdisc, the promisc state we found). A probe killed with -9 leaves
its program attached, still counting into maps nobody reads; the next start finds the state
file of a dead pid and undoes all of it before attaching again (TC filters are also recognised
by their name when the state file is gone).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from appliance.probe.errors import AttachError

__all__ = ["Attachment", "attach", "cleanup_leftovers", "DEFAULT_STATE_DIR", "FILTER_NAME",
           "HOOKS", "XDP_MODES"]

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = Path("/run/mirrorflow/probe")
#: Our TC filter is recognised by this name and priority (tc filter show ... pref 49152).
FILTER_NAME = "mirrorflow"
FILTER_PRIO = 49152
FILTER_HANDLE = 1
CLSACT_HANDLE = 0xFFFF0000
INGRESS_PARENT = 0xFFFFFFF2
IFF_PROMISC = 0x100
ETH_P_ALL = 0x0003
HOOKS = ("tc", "xdp")
#: XDP attach modes → XDP_FLAGS_SKB_MODE / XDP_FLAGS_DRV_MODE (linux/if_link.h).
XDP_MODES = {"generic": 1 << 1, "native": 1 << 2}
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0


@dataclass(slots=True)
class AttachState:
    pid: int
    ifname: str
    ifindex: int
    created_clsact: bool
    promisc_before: bool
    set_promisc: bool
    hook: str = "tc"
    xdp_flags: int = 0  # the mode flags we attached with (needed to detach)
    xdp_prog_id: int = 0  # our program's id, so we never detach someone else's


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _has_clsact(ipr: IPRoute, ifindex: int) -> bool:
    for q in ipr.get_qdiscs(index=ifindex):
        if q.get_attr("TCA_KIND") == "clsact":
            return True
    return False


def _our_filters(ipr: IPRoute, ifindex: int) -> list[int]:
    """Priorities of ingress filters named like ours on the interface."""
    found = []
    try:
        filters = ipr.get_filters(index=ifindex, parent=INGRESS_PARENT)
    except NetlinkError:
        return found
    for f in filters:
        opts = f.get_attr("TCA_OPTIONS")
        name = opts.get_attr("TCA_BPF_NAME") if opts is not None else None
        if f.get_attr("TCA_KIND") == "bpf" and name and str(name).startswith(FILTER_NAME):
            found.append((f["info"] >> 16) & 0xFFFF)
    return sorted(set(found))


def _del_filters(ipr: IPRoute, ifindex: int) -> int:
    n = 0
    for prio in _our_filters(ipr, ifindex):
        try:
            ipr.tc("del-filter", "bpf", ifindex, parent=INGRESS_PARENT, prio=prio,
                   protocol=ETH_P_ALL)
            n += 1
        except NetlinkError as exc:
            log.warning("could not remove a stale filter on ifindex %d: %s", ifindex, exc)
    return n


def _xdp_prog_id(ipr: IPRoute, ifindex: int) -> int:
    """Id of the XDP program attached to the interface (0: none)."""
    xdp = ipr.link("get", index=ifindex)[0].get_attr("IFLA_XDP")
    return int(xdp.get_attr("IFLA_XDP_PROG_ID") or 0) if xdp is not None else 0


def _set_xdp(ipr: IPRoute, ifindex: int, fd: int, flags: int) -> None:
    ipr.link("set", index=ifindex, xdp={"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]})


def _del_xdp(ipr: IPRoute, state: AttachState) -> bool:
    """Detach our XDP program (only if the one attached is still ours)."""
    if state.hook != "xdp" or not state.xdp_prog_id:
        return False
    if _xdp_prog_id(ipr, state.ifindex) != state.xdp_prog_id:
        return False
    try:
        _set_xdp(ipr, state.ifindex, -1, state.xdp_flags)
    except NetlinkError as exc:
        log.warning("%s: could not detach the XDP program: %s", state.ifname, exc)
        return False
    return True


def _promisc(ipr: IPRoute, ifindex: int) -> bool:
    link = ipr.link("get", index=ifindex)[0]
    return bool(link["flags"] & IFF_PROMISC)


def _set_promisc(ipr: IPRoute, ifindex: int, on: bool) -> None:
    ipr.link("set", index=ifindex, flags=IFF_PROMISC if on else 0, change=IFF_PROMISC)


def _state_path(state_dir: Path, ifname: str) -> Path:
    return state_dir / f"{ifname}.json"


def cleanup_leftovers(ifname: str, state_dir: Path = DEFAULT_STATE_DIR) -> bool:
    """Undo what a dead probe left on an interface.

    Returns:
        True if something was cleaned up.

    Raises:
        AttachError: a live probe still owns the interface.
    """
    path = _state_path(state_dir, ifname)
    cleaned = False
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            if path.exists():
                path.unlink()
            return False
        ifindex = idx[0]
        state = None
        if path.exists():
            try:
                state = AttachState(**json.loads(path.read_text()))
            except (ValueError, TypeError):
                log.warning("ignoring an unreadable state file %s", path)
        if state and state.pid != os.getpid() and _pid_alive(state.pid):
            raise AttachError(
                f"{ifname}: probe pid {state.pid} is attached to it; stop that probe first"
            )
        if _del_filters(ipr, ifindex):
            cleaned = True
            log.warning("%s: removed the TC filter a previous probe left attached", ifname)
        if state is not None and _del_xdp(ipr, state):
            log.warning("%s: removed the XDP program a previous probe left attached", ifname)
        if state is not None:
            if state.set_promisc and not state.promisc_before:
                _set_promisc(ipr, ifindex, False)
            if state.created_clsact and _has_clsact(ipr, ifindex):
                try:
                    ipr.tc("del", "clsact", ifindex)
                except NetlinkError:
                    pass
            cleaned = True
            path.unlink()
    return cleaned


class Attachment:
    """The flow cache attached to one interface; `detach()` restores what we changed."""

    def __init__(self, state: AttachState, state_dir: Path, mac: bytes = bytes(6),
                 description: str = "") -> None:
        self.state = state
        self._state_dir = state_dir
        self.mac = mac
        self.description = description
        self.attached = True

    @property
    def ifname(self) -> str:
        return self.state.ifname

    @property
    def ifindex(self) -> int:
        return self.state.ifindex

    def detach(self) -> None:
        """Undo what we changed on the device (by ifindex: a renamed device is still ours; a
        deleted one took everything with it). Never raises for a device that went away."""
        if not self.attached:
            return
        s = self.state
        with IPRoute() as ipr:
            try:
                exists = bool(ipr.link("get", index=s.ifindex))
            except NetlinkError:  # gone (ENODEV)
                exists = False
            if exists:
                try:
                    _del_filters(ipr, s.ifindex)
                    _del_xdp(ipr, s)
                except NetlinkError as exc:  # deleted while we were at it
                    log.warning("%s: could not detach: %s", s.ifname, exc)
                if s.set_promisc and not s.promisc_before:
                    try:
                        _set_promisc(ipr, s.ifindex, False)
                    except NetlinkError as exc:
                        log.warning("%s: could not restore promisc: %s", s.ifname, exc)
                if s.created_clsact:
                    try:
                        ipr.tc("del", "clsact", s.ifindex)
                    except NetlinkError:
                        pass
        self.forget()

    def forget(self) -> None:
        """Drop the attachment without touching the device (it was deleted: the kernel removed
        the program, the qdisc and the promisc state with it), state file included."""
        path = _state_path(self._state_dir, self.state.ifname)
        try:
            state = json.loads(path.read_text())
            if state.get("pid") == self.state.pid and state.get("ifindex") == self.state.ifindex:
                path.unlink()
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("%s: could not remove the state file %s: %s", self.ifname, path, exc)
        self.attached = False


def attach(ifname: str, prog_fd: int, *, promisc: bool = True,
           state_dir: Path = DEFAULT_STATE_DIR, hook: str = "tc",
           xdp_mode: str = "native") -> Attachment:
    """Clean leftovers, set promisc and attach the program (TC ingress, or XDP).

    Args:
        ifname: the mirror interface.
        prog_fd: the loaded program (built for `hook`).
        promisc: set the interface promiscuous (restored on detach).
        state_dir: where the state file that makes a crash recoverable goes.
        hook: "tc" (clsact ingress, adds the qdisc if missing) or "xdp".
        xdp_mode: with XDP, "native" (in the driver) or "generic" (any interface).

    Raises:
        AttachError: the interface does not exist, another live probe owns it, another XDP
            program is attached, or the driver refuses the mode.
    """
    if hook not in HOOKS:
        raise AttachError(f"attach must be one of {', '.join(HOOKS)}, not {hook!r}")
    if hook == "xdp" and xdp_mode not in XDP_MODES:
        raise AttachError(f"xdp mode must be one of {', '.join(XDP_MODES)}, not {xdp_mode!r}")
    cleanup_leftovers(ifname, state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            raise AttachError(f"interface {ifname!r} does not exist")
        ifindex = idx[0]
        xdp = hook == "xdp"
        state = AttachState(
            pid=os.getpid(),
            ifname=ifname,
            ifindex=ifindex,
            created_clsact=not xdp and not _has_clsact(ipr, ifindex),
            promisc_before=_promisc(ipr, ifindex),
            set_promisc=promisc,
            hook=hook,
            xdp_flags=XDP_MODES[xdp_mode] if xdp else 0,
        )
        if xdp and _xdp_prog_id(ipr, ifindex):
            raise AttachError(
                f"{ifname}: another XDP program is attached (id {_xdp_prog_id(ipr, ifindex)}); "
                "detach it (ip link set dev IFACE xdp off) or use --attach tc"
            )
        # Written before changing anything, so a crash at any later point is recoverable.
        path = _state_path(state_dir, ifname)
        path.write_text(json.dumps(asdict(state)))
        what = f"the XDP program ({xdp_mode})" if xdp else "the TC program"
        try:
            if state.created_clsact:
                ipr.tc("add", "clsact", ifindex)
            if promisc and not state.promisc_before:
                _set_promisc(ipr, ifindex, True)
            if xdp:
                _set_xdp(ipr, ifindex, prog_fd, state.xdp_flags | XDP_FLAGS_UPDATE_IF_NOEXIST)
                state.xdp_prog_id = _xdp_prog_id(ipr, ifindex)
                path.write_text(json.dumps(asdict(state)))
            else:
                ipr.tc("add-filter", "bpf", ifindex, FILTER_HANDLE, fd=prog_fd,
                       name=f"{FILTER_NAME}:{os.getpid()}", parent=INGRESS_PARENT,
                       prio=FILTER_PRIO, protocol=ETH_P_ALL, classid=1, direct_action=True)
        except NetlinkError as exc:
            Attachment(state, state_dir).detach()
            hint = ""
            if xdp and xdp_mode == "native":
                hint = " (the driver may not support native XDP: try --xdp-mode generic)"
            raise AttachError(f"{ifname}: could not attach {what}: {exc}{hint}") from exc
        link = ipr.link("get", index=ifindex)[0]
        mac = link.get_attr("IFLA_ADDRESS") or "00:00:00:00:00:00"
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        # interfaceDescription, as ipt_netflow: the alias an admin set, else what it is
        description = link.get_attr("IFLA_IFALIAS") or kind or "ethernet"
    return Attachment(state, state_dir, bytes.fromhex(mac.replace(":", "")), description)
