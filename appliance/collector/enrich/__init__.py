"""Enrichment: columns added to every batch right after decoding (country, continent, AS
number and organisation, city… from MaxMind-format .mmdb databases)."""

from __future__ import annotations

from appliance.collector.enrich.enricher import ENRICHED_COLUMNS, Enricher, texts, unprovided
from appliance.collector.enrich.mmdb import GeoDatabase, GeoError, database_files, load_database

__all__ = ["ENRICHED_COLUMNS", "Enricher", "GeoDatabase", "GeoError", "database_files", "load_database",
           "texts", "unprovided"]
