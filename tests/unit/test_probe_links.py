"""The probe's netlink follower without a kernel: notifications built with pyroute2's encoder,
attachments and the interface lookup faked. (tests/integration/test_probe_links.py deletes and
recreates a real veth under a running probe.)"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from appliance.probe.errors import AttachError
from appliance.probe.links import (
    ATTACHED,
    DETACHED,
    DOWN,
    RETRY_S,
    LinkEvent,
    LinkFollower,
    parse_link_messages,
)
from appliance.probe.stats import link_lines

UP = 0x1 | 0x10000  # IFF_UP | IFF_LOWER_UP


def message(kind: int, index: int, name: str, flags: int = UP | 0x1000) -> bytes:
    m = ifinfmsg()
    m["header"]["type"] = kind
    m["index"] = index
    m["flags"] = flags
    m["attrs"] = [("IFLA_IFNAME", name)]
    m.encode()
    return bytes(m.data[: m["header"]["length"]])


def test_parse_one_datagram_with_several_messages():
    data = message(16, 7, "ens4") + message(17, 7, "ens4", 0x1002) + message(16, 9, "ens5", 0x1)
    assert parse_link_messages(data) == [
        LinkEvent("new", 7, "ens4", True),
        LinkEvent("del", 7, "ens4", False),
        LinkEvent("new", 9, "ens5", False),  # up but without carrier (IFF_LOWER_UP)
    ]


def test_parse_skips_other_messages():
    m = ifinfmsg()
    m["header"]["type"] = 20  # RTM_NEWADDR
    m.encode()
    assert parse_link_messages(bytes(m.data[: m["header"]["length"]])) == []


@dataclass
class FakeAttachment:
    ifname: str
    ifindex: int
    detached: bool = False
    forgotten: bool = False

    def detach(self) -> None:
        self.detached = True
        self.forgotten = True

    def forget(self) -> None:
        self.forgotten = True


class Host:
    """The interfaces by name, an attach that can fail, the clocks."""

    def __init__(self) -> None:
        self.links = {"ens4": LinkEvent("new", 7, "ens4", True)}
        self.fail: Exception | None = None
        self.attached: list[str] = []
        self.forgotten: list[int] = []
        self.now = 1000.0

    def lookup(self, name: str) -> LinkEvent | None:
        return self.links.get(name)

    def attach(self, name: str) -> FakeAttachment:
        if self.fail is not None:
            raise self.fail
        self.attached.append(name)
        return FakeAttachment(name, self.links[name].ifindex)

    def follower(self) -> tuple[LinkFollower, list]:
        atts = [FakeAttachment("ens4", 7)]
        f = LinkFollower(atts, self.attach, forget=lambda a: self.forgotten.append(a.ifindex),  # type: ignore[arg-type]
                         lookup=self.lookup, wall=lambda: self.now, monotonic=lambda: self.now)
        return f, atts


def test_deleted_then_back_with_a_new_ifindex(caplog):
    host = Host()
    f, atts = host.follower()
    old = atts[0]
    assert f.snapshot()[0]["state"] == ATTACHED
    host.now = 1010.0
    del host.links["ens4"]
    f.poll([LinkEvent("del", 7, "ens4", False), LinkEvent("del", 3, "eth9", False)])
    s = f.snapshot()[0]
    assert (s["state"], s["ifindex"], s["detached_at"], s["reason"], s["detaches"]) == (
        DETACHED, 7, 1010.0, "deleted", 1)
    assert old.forgotten and not old.detached and host.forgotten == [7]
    assert "ens4 (ifindex 7) deleted: detached" in caplog.text
    host.now = 1020.0
    host.links["ens4"] = LinkEvent("new", 12, "ens4", True)
    f.poll([LinkEvent("new", 11, "other", True), host.links["ens4"]])
    s = f.snapshot()[0]
    assert (s["state"], s["ifindex"], s["attached_at"], s["reattaches"], s["reason"]) == (
        ATTACHED, 12, 1020.0, 1, None)
    assert atts[0].ifindex == 12 and len(atts) == 1  # the caller detaches the new one at stop
    assert "ens4 re-attached (ifindex 12, was 7; re-attach 1)" in caplog.text
    assert link_lines(f.snapshot()) == [
        f"  ens4 re-attached 1 times, last at {_when(1020.0)} (ifindex 12)"]


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def test_renamed_away_is_detached_from_the_renamed_device():
    host = Host()
    f, atts = host.follower()
    host.links = {"mirror0": LinkEvent("new", 7, "mirror0", True)}
    f.poll([LinkEvent("new", 7, "mirror0", True)])
    assert f.snapshot()[0]["state"] == DETACHED
    assert f.snapshot()[0]["reason"] == "renamed to mirror0"
    assert atts[0].detached  # our program and promisc removed from the renamed device


def test_down_and_up_stay_attached():
    host = Host()
    f, _ = host.follower()
    f.poll([LinkEvent("new", 7, "ens4", False)])
    assert f.snapshot()[0]["state"] == DOWN
    f.poll([LinkEvent("new", 7, "ens4", True)])
    assert f.snapshot()[0]["state"] == ATTACHED and f.snapshot()[0]["detaches"] == 0


def test_a_failed_attach_is_retried_not_raised():
    host = Host()
    f, _ = host.follower()
    del host.links["ens4"]
    f.poll([LinkEvent("del", 7, "ens4", False)])
    host.links["ens4"] = LinkEvent("new", 12, "ens4", True)
    host.fail = AttachError("busy")
    f.poll([host.links["ens4"]])
    assert f.snapshot()[0]["state"] == DETACHED
    host.fail = None
    host.now += RETRY_S / 2
    f.poll([])
    assert f.snapshot()[0]["state"] == DETACHED  # not yet
    host.now += RETRY_S
    f.poll([])
    assert f.snapshot()[0]["state"] == ATTACHED and host.attached == ["ens4"]


def test_lost_notifications_resync_from_the_kernel():
    """Both changes happened while the socket overflowed: the lookup finds the new ifindex."""
    host = Host()
    f, _ = host.follower()
    host.links["ens4"] = LinkEvent("new", 12, "ens4", True)
    f.resync()
    s = f.snapshot()[0]
    assert (s["state"], s["ifindex"], s["detaches"], s["reattaches"]) == (ATTACHED, 12, 1, 1)


@pytest.mark.parametrize("state,text", [
    ({"state": "detached", "detached_at": 0.0, "reason": "deleted", "ifindex": 7},
     "ens4 DETACHED since"),
    ({"state": "down", "since": 0.0, "ifindex": 7}, "ens4 attached but DOWN since"),
    ({"state": "attached", "reattaches": 0}, None),
])
def test_stats_text(state, text):
    lines = link_lines([{"name": "ens4", **state}])
    assert (lines[0].strip().startswith(text) if text else lines == [])
