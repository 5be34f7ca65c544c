"""`make bench` prints each figure beside the recorded one and flags those that moved more than
25 % the wrong way (issue 13): bench/compare.py on a log written the way the benches write."""

from __future__ import annotations

import json
import subprocess
import sys

import harness

COMPARE = harness.REPO / "bench" / "compare.py"


def run(tmp_path, recorded: dict, lines: list[str], *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "recorded.json").write_text(json.dumps(recorded))
    (tmp_path / "log").write_text("\n".join(lines) + "\n")
    return subprocess.run([sys.executable, str(COMPARE), str(tmp_path / "log"), "--recorded",
                           str(tmp_path / "recorded.json"), "--out", str(tmp_path / "out.json"),
                           *extra], capture_output=True, text=True, timeout=60)


def fig(name: str, value: float, better: str) -> str:
    return "figure " + json.dumps({"name": name, "value": value, "better": better})


def row(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(name + " "))


def test_moves_past_a_quarter_the_wrong_way_are_flagged(tmp_path):
    recorded = {
        "list/p50_ms": {"value": 55.0, "better": "lower"},
        "get/p50_ms": {"value": 1.0, "better": "lower"},
        "create/ops_s": {"value": 6500.0, "better": "higher"},
        "watch/ops_s": {"value": 1000.0, "better": "higher"},
        "faster/p50_ms": {"value": 100.0, "better": "lower"},
        "gone/p50_ms": {"value": 1.0, "better": "lower"},
    }
    lines = ["some table the bench printed",
             fig("list/p50_ms", 414.0, "lower"),     # 7.5x slower: flagged
             fig("get/p50_ms", 1.2, "lower"),        # +20 %: within the threshold
             fig("create/ops_s", 3000.0, "higher"),  # -54 %: flagged
             fig("watch/ops_s", 900.0, "higher"),    # -10 %: not flagged
             fig("faster/p50_ms", 10.0, "lower"),    # -90 %: better, not flagged
             fig("new/p50_ms", 3.0, "lower")]
    r = run(tmp_path, recorded, lines)
    assert r.returncode == 0, r.stderr
    assert "!! worse" in row(r.stdout, "list/p50_ms")
    assert "+653%" in row(r.stdout, "list/p50_ms")
    assert "!!" not in row(r.stdout, "get/p50_ms")
    assert "!! worse" in row(r.stdout, "create/ops_s")
    assert "!!" not in row(r.stdout, "watch/ops_s")
    assert "!!" not in row(r.stdout, "faster/p50_ms")
    assert "new" in row(r.stdout, "new/p50_ms")
    assert "gone" in row(r.stdout, "gone/p50_ms")
    assert "2 figure(s) flagged" in r.stdout
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["list/p50_ms"] == {"value": 414.0, "better": "lower"}
    assert "gone/p50_ms" not in written


def test_record_replaces_the_recorded_figures(tmp_path):
    r = run(tmp_path, {"a/p50_ms": {"value": 1.0, "better": "lower"}},
            [fig("a/p50_ms", 2.0, "lower")], "--record")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "recorded.json").read_text()) == {
        "a/p50_ms": {"value": 2.0, "better": "lower"}}
