"""The errors Mirrorflow raises on purpose: one base, specific errors under it."""

from __future__ import annotations

__all__ = ["MirrorflowError", "ConfigError"]


class MirrorflowError(Exception):
    """Base of every error Mirrorflow raises on purpose (bad config, bad input, ...)."""


class ConfigError(MirrorflowError):
    """A configuration file (or filter text) is invalid; the message names file, line and column."""

    def __init__(self, path: str, line: int, column: int, message: str) -> None:
        self.path, self.line, self.column = path, line, column
        super().__init__(f"{path}:{line}:{column}: {message}")
