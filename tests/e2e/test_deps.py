"""`make deps` ends with scripts/check-deps (issue 13): every build- and run-time input in
scripts/deps.list is checked, and a missing one fails with one line naming it and the package
it comes from. Run against this machine, a PATH without one binary, and fake roots."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import harness

SCRIPT = harness.REPO / "scripts" / "check-deps"
LIST = harness.REPO / "scripts" / "deps.list"


def entries() -> list[tuple[str, str, str]]:
    out = []
    for line in LIST.read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            out.append((fields[0], fields[1], fields[2]))
    return out


def check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT)], cwd=harness.REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def fake_root(tmp: Path, config: dict[str, str], skip_file: str | None = None) -> Path:
    """A root holding every `file` input (empty) but `skip_file`, and a kernel config."""
    root = tmp / "root"
    for _, kind, path in entries():
        if kind == "file" and path.startswith("/") and path != skip_file:
            (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / path.lstrip("/")).touch()
    (root / "proc").mkdir(parents=True, exist_ok=True)
    text = "".join(f"{k}={v}\n" for k, v in config.items())
    (root / "proc" / "config.gz").write_bytes(gzip.compress(text.encode()))
    return root


def full_config() -> dict[str, str]:
    return {symbol: "y" for _, kind, symbol in entries() if kind == "kernel"}


def test_this_machine_has_everything():
    r = check({})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == ""


def test_a_binary_missing_from_path_is_named_with_its_package(tmp_path):
    # A PATH with every executable of the real one except crun.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for d in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            src = Path(d) / name
            if name != "crun" and not (bindir / name).exists() and os.access(src, os.X_OK):
                (bindir / name).symlink_to(src)
    r = check({"PATH": str(bindir)})
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "deps: missing crun (not on PATH): install the Debian package crun (make deps does)"]


def test_a_missing_include_file_is_named_with_its_package(tmp_path):
    proto = "/usr/include/google/protobuf/descriptor.proto"
    root = fake_root(tmp_path, full_config(), skip_file=proto)
    r = check({"DEPS_ROOT": str(root)})
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        f"deps: missing {root}{proto}: install the Debian package libprotobuf-dev (make deps does)"]


def test_a_fake_root_with_everything_passes(tmp_path):
    r = check({"DEPS_ROOT": str(fake_root(tmp_path, full_config()))})
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_kernel_without_a_feature_is_named(tmp_path):
    config = full_config()
    del config["CONFIG_VETH"]
    r = check({"DEPS_ROOT": str(fake_root(tmp_path, config))})
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "deps: the running kernel lacks CONFIG_VETH: the kernel needs it built in or as the"
        " loadable module veth"]


def test_a_feature_built_as_a_module_needs_the_module(tmp_path):
    config = full_config()
    config["CONFIG_OVERLAY_FS"] = "m"
    root = fake_root(tmp_path, config)
    r = check({"DEPS_ROOT": str(root)})
    assert r.returncode == 1
    assert "lacks CONFIG_OVERLAY_FS" in r.stdout
    (root / "sys" / "module" / "overlay").mkdir(parents=True)
    r = check({"DEPS_ROOT": str(root)})
    assert r.returncode == 0, r.stdout + r.stderr
