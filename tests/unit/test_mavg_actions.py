"""Alert scripts: asynchronous, bounded by a timeout, counted; environment and ordering."""

from __future__ import annotations

import resource
import threading
import time
from pathlib import Path

import pytest

from appliance.collector.monitoring.actions import (
    SCRIPT_PATH,
    ScriptRunner,
    new_report,
    notification_text,
)


def script(tmp: Path, name: str, body: str) -> str:
    p = tmp / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return str(p)


def test_exit_codes_output_and_environment_are_reported(tmp_path: Path) -> None:
    ok = script(tmp_path, "ok.sh", 'env > "$1"\necho hello\n')
    bad = script(tmp_path, "bad.sh", "echo broken >&2\nexit 3\n")
    r = ScriptRunner(timeout_s=10)
    env = {"PATH": SCRIPT_PATH, "MIRRORFLOW_MO": "lab"}
    assert r.run([ok, str(tmp_path / "env.txt")], env).result() == 0
    assert r.run([bad], env).result() == 3
    r.run(["/nonexistent/script"], env).result()
    r.close()
    seen = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines())
    assert seen["MIRRORFLOW_MO"] == "lab" and seen["PATH"] == SCRIPT_PATH
    assert not {k for k in seen if k not in ("PATH", "PWD", "SHLVL", "_") and not k.startswith("MIRRORFLOW_")}
    assert r.stats() == {"started": 2, "succeeded": 1, "failed": 1, "timed_out": 0, "not_started": 1,
                         "skipped_queue_full": 0, "dropped_at_stop": 0, "killed_at_stop": 0, "queued": 0}
    assert [(code, out.strip()) for _, code, out in r.recent[:2]] == [(0, "hello"), (3, "broken")]


def test_a_hung_script_is_killed_with_its_children_and_never_blocks(tmp_path: Path) -> None:
    hung = script(tmp_path, "hung.sh", f"sleep 60 &\necho $! > {tmp_path}/child\nsleep 60\n")
    r = ScriptRunner(timeout_s=0.5)
    t = time.monotonic()
    fut = r.run([hung], {"PATH": SCRIPT_PATH})
    assert time.monotonic() - t < 0.1  # run() only queues
    assert fut.result(timeout=10) is None
    assert r.stats()["timed_out"] == 1
    child = int((tmp_path / "child").read_text())
    time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    r.close()


def test_back2norm_waits_for_the_action_script(tmp_path: Path) -> None:
    log = tmp_path / "log"
    slow = script(tmp_path, "slow.sh", f"sleep 0.5\necho action >> {log}\n")
    fast = script(tmp_path, "fast.sh", f"echo back2norm >> {log}\n")
    r = ScriptRunner(timeout_s=10, workers=4)
    first = r.run([slow], {"PATH": SCRIPT_PATH})
    second = r.run([fast], {"PATH": SCRIPT_PATH}, after=first)
    assert second.result(timeout=10) == 0
    r.close()
    assert log.read_text().split() == ["action", "back2norm"]


def test_queue_bound(tmp_path: Path) -> None:
    slow = script(tmp_path, "slow.sh", "sleep 0.3\n")
    r = ScriptRunner(timeout_s=10, workers=1, max_queued=2)
    futs = [r.run([slow], {"PATH": SCRIPT_PATH}) for _ in range(4)]
    assert futs[2] is None and futs[3] is None and r.stats()["skipped_queue_full"] == 2
    r.close()


def test_notification_text_is_xenoeyes() -> None:
    assert notification_text(["1.2.3.4", "6"], [False, True], 78, 50) == " '1.2.3.4'  6  78 50\n"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_setsid_children_die_at_the_timeout_too(tmp_path: Path) -> None:
    # the child leaves the script's session and process group (killpg alone would miss it)
    hung = script(tmp_path, "hung.sh", f"setsid sleep 60 &\necho $! > {tmp_path}/child.tmp\n"
                                       f"mv {tmp_path}/child.tmp {tmp_path}/child\nsleep 60\n")
    r = ScriptRunner(timeout_s=3)
    fut = r.run([hung], {"PATH": SCRIPT_PATH})
    assert fut.result(timeout=60) is None
    child = int((tmp_path / "child").read_text())
    assert not _alive(child)  # killed at the timeout, before any close()
    assert r.stats()["timed_out"] == 1
    r.close()


def test_output_is_kept_as_a_bounded_tail_while_reading(tmp_path: Path) -> None:
    chatty = script(tmp_path, "chatty.sh", "head -c 80000000 /dev/zero | tr '\\0' x\necho END\n")
    r = ScriptRunner(timeout_s=60)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = new_report([chatty])
    assert r.run([chatty], {"PATH": SCRIPT_PATH}, report=report).result(timeout=60) == 0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    r.close()
    _, code, text = r.recent[-1]
    assert code == 0 and len(text) == 4096 and text.endswith("xxxxEND\n") and set(text[:-4]) == {"x"}
    assert report["output"] == text[-1024:]
    assert grown_kib < 40_000  # 80 MB of output never sits in memory


def test_a_hanging_script_does_not_delay_another_objects(tmp_path: Path) -> None:
    hung = script(tmp_path, "hung.sh", "sleep 60\n")
    ok = script(tmp_path, "ok.sh", "exit 0\n")
    r = ScriptRunner(timeout_s=30)
    a = r.run([hung], {"PATH": SCRIPT_PATH, "MIRRORFLOW_MO": "a"})
    a2 = r.run([ok], {"PATH": SCRIPT_PATH, "MIRRORFLOW_MO": "a"})  # behind the hung one: same object
    b = r.run([ok], {"PATH": SCRIPT_PATH, "MIRRORFLOW_MO": "b"})
    assert b.result(timeout=30) == 0
    assert not a.done() and not a2.done()
    r.close(wait=False)
    assert a.result(timeout=10) is None and a2.result(timeout=10) is None
    assert r.stats()["killed_at_stop"] == 1 and r.stats()["dropped_at_stop"] == 1 and r.stats()["queued"] == 0


def test_close_gives_running_scripts_a_grace_then_kills_the_group(tmp_path: Path) -> None:
    slow = script(tmp_path, "slow.sh", f"sleep 60 &\necho $! > {tmp_path}/child\nwait\n")
    r = ScriptRunner(timeout_s=120, stop_grace_s=0.3)
    report = new_report([slow])
    fut = r.run([slow], {"PATH": SCRIPT_PATH, "MIRRORFLOW_MO": "x"}, report=report)
    queued = r.run([slow], {"PATH": SCRIPT_PATH, "MIRRORFLOW_MO": "x"})
    while not (tmp_path / "child").exists() or not (tmp_path / "child").read_text():
        time.sleep(0.01)
    r.close()
    assert fut.result(timeout=10) is None and queued.result(timeout=10) is None
    assert report["status"] == "killed"
    assert not _alive(int((tmp_path / "child").read_text()))
    assert r.run([slow], {"PATH": SCRIPT_PATH}) is None  # stopped: nothing new starts


def test_an_idle_objects_worker_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.collector.monitoring import actions

    monkeypatch.setattr(actions, "_IDLE_S", 0.2)
    ok = script(tmp_path, "ok.sh", "exit 0\n")
    r = ScriptRunner(timeout_s=10)
    assert r.run([ok], {"PATH": SCRIPT_PATH, "MIRRORFLOW_MO": "gone"}).result(timeout=30) == 0

    def workers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "mf-script-gone"]

    while workers():  # objects removed by a reload must not keep a thread each
        time.sleep(0.05)
    assert r.run([ok], {"PATH": SCRIPT_PATH, "MIRRORFLOW_MO": "gone"}).result(timeout=30) == 0  # a new worker
    r.close()
