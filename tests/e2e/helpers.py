"""Small helpers shared by the e2e tests: manifests, table parsing, deadline-bounded polls."""

from __future__ import annotations

import json
import re
import time


def pod_manifest(name: str, labels: dict[str, str] | None = None, image: str = "busybox",
                 **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "app", "image": image, "command": ["sleep", "3600"]}],
                 **spec},
    }


def to_yaml(*docs: dict) -> str:
    """A multi-document stream for `kubectl -f -`. Each document is JSON (valid YAML) so no
    value is re-typed by kubectl's YAML 1.1 parser (a bare `y` label would become a bool)."""
    return "\n---\n".join(json.dumps(d) for d in docs) + "\n"


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """Split kubectl's human-readable table output into header and rows. Columns are
    separated by at least two spaces (a header like `NOMINATED NODE` has one)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, f"expected a table, got {text!r}"
    split = lambda line: re.split(r"\s{2,}", line.strip())  # noqa: E731
    return split(lines[0]), [split(line) for line in lines[1:]]


def rows_by_name(text: str) -> dict[str, dict[str, str]]:
    header, rows = table(text)
    return {row[0]: dict(zip(header, row)) for row in rows}


def names(kubectl_o_name_output: str) -> set[str]:
    """`kubectl get -o name` lines (`pod/x`) to the set of names."""
    return {line.split("/", 1)[1] for line in kubectl_o_name_output.split() if line}


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    """Poll predicate until it returns a truthy value (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")
        time.sleep(interval)
