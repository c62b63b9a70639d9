"""The screen as plain text lines: what a test (or a bug report) sees, without SVG."""

from __future__ import annotations

from textual.app import App

__all__ = ["screen_text"]


def screen_text(app: App[object]) -> str:
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip).rstrip() for strip in strips)
