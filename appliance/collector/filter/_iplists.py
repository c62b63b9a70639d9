"""IP lists: named sets of IPv4 and IPv6 prefixes, one file per list (xenoeye's iplists/).

A list file holds one address or prefix per line, IPv4 and IPv6 mixed; ``#`` and ``//``
start comments (whole-line or after the prefix); blank lines are skipped; the last line
needs no newline. An address without a mask is one host (/32, /128); host bits under the
mask are ignored (``10.1.2.3/8`` is ``10.0.0.0/8``). Overlapping and adjacent prefixes
are merged into sorted disjoint ranges, so ``10.0.0.0/8`` plus ``10.1.2.0/24`` matches
all of 10/8 (xenoeye's trie loses 10.9.9.9 there), and matching is a binary search per
flow inside a numba kernel.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.collector.filter._errors import FilterError
from appliance.collector.filter._kernels import or_in_ranges, or_in_ranges6

__all__ = ["IPList", "IPLists", "merge_ranges"]

_M64 = (1 << 64) - 1


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort inclusive ranges and merge the overlapping and adjacent ones."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


@dataclass(frozen=True, eq=False)
class IPList:
    """One list: its IPv4 part and its IPv6 part as sorted disjoint inclusive ranges.

    Attributes:
        name: the file name.
        v4_lo / v4_hi: uint64 range bounds (integer of the address).
        v6_lo / v6_hi: uint64[k, 2] range bounds as (hi, lo) halves, like FlowBatch columns.
        prefixes4 / prefixes6: how many prefixes the file listed (before merging).
    """

    name: str
    v4_lo: np.ndarray
    v4_hi: np.ndarray
    v6_lo: np.ndarray
    v6_hi: np.ndarray
    prefixes4: int = 0
    prefixes6: int = 0

    @classmethod
    def from_networks(cls, name: str, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> IPList:
        r4: list[tuple[int, int]] = []
        r6: list[tuple[int, int]] = []
        for net in networks:
            rng = (int(net.network_address), int(net.broadcast_address))
            (r4 if net.version == 4 else r6).append(rng)
        m4, m6 = merge_ranges(r4), merge_ranges(r6)
        v6_lo = np.array([[lo >> 64, lo & _M64] for lo, _ in m6], dtype=np.uint64).reshape(-1, 2)
        v6_hi = np.array([[hi >> 64, hi & _M64] for _, hi in m6], dtype=np.uint64).reshape(-1, 2)
        return cls(
            name,
            np.array([lo for lo, _ in m4], dtype=np.uint64),
            np.array([hi for _, hi in m4], dtype=np.uint64),
            v6_lo,
            v6_hi,
            len(r4),
            len(r6),
        )

    def match4(self, col: np.ndarray, out: np.ndarray) -> None:
        """out |= the IPv4 column (uint64[n]) is in the list."""
        if len(self.v4_lo):
            or_in_ranges(col, self.v4_lo, self.v4_hi, out)

    def match6(self, col: np.ndarray, out: np.ndarray) -> None:
        """out |= the IPv6 column (uint64[n, 2]) is in the list."""
        if len(self.v6_lo):
            or_in_ranges6(col, self.v6_lo[:, 0].copy(), self.v6_lo[:, 1].copy(),
                          self.v6_hi[:, 0].copy(), self.v6_hi[:, 1].copy(), out)

    def __contains__(self, address: object) -> bool:
        """Whether one address (str or ipaddress object) is in the list — for tests and tools."""
        addr = ipaddress.ip_address(address) if isinstance(address, str) else address
        if not isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            return False
        out = np.zeros(1, dtype=np.bool_)
        v = int(addr)
        if addr.version == 4:
            self.match4(np.array([v], dtype=np.uint64), out)
        else:
            self.match6(np.array([[v >> 64, v & _M64]], dtype=np.uint64), out)
        return bool(out[0])


def _strip_comment(line: str) -> str:
    cut = len(line)
    for mark in ("#", "//"):
        k = line.find(mark)
        if 0 <= k < cut:
            cut = k
    return line[:cut]


def parse_list(name: str, text: str, source: str) -> IPList:
    """Parse the text of one list file.

    Raises:
        FilterError: with the line and column of the first bad entry.
    """
    networks = []
    pos = 0
    for raw_line in text.splitlines(keepends=True):
        body = _strip_comment(raw_line.rstrip("\r\n"))
        word = body.strip()
        if word:
            col = pos + body.index(word)
            parts = word.split()
            if len(parts) > 1:
                extra = col + word.index(parts[1], len(parts[0]))
                raise FilterError(source, text, extra,
                                  f"one address or prefix per line; move {parts[1]!r} to a line of its own")
            try:
                networks.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                raise FilterError(
                    source, text, col,
                    f"{word!r} is not an IPv4 or IPv6 address or prefix; write one per line, "
                    "e.g. 192.0.2.0/24 or 2001:db8::/32 (# or // start a comment)",
                ) from None
        pos += len(raw_line)
    return IPList.from_networks(name, networks)


class IPLists:
    """The named IP lists a filter can refer to (file name = list name)."""

    def __init__(self, lists: Mapping[str, IPList], directory: Path | None = None) -> None:
        self._lists = dict(lists)
        self.directory = directory

    @classmethod
    def empty(cls) -> IPLists:
        """No lists: any list name in a filter is an error."""
        return cls({})

    @classmethod
    def from_texts(cls, texts: Mapping[str, str]) -> IPLists:
        """Lists from in-memory file contents, {name: text} (tests, tools)."""
        return cls({name: parse_list(name, text, f"<iplist {name}>") for name, text in texts.items()})

    @classmethod
    def load(cls, directory: Path | str) -> IPLists:
        """Read every regular file in `directory` as a list named after the file.

        Hidden files (``.name``) and editor backups (``name~``) are skipped.

        Raises:
            FilterError: the directory cannot be read, or a file has a bad entry (file:line).
        """
        d = Path(directory)
        try:
            entries = sorted(d.iterdir())
        except OSError as exc:
            raise FilterError(str(d), "", 0,
                              f"cannot read the IP list directory: {exc.strerror}; "
                              "create it or point iplists-dir at an existing one") from None
        lists = {}
        for path in entries:
            if path.name.startswith(".") or path.name.endswith("~") or not path.is_file():
                continue
            try:
                text = path.read_bytes().decode("utf-8")
            except OSError as exc:
                raise FilterError(str(path), "", 0, f"cannot read the IP list: {exc.strerror}") from None
            except UnicodeDecodeError as exc:
                raise FilterError(str(path), "", 0,
                                  f"not UTF-8 text (byte {exc.start}); IP lists are plain text files") from None
            lists[path.name] = parse_list(path.name, text, str(path))
        return cls(lists, d)

    def __contains__(self, name: str) -> bool:
        return name in self._lists

    def __getitem__(self, name: str) -> IPList:
        return self._lists[name]

    def __len__(self) -> int:
        return len(self._lists)

    def names(self) -> list[str]:
        return sorted(self._lists)

    def get(self, name: str) -> IPList | None:
        return self._lists.get(name)

    def where(self) -> str:
        """Where the lists come from, for error messages."""
        return f"in {self.directory}" if self.directory is not None else "loaded"
