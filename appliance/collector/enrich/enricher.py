"""`Enricher`: the stage that adds country, continent, AS and city columns to every batch.

The collector calls it on each decoded batch before any sink (`appliance.collector.pipeline`
wires it), so filters, windows, dumps, the archive and the API all see the same columns:
``src_country``/``dst_country``, ``src_asn``/``dst_asn``, ``src_as_org``/``dst_as_org`` and,
with a City database, continent, state, city, zip, lat and long (codes:
`appliance.collector.fields.geo`). Only what the loaded databases provide is added; unknown
addresses get 0 (rendered empty, or ``?`` by xenoeye's functions).

Reload (SIGHUP): the files are loaded again on a thread of their own while the old tables go on
serving; the new ones replace them in one assignment when every file has loaded. A missing or
corrupt file keeps the old tables (logged, counted).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import appliance.collector.enrich._kernels as K
from appliance.collector.enrich.csvranges import load_csv
from appliance.collector.enrich.merged import merge
from appliance.collector.enrich.mmdb import GeoDatabase, GeoError, database_files, load_database
from appliance.collector.enrich.networks import load_networks
from appliance.collector.fields import geo
from appliance.collector.flowbatch import FlowBatch
from appliance.errors import ConfigError

__all__ = ["Enricher", "ENRICHED_COLUMNS", "declared_provides", "unprovided", "texts"]

log = logging.getLogger("mirrorflow.collector")

_NO_V6 = np.zeros((1, 2), dtype=np.uint64)
#: every column the stage can add, in registry order
ENRICHED_COLUMNS: tuple[str, ...] = (*(f"{side}_{n}" for n in geo.ENRICHED for side in ("src", "dst")),
                                      "in_if_name", "out_if_name")


def _load(path: Path) -> GeoDatabase:
    return load_csv(path) if path.suffix == ".csv" else load_database(path)


def _load_all(paths: Sequence[Path], networks: Path | None = None) -> list[GeoDatabase]:
    dbs = [load_networks(networks)] if networks is not None else []
    return dbs + [_load(f) for p in paths for f in database_files(Path(p))]


class Enricher:
    """Adds the databases' columns to batches.

    Args:
        paths: .mmdb files or folders of them (``--geoip``, ``geoip``/``geodb`` keys); where
            two provide the same value, the first that knows an address wins.
        networks: the user's networks file (``--networks``, ``networks``): net-name, -role, -site.
        devices: devices.conf entries; their ``interfaces`` give ``in_if_name``/``out_if_name``.

    Raises:
        GeoError: a missing, unreadable or corrupt file (the collector does not start).
    """

    def __init__(self, paths: Iterable[Path], networks: Path | None = None, devices: Sequence[Any] = ()) -> None:
        self.paths = [Path(p) for p in paths]
        self.networks = networks
        dbs = _load_all(self.paths, networks)
        #: the loaded databases and the one table they are merged into, swapped together
        self._state: tuple[list[GeoDatabase], GeoDatabase | None] = (dbs, merge(dbs) if dbs else None)
        self.reloads = 0
        self.reload_errors = 0
        self.loaded_at = time.time()
        self._thread: threading.Thread | None = None
        # output columns, reused batch after batch (fresh arrays cost page faults each time):
        # like the decoder's, a batch's enriched columns are valid until the next batch
        self._buffers: dict[str, np.ndarray] = {}
        self._interfaces: tuple[np.ndarray, ...] | None = None
        self.set_interfaces(devices)

    def set_interfaces(self, devices: Sequence[Any]) -> None:
        """Interface names from devices.conf entries (at start and on SIGHUP): (exporter
        address, ifIndex) → name; a later entry for the same pair wins."""
        named: dict[tuple[int, int, int], int] = {}
        for dev in devices:
            hi, lo = dev.address_words
            for ifindex, name, _desc in getattr(dev, "interfaces", ()):
                named[(hi, lo, ifindex)] = geo.TEXTS.code(name)
        if not named:
            self._interfaces = None
            return
        keys = sorted(named)
        self._interfaces = (np.array([k[0] for k in keys], dtype=np.uint64),
                            np.array([k[1] for k in keys], dtype=np.uint64),
                            np.array([k[2] for k in keys], dtype=np.uint64),
                            np.array([named[k] for k in keys], dtype=np.uint64))

    @property
    def databases(self) -> list[GeoDatabase]:
        return self._state[0]

    @property
    def provides(self) -> frozenset[str]:
        """The columns added (``src_country``, ``dst_country``…)."""
        ifs = frozenset({"in_if_name", "out_if_name"}) if self._interfaces is not None else frozenset()
        return ifs | frozenset(f"{side}_{n}" for db in self.databases for n in db.provides for side in ("src", "dst"))

    def __call__(self, batch: FlowBatch) -> None:
        self.enrich(batch)

    def enrich(self, batch: FlowBatch) -> None:
        """Add (or overwrite) the provided columns of one batch: one numba pass per side over
        the merged table writes every value of the address's ranges."""
        if batch.n == 0:
            return
        ifs = self._interfaces
        if ifs is not None:
            dev6 = np.ascontiguousarray(batch["dev_ip6"], np.uint64)
            for col, name in (("in_if", "in_if_name"), ("out_if", "out_if_name")):
                buf = self._buffers.get(name)
                if buf is None or len(buf) < batch.n:
                    buf = self._buffers[name] = np.empty(max(batch.n, 16384), dtype=np.uint64)
                K.join_interfaces(dev6, np.ascontiguousarray(batch[col], np.uint64), *ifs, buf[: batch.n])
                batch.set(name, buf[: batch.n])
        db = self._state[1]  # one read: a reload swaps the state, never edits it
        if db is None:
            return
        names = db.provides
        rows = np.arange(len(names), dtype=np.int64)
        a, b = db.v4, db.v6
        for side in ("src", "dst"):
            v4 = np.ascontiguousarray(batch[f"{side}_addr"], np.uint64)
            has6 = f"{side}_addr6" in batch
            v6 = np.ascontiguousarray(batch[f"{side}_addr6"], np.uint64) if has6 else _NO_V6
            buf = self._buffers.get(side)
            if buf is None or buf.shape[0] != len(names) or buf.shape[1] < batch.n:
                buf = self._buffers[side] = np.empty((len(names), max(batch.n, 16384)), dtype=np.uint64)
            out = buf[:, : batch.n]
            out[:] = 0
            K.lookup_values(v4, v6, has6, a.hi, a.lo, a.idx, a.code, b.hi, b.lo, b.idx, b.code,
                            db.matrix(), rows, out)
            for r, name in enumerate(names):
                batch.set(f"{side}_{name}", out[r])

    # ---- reload ---------------------------------------------------------------------------

    def reload(self, wait: bool = False) -> threading.Thread | None:
        """Load the files again in the background; the old tables serve until then.

        Args:
            wait: return only when the new tables are in place (or refused).

        Returns:
            the loading thread (None when one is already running).
        """
        if self._thread is not None and self._thread.is_alive():
            log.warning("GeoIP reload already running; this one is skipped")
            return None
        self._thread = threading.Thread(target=self._reload, name="geoip-reload", daemon=True)
        self._thread.start()
        if wait:
            self._thread.join()
        return self._thread

    def _reload(self) -> None:
        try:
            new = _load_all(self.paths, self.networks)
        except GeoError as exc:
            self.reload_errors += 1
            log.error("GeoIP reload refused, the loaded databases stay: %s", exc)
            return
        lost = {c for c in self.provides if not c.endswith("_if_name")} - frozenset(
            f"{s}_{n}" for db in new for n in db.provides for s in ("src", "dst"))
        if lost:
            self.reload_errors += 1
            log.error("GeoIP reload refused, the loaded databases stay: the new files do not provide %s",
                      ", ".join(sorted(lost)))
            return
        self._state = (new, merge(new) if new else None)
        self.reloads += 1
        self.loaded_at = time.time()
        log.info("GeoIP reloaded: %s", "; ".join(f"{d.path} ({d.database_type}, {d.ranges} ranges)" for d in new))

    def stats(self) -> dict[str, Any]:
        return {
            "databases": [{"path": str(d.path), "type": d.database_type, "build_epoch": d.build_epoch,
                           "ranges": d.ranges, "records": d.records, "provides": list(d.provides)}
                          for d in self.databases],
            "reloads": self.reloads,
            "reload_errors": self.reload_errors,
            "texts": len(geo.TEXTS),
            "texts_overflow": geo.TEXTS.overflow,
        }


def unprovided(objects: Iterable[Any], provides: frozenset[str]) -> list[ConfigError]:
    """Errors for monitoring objects whose filters or windows read enriched columns no loaded
    database provides (``src country DE`` without a Country or City database)."""
    errors: list[ConfigError] = []
    enriched = frozenset(ENRICHED_COLUMNS)
    for obj in objects:
        used = set(getattr(obj.filter, "fields", ()))
        for w in obj.windows:
            for f in w.fields:
                used.update(f.columns_read)
        missing = sorted((used & enriched) - provides)
        nets = [m for m in missing if "_net_" in m]
        ifs = [m for m in missing if m.endswith("_if_name")]
        geos = [m for m in missing if "_net_" not in m and m not in ifs]
        if ifs:
            errors.append(ConfigError(str(obj.conf), 0, 0, f"{', '.join(ifs)} need interface names: "
                                      '"interfaces": {"1": "ge-0/0/1", …} in a devices.conf entry'))
        have = ", ".join(sorted(provides)) or "none loaded"
        if geos:
            errors.append(ConfigError(str(obj.conf), 0, 0, f"{', '.join(geos)} need a GeoIP/ASN database that "
                                      f"provides them (now: {have}); add one with --geoip FILE or the collector "
                                      'config\'s "geoip": ["/var/lib/mirrorflow/geoip/…mmdb"] '
                                      "(see docs/enrichment.md)"))
        if nets:
            errors.append(ConfigError(str(obj.conf), 0, 0, f"{', '.join(nets)} need a networks file (prefixes with "
                                      'name, role, site): --networks FILE or "networks" in the collector config '
                                      "(see docs/enrichment.md)"))
    return errors


def declared_provides(paths: Sequence[Path], networks: Path | None, devices: Sequence[Any]) -> frozenset[str]:
    """What the configured files would add, from their headers only (``check-config``: no
    tables are built): an .mmdb's type (all GeoIP values for a type we do not know by name), a
    range CSV's first line, the networks file, devices.conf's interfaces.

    Raises:
        GeoError: a missing or unreadable file, a file that is not a database.
    """
    import maxminddb

    names: set[str] = set()
    for p in paths:
        for f in database_files(Path(p)):
            if f.suffix == ".csv":
                try:
                    with f.open(encoding="utf-8") as fh:
                        first = next((ln for ln in fh if ln.strip() and not ln.startswith("#")), "")
                except (OSError, UnicodeDecodeError) as exc:
                    raise GeoError(f"{f}: cannot read the GeoIP/ASN database: {exc}") from None
                names.update(("asn", "as_org") if first.count(",") >= 3 else ("country",))
                continue
            try:
                with maxminddb.open_database(str(f), maxminddb.MODE_MMAP) as reader:
                    t = str(reader.metadata().database_type).lower()
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                raise GeoError(f"{f}: not a valid MaxMind DB (.mmdb) file: {exc}") from None
            by_type = (["continent", "country", "state", "city", "zip", "lat", "long"] if "city" in t else
                       ["continent", "country"] if "country" in t else [])
            by_type += ["asn", "as_org"] if "asn" in t or "isp" in t else []
            names.update(by_type or [n for n in geo.ENRICHED if not n.startswith("net_")])
    if networks is not None:
        names.update(load_networks(networks).provides)
    out = {f"{side}_{n}" for n in names for side in ("src", "dst")}
    if any(getattr(d, "interfaces", ()) for d in devices):
        out |= {"in_if_name", "out_if_name"}
    return frozenset(out)


def texts(batch: FlowBatch) -> dict[str, np.ndarray]:
    """The readable values of the enriched columns a batch carries (for dumps and ``decode``)."""
    out: dict[str, np.ndarray] = {}
    for name in ENRICHED_COLUMNS:
        if name in batch:
            out[name] = geo.render(name, batch[name])
    return out
