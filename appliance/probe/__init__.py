"""The probe: an eBPF flow cache on a mirror interface that exports NetFlow v9 / v5 / IPFIX.

Kernel side: ``flowcache.bpf.c`` (TC clsact ingress). Userspace: ``kernel`` (load, drain),
``attach`` (pyroute2, promisc, leftovers), ``flowtable`` (timeouts), ``exporter`` (UDP),
``stats`` and ``cli``.
"""

from __future__ import annotations

from appliance.probe.errors import AttachError, KernelError, ProbeConfigError, ProbeError

__all__ = ["ProbeError", "ProbeConfigError", "AttachError", "KernelError"]
