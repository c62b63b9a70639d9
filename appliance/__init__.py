"""Mirrorflow: a NetFlow appliance for a switch mirror port."""

from __future__ import annotations

__version__ = "0.1.0"


class MirrorflowError(Exception):
    """Base of every error Mirrorflow raises on purpose (bad config, bad input, ...)."""
