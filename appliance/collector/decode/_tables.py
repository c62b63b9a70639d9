"""The decoder's tables and how the kernels receive them.

Tables are plain int64 arrays so the kernels stay cacheable; their column layouts are the
``T_*`` (templates), ``F_*`` (template fields), ``S_*`` (streams) and ``M_*`` (meta
counters) constants below, and the statistics layout is `Stat`. The kernels take them
grouped in a few named tuples (`Packets`, `RegistryArrays`, `Tables`, `Output`,
`Settings`; `Tables` arrives as `TableArrays` and its typed dicts); inside a batch they pass
the facts of one datagram as `Datagram` and `Header`. The Python side (`decoder.py`) owns the
arrays and rebuilds the tuples when it grows a table.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import numpy as np

from appliance.netflow.header import V1_RECORD, V5_RECORD, record_layout
from appliance.netflow.registry import REGISTRY, FieldType

# ---- template table (one row per template slot) -------------------------------------------
T_STREAM = 0  # stream index (exporter + version + source id)
T_TID = 1  # template id
T_NF = 2  # number of fields
T_FS = 3  # first row in the field table
T_MINLEN = 4  # record length (variable-length fields counted as their 1-byte prefix)
T_KIND = 5  # 1 = data, 2 = options
T_NSCOPE = 6  # scope fields (options templates)
T_VALID = 7  # 1 = usable, 0 = withdrawn / unusable
T_START_F = 8  # field index of the absolute start time, -1 if none
T_START_U = 9  # its unit (TU_*)
T_END_F = 10
T_END_U = 11
T_FUPT_F = 12  # FIRST_SWITCHED (uptime ms) field index
T_LUPT_F = 13  # LAST_SWITCHED
T_DUR_F = 14  # flowDurationMilliseconds
T_SAMPID_F = 15  # sampler id field (48 or 302)
T_SAMPINT_F = 16  # per-record sampling interval field (34)
T_HAS_VAR = 17  # has variable-length fields
T_RECORDS = 18  # records decoded with this template
T_VERSION = 19  # 9 or 10
T_NCOLS = 20

# ---- field table (one row per template field) ---------------------------------------------
F_IE = 0
F_PEN = 1
F_LEN = 2  # 65535 = variable length
F_COL = 3  # registry column or -1
F_COL6 = 4  # v6 column or -1
F_ACT = 5  # A_* action
F_SCOPE = 6  # 1 for scope fields
F_COUNTER = 7  # 1 if scaled by the sampling rate
F_NCOLS = 8

A_SKIP = 0
A_UINT = 1
A_V6 = 2
A_REF = 3
A_FLOAT = 4
A_SIGNED = 5

TU_NONE = 0
TU_SEC = 1
TU_MS = 2
TU_NTP = 3
TU_DELTA_US = 4

# ---- stream table (exporter + version + source id) ----------------------------------------
S_EXP = 0
S_VER = 1
S_SID = 2  # source id / observation domain / v5 engine type << 8 | engine id
S_HAVE_SEQ = 3
S_NEXT_SEQ = 4
S_INIT_MS = 5  # exporter system init time (IPFIX option 160), -1 unknown
S_RATE = 6  # sampling rate learned for the whole stream (v5 header, options without id)
S_PACKETS = 7
S_NCOLS = 8

# ---- meta counters ------------------------------------------------------------------------
M_NEXP = 0
M_NSTREAM = 1
M_NTMPL = 2
M_NFLD = 3
M_TMPL_CHANGES = 4  # templates added / changed / withdrawn (persistence trigger)
M_NORPH = 5
M_RATE_CHANGES = 6
M_PARTIAL = 7  # IPFIX data records of a packet interrupted by a full output
M_LIMITS = 8  # bits set by the Python side when a table reached its cap (no more growth):
L_EXPORTERS, L_STREAMS, L_TEMPLATES, L_FIELDS = 1, 2, 4, 8
M_EXP_REFUSED = 9  # packets from new exporters refused because the exporter table is full
M_NCOLS = 16

# ---- return status --------------------------------------------------------------------------
ST_DONE = 0
ST_OUT_FULL = 1  # output rows exhausted: resume at (packet, set offset, record offset)
ST_GROW = 2  # table capacity low: grow, then resume at the packet start
ST_ORPH_FULL = 3  # orphan list full: take them, then resume

MAX_TEMPLATE_FIELDS = 1024  # more is not a real template: refuse and count it
NTP_EPOCH_OFFSET = 2208988800
ANY_SAMPLER = 0xFFFFFFFF


class Stat(enum.IntEnum):
    """Per-exporter statistics columns (exporter index × Stat)."""

    PACKETS = 0
    BYTES = 1
    V5_PACKETS = 2
    V9_PACKETS = 3
    IPFIX_PACKETS = 4
    RECORDS = 5  # flow data records decoded (v5 + data)
    OPTIONS_RECORDS = 6
    TEMPLATES = 7  # template definitions received (incl. refreshes)
    OPTIONS_TEMPLATES = 8
    TEMPLATES_CHANGED = 9  # a template id redefined with other fields
    TEMPLATE_WITHDRAWALS = 10
    LOST_PACKETS = 11  # v9 sequence gaps (packets)
    LOST_FLOWS = 12  # v5 / IPFIX sequence gaps (records)
    SEQ_RESETS = 13  # sequence went backwards (exporter restart or reordering)
    NO_TEMPLATE_SETS = 14  # data sets that arrived before their template
    PENDING_DECODED_SETS = 15  # of those, decoded later when the template came
    PENDING_EXPIRED_SETS = 16  # of those, dropped after waiting too long or overflow
    ERR_SHORT_PACKET = 17  # shorter than its header
    ERR_BAD_VERSION = 18
    ERR_BAD_LENGTH = 19  # IPFIX length field disagrees with the datagram
    ERR_BAD_SET_LENGTH = 20  # set length < 4 or past the end of the packet
    ERR_BAD_SET_ID = 21  # reserved set ids (IPFIX 4..255, v9 2..255)
    ERR_BAD_TEMPLATE = 22  # template with 0 / too many fields, truncated, or zero record length
    ERR_TRUNCATED_RECORD = 23  # variable-length field running past its set
    ERR_COUNT_MISMATCH = 24  # v5 header count disagrees with the datagram length
    ERR_TEMPLATE_TABLE_FULL = 25
    PADDING_BYTES = 26  # trailing bytes in sets that do not make a record
    ERR_STREAM_TABLE_FULL = 27  # packets of a new source id refused: too many source ids


N_STATS = len(Stat)


def _builtin(record: np.dtype) -> tuple[tuple[int, int], ...]:
    """A fixed record of `netflow.header` as (element id, length) pairs; id 0 = padding."""
    return tuple(
        (0 if name.startswith("pad") else REGISTRY[name].element_id, length)
        for name, _offset, length in record_layout(record)
    )


#: v5 and v1 records, described as built-in templates the data-set walker understands.
V5_FIELDS = _builtin(V5_RECORD)
V1_FIELDS = _builtin(V1_RECORD)

_R = REGISTRY
C_DEV_IP = _R.column("dev_ip")
C_DEV_IP6 = _R["dev_ip6"].column6
C_DEV_ID = _R.column("dev_id")
C_RATE = _R.column("sampling_rate")
C_RECV = _R.column("recv_time_ns")
C_TSTART = _R.column("time_start_ms")
C_TEND = _R.column("time_end_ms")
C_EXP = _R.column("exporter_index")
C_TID = _R.column("template_id")
C_KIND = _R.column("record_kind")
C_SLOT = _R.column("template_slot")
C_OFF = _R.column("record_offset")
C_VER = _R.column("version")
VIRTUAL_COLUMNS = np.array(
    [C_DEV_IP, C_DEV_ID, C_RATE, C_RECV, C_TSTART, C_TEND, C_EXP, C_TID, C_KIND, C_SLOT, C_OFF, C_VER],
    dtype=np.int64,
)

FT_UNSIGNED = int(FieldType.UNSIGNED)
FT_SIGNED = int(FieldType.SIGNED)
FT_IPV4 = int(FieldType.IPV4)
FT_IPV6 = int(FieldType.IPV6)
FT_MAC = int(FieldType.MAC)
FT_STRING = int(FieldType.STRING)
FT_BYTES = int(FieldType.BYTES)
FT_FLOAT = int(FieldType.FLOAT)


# ---- what the kernels receive ---------------------------------------------------------------


class Packets(NamedTuple):
    """A `PacketBatch` as the kernels see it; `replay` marks pending sets decoded again."""

    buf: np.ndarray  # uint8, the datagrams back to back
    offset: np.ndarray  # int64 per datagram
    length: np.ndarray
    addr_hi: np.ndarray  # uint64: the exporter address as two words
    addr_lo: np.ndarray
    recv_ns: np.ndarray
    replay: np.ndarray  # uint8: 1 = a pending set (already counted when it first came)


class RegistryArrays(NamedTuple):
    """The registry's lookup arrays (`Registry.iana_column` and friends)."""

    iana_column: np.ndarray  # element id → column (-1 unknown)
    ent_keys: np.ndarray  # sorted pen << 16 | element id
    ent_columns: np.ndarray
    ftype: np.ndarray  # column → FieldType
    column6: np.ndarray  # column → IPv6 column (-1 not an IPv6 field)
    counter: np.ndarray  # column → 1 if scaled by the sampling rate


class TableArrays(NamedTuple):
    """The array part of `Tables`, which is what crosses from Python into the entry kernel.

    The typed dicts cross as separate arguments: numba types a tuple holding a typed dict
    on a slow path (hundreds of µs per call); the entry kernel assembles `Tables` itself.
    """

    exporters: np.ndarray
    streams: np.ndarray
    templates: np.ndarray
    fields: np.ndarray
    meta: np.ndarray
    stats: np.ndarray


class Tables(NamedTuple):
    """Everything the decoder learns and counts: the state that outlives a batch."""

    exporter_ids: object  # typed Dict (addr hi, addr lo) → exporter index
    exporters: np.ndarray  # uint64[exporter, 2]: address words
    stream_ids: object  # typed Dict exporter << 34 | version code << 32 | source id → stream
    streams: np.ndarray  # int64[stream, S_NCOLS]
    template_ids: object  # typed Dict stream << 16 | template id → slot
    templates: np.ndarray  # int64[slot, T_NCOLS]
    fields: np.ndarray  # int64[row, F_NCOLS]
    sampler_rates: object  # typed Dict stream << 32 | sampler id → rate
    overrides: object  # typed Dict exporter << 33 | source id (1 << 32: any) → devices.conf rate
    meta: np.ndarray  # int64[M_NCOLS]
    stats: np.ndarray  # int64[exporter, N_STATS]


class Output(NamedTuple):
    """Where records go: registry columns, IPv6 columns, which columns got values, and the
    data sets that came before their template (packet, set offset, set length, stream)."""

    columns: np.ndarray  # uint64[column, row]
    columns6: np.ndarray  # uint64[column6, 2, row]
    present: np.ndarray  # uint8[column]
    orphans: np.ndarray  # int64[n, 4]


class Settings(NamedTuple):
    """The decoder's options and the free room its tables must keep."""

    emit_options: bool
    apply_sampling: bool
    v5_slot: int  # template slot of the built-in v5 record (v1: the next slot)
    min_free_fields: int
    min_free_templates: int


class Scratch(NamedTuple):
    """Per-call work arrays of the record walker, sized for the largest template."""

    frel: np.ndarray  # field offset in the record
    flen: np.ndarray  # field length in the record
    plan: np.ndarray  # (field, action, column) of the fields that produce a value


class Datagram(NamedTuple):
    """One datagram of the batch, before its header is read."""

    index: int  # in the batch
    offset: int  # of its first byte in `Packets.buf`
    exporter: int
    dev_ip4: int  # the exporter's IPv4 address, 0 for IPv6 exporters
    dev_hi: np.uint64
    dev_lo: np.uint64
    recv_ns: int
    replay: bool  # a pending set decoded again: counted when it first came
    count_stats: bool  # first time through this datagram (not a replay, not a resumption)


class Header(NamedTuple):
    """What a datagram's header says, as its records need it."""

    version: int
    stream: int
    dev_id: int  # v9 source id / IPFIX observation domain / v5 engine id
    export_ms: int  # header time, ms since the epoch
    sysuptime: int  # header uptime in ms, -1 for IPFIX (no uptime in its header)
