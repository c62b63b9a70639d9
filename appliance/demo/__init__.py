"""``mirrorflow demo``: the whole appliance on one machine, fed by synthetic mirrored traffic.

A traffic namespace sends mixed traffic into a veth whose other end (the "mirror port") the
probe watches; a copy goes to a second namespace where softflowd plays a router. Both export
NetFlow v9 to a collector with example monitoring objects that loads a throwaway PostgreSQL
cluster. Everything the demo creates is named after its pid and removed when it ends (or by
the next run, after a crash).
"""

from __future__ import annotations

from appliance import MirrorflowError

__all__ = ["DemoError", "PrerequisiteError"]


class DemoError(MirrorflowError):
    """The demo could not build or run part of its set-up; the message says which and why."""


class PrerequisiteError(DemoError):
    """Something the demo needs is missing; the message lists each thing and how to get it."""
