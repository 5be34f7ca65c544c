#!/usr/bin/env python3
"""Compares a benchmark run with the figures last recorded.

    bench/compare.py LOG [--recorded bench/recorded.json] [--out FIGURES.json] [--record]

LOG is the output of `make bench` (every bench's stdout); its `figure {...}` lines are the
run's figures (bench/figures.py). Writes them to --out as JSON, prints each beside the
recorded value with the change, and flags with `!!` every figure that moved more than 25 %
the wrong way (slower, more CPU or memory, fewer ops/s). With --record, the run's figures
replace the recorded ones (commit bench/recorded.json with the docs that quote them).
Timings are reported, never asserted: the exit status is 0 whatever moved."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402

THRESHOLD = 0.25


def change(recorded: float, now: float, better: str) -> tuple[str, bool]:
    """The relative change as text, and whether it is a regression past the threshold."""
    if recorded == 0:
        return ("new" if now else "="), False
    rel = (now - recorded) / abs(recorded)
    worse = rel > THRESHOLD if better == "lower" else rel < -THRESHOLD
    return f"{rel:+.0%}", worse


def report(run: dict[str, dict], recorded: dict[str, dict]) -> tuple[list[str], int]:
    rows = []
    width = max([len(n) for n in run] + [len(n) for n in recorded] + [10])
    rows.append(f"{'figure':<{width}}  {'recorded':>12}  {'now':>12}  {'change':>8}")
    flagged = 0
    for name in sorted(set(run) | set(recorded)):
        r = recorded.get(name)
        n = run.get(name)
        rec_text = f"{r['value']:,.3f}".rstrip("0").rstrip(".") if r else "-"
        now_text = f"{n['value']:,.3f}".rstrip("0").rstrip(".") if n else "-"
        if r and n:
            text, worse = change(r["value"], n["value"], n["better"])
        else:
            text, worse = ("new" if n else "gone"), False
        flag = "  !! worse" if worse else ""
        flagged += worse
        rows.append(f"{name:<{width}}  {rec_text:>12}  {now_text:>12}  {text:>8}{flag}")
    return rows, flagged


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log", type=Path)
    here = Path(__file__).resolve().parent
    ap.add_argument("--recorded", type=Path, default=here / "recorded.json")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    run = figures.parse(args.log.read_text(errors="replace").splitlines())
    if not run:
        print(f"compare: no figures in {args.log}")
        return 0
    if args.out:
        args.out.write_text(json.dumps(run, indent=1, sort_keys=True) + "\n")
    recorded = {}
    if args.recorded.exists():
        recorded = json.loads(args.recorded.read_text())
    rows, flagged = report(run, recorded)
    print()
    print(f"figures of this run beside {args.recorded.name} "
          f"(!! = moved more than {THRESHOLD:.0%} the wrong way)")
    print("\n".join(rows))
    print(f"{flagged} figure(s) flagged" if flagged else "nothing moved the wrong way")
    if args.record:
        args.recorded.write_text(json.dumps(run, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(run)} figures in {args.recorded}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
