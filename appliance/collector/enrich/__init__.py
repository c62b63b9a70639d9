"""Enrichment: columns added to every batch right after decoding (country, continent, AS
number and organisation, city… from MaxMind-format .mmdb databases)."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.collector.enrich.csvranges import load_csv
from appliance.collector.enrich.enricher import ENRICHED_COLUMNS, Enricher, declared_provides, texts, unprovided
from appliance.collector.enrich.mmdb import GeoDatabase, GeoError, database_files, load_database
from appliance.collector.enrich.networks import load_networks

__all__ = ["ENRICHED_COLUMNS", "Enricher", "GeoDatabase", "GeoError", "bundled_geoip", "database_files",
           "declared_provides", "load_csv", "load_database", "load_networks", "texts", "unprovided"]

#: where the free data of scripts/fetch-geoip is looked for: the appliance's folder, then the
#: source tree's .cache/geoip (scripts/setup fills it)
BUNDLED_GEOIP = (Path("/var/lib/mirrorflow/geoip"), Path(__file__).resolve().parents[3] / ".cache" / "geoip")


def bundled_geoip() -> Path | None:
    """The folder of free GeoIP/ASN data on this machine ($MIRRORFLOW_GEOIP, else `BUNDLED_GEOIP`),
    or None: what the demo and ``make demo`` use without the user naming a database."""
    env = os.environ.get("MIRRORFLOW_GEOIP")
    for p in ([Path(env)] if env else []) + list(BUNDLED_GEOIP):
        if p.is_dir() and any(f.suffix in (".mmdb", ".csv") for f in p.iterdir()):
            return p
    return None
