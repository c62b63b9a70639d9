"""The probe's exceptions: one base class, one subclass per thing a user can get wrong."""

from __future__ import annotations

from appliance.errors import MirrorflowError

__all__ = ["ProbeError", "ProbeConfigError", "AttachError", "KernelError"]


class ProbeError(MirrorflowError):
    """Base class of every error the probe raises on purpose."""


class ProbeConfigError(ProbeError):
    """A bad option or config-file value; the message names it and says what is expected."""


class AttachError(ProbeError):
    """The interface could not be prepared (missing, in use by another probe, no clsact)."""


class KernelError(ProbeError):
    """The eBPF program could not be compiled, loaded or read."""
