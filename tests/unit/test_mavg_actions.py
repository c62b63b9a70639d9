"""Alert scripts: asynchronous, bounded by a timeout, counted; environment and ordering."""

from __future__ import annotations

import time
from pathlib import Path

from appliance.collector.monitoring.actions import SCRIPT_PATH, ScriptRunner, notification_text


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
                         "skipped_queue_full": 0, "queued": 0}  # fmt: skip
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
