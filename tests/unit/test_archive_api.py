"""``/api/v1/archive/flows`` and ``/api/v1/archive/top``: answers against a plain recount of what
was written, schemas, bounds and errors."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pytest

from appliance.collector.api.archive import MAX_FLOWS, MAX_TOP, ArchiveApi, ArchiveApiError
from appliance.collector.api.schema import SCHEMAS, validate
from appliance.collector.export.archive import ArchiveSettings, FlowArchive
from appliance.collector.filter import IPLists
from appliance.collector.flowbatch import FlowBatch
from appliance.netflow.registry import REGISTRY

T0 = 1_796_000_000  # s
SRC = ["10.0.0.1", "10.0.0.2", "192.0.2.7", "10.0.0.1"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    a = FlowArchive(ArchiveSettings(root, "edge"), lambda i: "192.0.2.254")
    n = 400
    rng = np.random.default_rng(7)
    cols = {
        REGISTRY["recv_time_ns"].column: np.array([(T0 + 3 * i) * 10**9 for i in range(n)], dtype=np.uint64),
        REGISTRY["src_addr"].column: np.array([int(ipaddress.IPv4Address(SRC[i % 4])) for i in range(n)], np.uint64),
        REGISTRY["dst_port"].column: np.array([(22, 443)[i % 2] for i in range(n)], dtype=np.uint64),
        REGISTRY["bytes"].column: rng.integers(1, 10_000, n).astype(np.uint64),
        REGISTRY["packets"].column: rng.integers(1, 10, n).astype(np.uint64),
    }
    a.write(FlowBatch(n, cols, {}))
    a.close()
    np.savez(root / "expected.npz", **{REGISTRY.fields[c].name: v for c, v in cols.items()})
    return root


def expected(archive: Path) -> dict[str, np.ndarray]:
    return dict(np.load(archive / "expected.npz"))


def test_flows_newest_first_filtered_and_in_time(archive: Path) -> None:
    api = ArchiveApi(archive)
    lists = IPLists.from_texts({"inside": "10.0.0.0/8\n"})
    since, until = (T0 + 300) * 10**9, (T0 + 600) * 10**9
    doc = api.handle("/api/v1/archive/flows", {"filter": ["net inside and dst port 22"], "since": [str(since / 1e9)],
                                               "until": [str(until / 1e9)], "limit": ["1000"]}, lists)
    validate(doc, SCHEMAS["/api/v1/archive/flows"])
    e = expected(archive)
    t = e["recv_time_ns"]
    want = [i for i in range(len(t)) if since <= t[i] < until and SRC[i % 4].startswith("10.") and i % 2 == 0]
    assert [f["recv_time_ns"] for f in doc["flows"]] == [int(t[i]) for i in reversed(want)]
    assert doc["count"] == len(want) and all(f["exporter"] == "192.0.2.254" and f["appliance"] == "edge"
                                             for f in doc["flows"])


def test_top_is_the_recount(archive: Path) -> None:
    doc = ArchiveApi(archive).handle("/api/v1/archive/top", {"top": ["src host, dst port"], "by": ["packets"],
                                                               "limit": ["3"]}, None)
    validate(doc, SCHEMAS["/api/v1/archive/top"])
    e = expected(archive)
    sums: dict[tuple[str, int], list[int]] = {}
    for i in range(len(e["bytes"])):
        k = (SRC[i % 4], int(e["dst_port"][i]))
        s = sums.setdefault(k, [0, 0, 0])
        s[0] += int(e["bytes"][i])
        s[1] += int(e["packets"][i])
        s[2] += 1
    top = sorted(sums.items(), key=lambda kv: (-kv[1][1], kv[0]))[:3]
    assert [(r["src_host"], r["dst_port"], r["bytes"], r["packets"], r["flows"]) for r in doc["rows"]] == [
        (k[0], k[1], *v) for k, v in top]
    assert doc["totals"] == {"bytes": int(e["bytes"].sum()), "packets": int(e["packets"].sum()), "flows": 400}


@pytest.mark.parametrize(("path", "query", "status", "words"), [
    ("/api/v1/archive/flows", {"limit": [str(MAX_FLOWS + 1)]}, 400, "limit must be between 1 and"),
    ("/api/v1/archive/top", {"top": ["src host"], "limit": [str(MAX_TOP + 1)]}, 400, "limit must be between"),
    ("/api/v1/archive/flows", {"filter": ["port 44x3"]}, 400, "bad filter"),
    ("/api/v1/archive/flows", {"since": ["yesterday"]}, 400, "is not a time"),
    ("/api/v1/archive/flows", {"object": ["x"]}, 400, "unknown parameter"),
    ("/api/v1/archive/top", {}, 400, "--top needs at least one field"),
    ("/api/v1/archive/top", {"top": ["bytes"]}, 400, "is a counter"),
    ("/api/v1/archive/nope", {}, 404, "no endpoint"),
])
def test_bad_requests(archive: Path, path: str, query: dict[str, list[str]], status: int, words: str) -> None:
    with pytest.raises(ArchiveApiError) as err:
        ArchiveApi(archive).handle(path, query, None)
    assert err.value.status == status and words in str(err.value)


def test_more_concurrent_queries_than_allowed_get_503(archive: Path) -> None:
    api = ArchiveApi(archive, concurrent=1)
    api._slots.acquire()  # one query running
    with pytest.raises(ArchiveApiError) as err:
        api.handle("/api/v1/archive/flows", {}, None)
    assert err.value.status == 503
    api._slots.release()
    assert api.handle("/api/v1/archive/flows", {"limit": ["2"]}, None)["count"] == 2
