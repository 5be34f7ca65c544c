"""Machine-readable benchmark figures: every bench prints each figure it measures as one line

    figure {"name": "api/sqlite/list 10000 pods/x1/p50_ms", "value": 54.8, "better": "lower"}

on stdout (the Rust examples print the same line with `println!`). `make bench` keeps the
whole output and `bench/compare.py` reads the figures back, writes them to one JSON file and
prints each beside the last recorded one (bench/recorded.json)."""

from __future__ import annotations

import json
import math

PREFIX = "figure "


def emit(name: str, value: float, better: str) -> None:
    """Prints one figure; `better` is "lower" (latencies, CPU, memory) or "higher" (rates)."""
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be lower or higher, not {better!r}")
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return
    print(PREFIX + json.dumps({"name": name, "value": round(float(value), 3), "better": better}),
          flush=True)


def parse(lines) -> dict[str, dict]:
    """The figures in a bench log, by name (the last one wins when a name repeats)."""
    out: dict[str, dict] = {}
    for line in lines:
        line = line.strip()
        if not line.startswith(PREFIX):
            continue
        try:
            fig = json.loads(line[len(PREFIX):])
        except json.JSONDecodeError:
            continue
        if isinstance(fig, dict) and {"name", "value", "better"} <= fig.keys():
            out[fig["name"]] = {"value": fig["value"], "better": fig["better"]}
    return out
