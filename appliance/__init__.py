"""Mirrorflow: a NetFlow appliance for a switch mirror port."""

from __future__ import annotations

__version__ = "0.1.0"

from appliance.errors import ConfigError, MirrorflowError

__all__ = ["ConfigError", "MirrorflowError", "__version__"]
