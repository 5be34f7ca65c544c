"""Test hosts: network namespaces joined through the host, each running `peapod agent` as a
node of a cluster whose control plane (`peapod server`) runs on the host.

A `Lan` is the wire between test hosts. Bridged (`Lan()`): one host bridge `pl<hex>` holding
the gateway `<net>.1/24`; every test host's veth is enslaved to it and its netns end has
`<net>.N/24` (one shared subnet: host-gw works). Routed (`Lan(routed=True)`): every test host
gets a /30 of its own (host end `.4k+1`, netns end `.4k+2`) and the host routes between them
(different subnets: vxlan); the gateway is a /32 on an anchor veth `pl<hex>`. Either way a
test host's default route points at its host end, and the host (ip_forward=1) carries the
traffic between test hosts and to the control plane listening on 0.0.0.0.

Addresses: the Lan subnets come from 172.16.0.0/12 (one /24 per Lan), the clusters' pod
networks from 100.64.0.0/10 (one /16 per cluster, `ClusterCidr`), away from the pod CIDRs
(10.100-249.x) and service ranges (10.1-99.x) of the single-node tests; a Lan subnet is
chosen under a machine-wide lock against what the host's addresses and routes already use,
a cluster's /16 is reserved by a flock held while it lives, so tests running side by side
never share a subnet. br_netfilter is loaded on this machine, so frames
bridged between test hosts traverse the host's FORWARD hooks and its NAT rules: nothing of the
host's matches these ranges (its masquerade rules name 10.x pod CIDRs), and the Lan adds no
rule of its own.

`ip netns exec` gives the agent a fresh mount namespace with a sysfs of its own (no cgroup
hierarchies under it); the agent joins the mount namespace it was started from (see
ARCHITECTURE §8), so its mounts, cgroups and runtime state are all visible from here and
`JoinedAgent.leaks()` checks them on the host; `TestHost.leaks()` checks what is inside the
netns (links, routes, processes).

Cleanup: `Lan.close()` (the `lan`/`routed_lan` fixtures call it, also on failure) stops every
agent of every host, force-removes what their pods left (processes of the agent's cgroups,
mounts under its data dir, the cgroups), deletes each netns and host link, and is idempotent.
Only processes this test started are ended, by PID.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import glob
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import harness
import node as node_support

LOCK = Path("/run/lock/peapod-e2e-testhost.lock")
CLONE_NEWNET = 0x40000000
AGENT_READY = "peapod agent ready"


def _ip(*args: str, check: bool = True, netns: str | None = None) -> subprocess.CompletedProcess:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    cp = subprocess.run(argv, capture_output=True, text=True)
    if check and cp.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {cp.stderr.strip()}")
    return cp


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """Serialises choosing a subnet and creating what uses it, across test processes."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host's addresses and routes name."""
    text = _ip("-o", "-4", "addr").stdout + "\n" + _ip("-4", "route", "show", "table", "all").stdout
    nets = []
    for word in text.split():
        if word[0].isdigit() and ("/" in word or word.count(".") == 3):
            try:
                nets.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                pass
    return nets


def _free_net(candidates, used: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    for _ in range(200):
        net = candidates()
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise RuntimeError("no free test subnet found")


def _reserve(net: ipaddress.IPv4Network):
    """Holds a machine-wide reservation of `net` for as long as the returned file stays open
    (a non-blocking flock: the kernel drops it when the test process ends, however it ends);
    None when another test holds it."""
    path = LOCK.parent / f"peapod-e2e-net-{net.network_address}-{net.prefixlen}.lock"
    f = open(path, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


class ClusterCidr:
    """A test cluster's pod network: a /16 of 100.64.0.0/10 (`--cluster-cidr`), with the
    nodes' /24s handed out in order while the control plane has no node IPAM. Pod addresses
    never show on the host, so the /16 is reserved machine-wide (`_reserve`) for as long as
    this object lives: clusters running side by side never share pod addresses (bridged
    frames go through the host's conntrack, which would mix their flows)."""

    def __init__(self):
        used = _host_networks()
        for _ in range(200):
            net = ipaddress.ip_network(f"100.{64 + secrets.randbelow(64)}.0.0/16")
            if any(net.overlaps(u) for u in used if u.prefixlen > 0):
                continue
            self._reservation = _reserve(net)
            if self._reservation is not None:
                break
        else:
            raise RuntimeError("no free cluster CIDR found")
        self.net = net
        self.cidr = str(self.net)
        self._next = 0

    def next_node_cidr(self) -> str:
        self._next += 1
        return str(list(self.net.subnets(new_prefix=24))[self._next])

    def contains(self, cidr: str) -> bool:
        return ipaddress.ip_network(cidr).subnet_of(self.net)


class Lan:
    """Test hosts joined through the host (see the module doc)."""

    def __init__(self, routed: bool = False):
        self.routed = routed
        self.id = secrets.token_hex(3)
        self.link = f"pl{self.id}"
        self.hosts: list[TestHost] = []
        self.forwards: list[int] = []
        self.found_at_close: list[str] = []
        self.closed = False
        with _machine_lock():
            self.net = _free_net(
                lambda: ipaddress.ip_network(
                    f"172.{16 + secrets.randbelow(16)}.{secrets.randbelow(256)}.0/24"),
                _host_networks())
            base = self.net.network_address
            try:
                if routed:
                    # An anchor for the gateway address: the kernel here has no dummy links.
                    self.gateway = str(base + 254)
                    _ip("link", "add", self.link, "type", "veth", "peer", "name", f"{self.link}p")
                    _ip("addr", "add", f"{self.gateway}/32", "dev", self.link)
                    _ip("link", "set", f"{self.link}p", "up")
                else:
                    self.gateway = str(base + 1)
                    _ip("link", "add", self.link, "type", "bridge", "stp_state", "0",
                        "forward_delay", "0")
                    _ip("addr", "add", f"{self.gateway}/24", "dev", self.link)
                _ip("link", "set", self.link, "up")
            except Exception:
                _ip("link", "del", self.link, check=False)
                raise

    def __enter__(self) -> "Lan":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def subnet(self) -> str:
        return str(self.net)

    def add_host(self) -> "TestHost":
        assert not self.closed, "Lan is closed"
        host = TestHost(self, len(self.hosts))
        self.hosts.append(host)
        for port in self.forwards:
            host.forward_loopback(port)
        return host

    def forward_loopback(self, port: int) -> None:
        """Makes the host's 127.0.0.1:port (e.g. the test registry) answer on 127.0.0.1:port
        inside every test host, now and added later, so image references naming the
        loopback registry work on every node."""
        self.forwards.append(port)
        for host in self.hosts:
            host.forward_loopback(port)

    def close(self) -> None:
        """Removes every host, the bridge or anchor, and the routes with them (idempotent).
        `found_at_close` lists what the hosts' agents and netns still held before the forced
        cleanup (pods the test left running): informative, since close removes it."""
        errors = []
        for host in self.hosts:
            try:
                host.close()
            except Exception as e:  # keep going: everything must go
                errors.append(f"{host.name}: {e}")
        if not self.closed:
            self.closed = True
            _ip("link", "del", self.link, check=False)
        self.found_at_close = [x for h in self.hosts for x in h.found_at_close]
        if errors:
            raise RuntimeError("closing the lan: " + "; ".join(errors))

    def leaks(self) -> list[str]:
        """What of this Lan is still on the host (after close: nothing)."""
        found = []
        links = _ip("-o", "link").stdout
        for name in [self.link] + [h.host_end for h in self.hosts]:
            if f" {name}:" in links or f" {name}@" in links:
                found.append(f"link {name}")
        netns = _ip("netns", "list").stdout.split()
        found += [f"netns {h.name}" for h in self.hosts if h.name in netns]
        routes = _ip("-4", "route", "show", "table", "all").stdout
        found += [f"route {line}" for line in routes.splitlines()
                  if any(ipaddress.ip_network(w, strict=False).overlaps(self.net)
                         for w in line.split()[:1] if w[0].isdigit())]
        return found


class TestHost:
    """A network namespace `pph<hex>` with a veth `eth0` to the host (end `ph<hex>`)."""

    __test__ = False  # not a pytest test class

    def __init__(self, lan: Lan, index: int):
        self.lan = lan
        self.id = secrets.token_hex(4)
        self.name = f"pph{self.id}"
        self.host_end = f"ph{self.id}"
        self.agents: list[JoinedAgent] = []
        self.closed = False
        self.found_at_close: list[str] = []
        self._listeners: list[socket.socket] = []
        base = lan.net.network_address
        if lan.routed:
            if index >= 62:
                raise RuntimeError("a routed Lan holds at most 62 hosts")
            host_ip, self.ip, prefix = str(base + 4 * index + 1), str(base + 4 * index + 2), 30
        else:
            if index >= 250:
                raise RuntimeError("a bridged Lan holds at most 250 hosts")
            host_ip, self.ip, prefix = lan.gateway, str(base + 2 + index), 24
        self.gateway = host_ip
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.host_end, "type", "veth", "peer", "name", "eth0",
                "netns", self.name)
            if lan.routed:
                _ip("addr", "add", f"{host_ip}/30", "dev", self.host_end)
            else:
                _ip("link", "set", self.host_end, "master", lan.link)
            _ip("link", "set", self.host_end, "up")
            _ip("link", "set", "lo", "up", netns=self.name)
            _ip("addr", "add", f"{self.ip}/{prefix}", "dev", "eth0", netns=self.name)
            _ip("link", "set", "eth0", "up", netns=self.name)
            _ip("route", "add", "default", "via", host_ip, netns=self.name)
        except Exception:
            self._remove()
            raise

    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        """argv inside the netns (`ip netns exec`); output captured as text unless told."""
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], **kw)

    def spawn(self, argv: list[str], log: Path, stdout: Path | None = None) -> subprocess.Popen:
        """A long-running argv inside the netns, as `harness.spawn` (stderr to `log`)."""
        return harness.spawn(["ip", "netns", "exec", self.name, *argv], log, stdout=stdout)

    # -- inside the netns ------------------------------------------------------------------

    def _netns_inode(self) -> int | None:
        try:
            return os.stat(f"/run/netns/{self.name}").st_ino
        except OSError:
            return None

    def processes(self) -> list[tuple[int, str]]:
        """Every process whose network namespace is this test host's."""
        ino = self._netns_inode()
        if ino is None:
            return []
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if os.stat(f"/proc/{pid}/ns/net").st_ino != ino:
                    continue
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            found.append((int(pid), cmd.strip()))
        return found

    def leaks(self, allow_links: tuple[str, ...] = ()) -> list[str]:
        """What is left inside the netns beyond what the Lan made (lo, eth0, the default route
        and the connected one): links (pod veths, bridges, vxlan devices) other than
        `allow_links`, routes, and processes. Agents still running are not counted."""
        if self._netns_inode() is None:
            return []
        agents = {a.proc.pid for a in self.agents if a.proc is not None}
        found = []
        for line in _ip("-o", "link", netns=self.name).stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name not in ("lo", "eth0", *allow_links):
                found.append(f"link {name} in {self.name}")
        for line in _ip("-4", "route", netns=self.name).stdout.splitlines():
            words = line.split()
            if not words or words[0] == "default" or "dev" not in words:
                continue
            dev = words[words.index("dev") + 1]
            if dev != "eth0" and dev not in allow_links:
                found.append(f"route {line.strip()} in {self.name}")
        found += [f"process {pid} in {self.name}: {cmd[:120]}"
                  for pid, cmd in self.processes() if pid not in agents]
        return found

    def forward_loopback(self, port: int) -> None:
        """127.0.0.1:port inside the netns forwards to 127.0.0.1:port on the host."""
        sock = _listen_in_netns(f"/run/netns/{self.name}", port)
        self._listeners.append(sock)
        threading.Thread(target=_accept_loop, args=(sock, port), daemon=True).start()

    def close(self) -> None:
        """Stops its agents, records in `found_at_close` what they and the netns still held
        (pods a test did not delete), cleans it by force, then removes the netns and veth."""
        if self.closed:
            return
        errors = []
        for agent in self.agents:
            agent.stop()
        self.found_at_close = self.leaks(allow_links=("peapod0",)) + [
            x for a in self.agents for x in a.leaks()]
        for agent in self.agents:
            try:
                agent.close()
            except Exception as e:
                errors.append(f"agent {agent.name}: {e}")
        for sock in self._listeners:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        # Whatever still runs in the netns was started by this test (its agents' children).
        for pid, _ in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._remove()
        self.closed = True
        if errors:
            raise RuntimeError("; ".join(errors))

    def _remove(self) -> None:
        _ip("link", "del", self.host_end, check=False)
        _ip("netns", "del", self.name, check=False)


def _listen_in_netns(netns_path: str, port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port made inside the netns: a thread of its own joins
    the netns (setns moves only the calling thread), makes the socket, and ends."""
    result: dict = {}

    def make() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(netns_path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(64)
            result["sock"] = s
        except Exception as e:
            result["error"] = e
        finally:
            os.close(fd)

    # The thread ends in the netns; it makes nothing else there.
    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


def _accept_loop(listener: socket.socket, port: int) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            conn.close()
            continue
        upstream.settimeout(None)
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            src.shutdown(socket.SHUT_RD)


# -- the agent ---------------------------------------------------------------------------

_HELP: dict[tuple[str, str], str] = {}


def _help(binary: Path, command: str) -> str:
    key = (str(binary), command)
    if key not in _HELP:
        _HELP[key] = subprocess.run([str(binary), command, "--help"], capture_output=True,
                                    text=True).stdout
    return _HELP[key]


def server_has_ipam(server: harness.Peapod) -> bool:
    """Whether the control plane allocates pod CIDRs (node IPAM: `--cluster-cidr`)."""
    return "--cluster-cidr" in _help(server.binary, "server")


def cgroup_dirs(root: str) -> list[str]:
    """The agent's cgroup root in every mounted hierarchy (v1 controllers, v2, hybrid)."""
    return sorted(set(glob.glob(f"/sys/fs/cgroup/*/{root}") + glob.glob(f"/sys/fs/cgroup/{root}")))


class JoinedAgent:
    """`ip netns exec H peapod agent` joining `server` over the Lan, with its own data dir
    and `--cgroup-root`. Joins with the server's `node-token` when the server writes one;
    else with the admin token, the CA file and an explicit `--pod-cidr` (no node IPAM)."""

    def __init__(self, workdir: Path, host: TestHost, server: harness.Peapod,
                 runtime: str = "crun", extra_args: list[str] | None = None):
        self.workdir = workdir
        self.host = host
        self.server = server
        self.runtime = runtime
        self.extra_args = list(extra_args or [])
        self.name = f"th-{host.id}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = workdir / "data"
        self.log = workdir / "agent.log"
        self.stdout = workdir / "agent.stdout"
        self.cgroup_root = f"peapod-{host.name}"
        self.proc: subprocess.Popen | None = None
        self.pod_cidr: str | None = None
        self.ready_seconds: float | None = None
        self.started_at: float | None = None
        self.resolv_conf = node_support.resolv_conf(workdir)
        host.agents.append(self)

    def argv(self) -> list[str]:
        pki = self.server.data_dir / "pki"
        node_token = self.server.data_dir / "node-token"
        if node_token.exists():
            auth = ["--token-file", str(node_token)]
        else:
            auth = ["--token-file", str(pki / "admin.token"), "--ca-file", str(pki / "ca.crt")]
        cluster = getattr(self.server, "cluster_cidr", None)
        net = []
        if cluster is not None:
            net += ["--cluster-cidr", cluster.cidr]
            if not server_has_ipam(self.server) and "--pod-cidr" not in self.extra_args:
                if self.pod_cidr is None:  # the same range across restarts
                    self.pod_cidr = cluster.next_node_cidr()
                net += ["--pod-cidr", self.pod_cidr]
        services = getattr(self.server, "services", None)
        dns = ["--cluster-dns", services.dns] if services is not None else []
        return [str(self.server.binary), "agent",
                "--server", f"https://{self.host.lan.gateway}:{self.server.port}", *auth,
                "--node-name", self.name, "--node-ip", self.host.ip,
                "--data-dir", str(self.data_dir), "--cgroup-root", self.cgroup_root,
                "--resolv-conf", str(self.resolv_conf), "--runtime", self.runtime,
                *net, *dns, *self.extra_args]

    def start(self, timeout: float = 90.0) -> "JoinedAgent":
        """Starts the agent under a new `ip netns exec` and waits for "peapod agent ready";
        `ready_seconds` is how long that took."""
        assert self.proc is None or self.proc.poll() is not None, "agent already running"
        self.stdout.write_bytes(b"")
        argv = self.argv()
        with open(self.log, "a") as f:
            f.write(f"--- start in {self.host.name}: {' '.join(argv)}\n")
        self.started_at = time.monotonic()
        self.proc = self.host.spawn(argv, self.log, stdout=self.stdout)
        deadline = self.started_at + timeout
        while AGENT_READY not in self.stdout.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode} before ready:\n"
                                   f"{harness.tail(self.log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent not ready after {timeout}s:\n{harness.tail(self.log)}")
            time.sleep(0.02)
        self.ready_seconds = time.monotonic() - self.started_at
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9, as a crash would (pods keep running)."""
        if self.running:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM and wait (pods keep running for the next start to re-adopt)."""
        harness.stop(self.proc)
        self.proc = None

    def leaks(self) -> list[str]:
        """What this agent's pods left on the machine: mounts under its data dir, pod cgroups
        under its cgroup root in every hierarchy, shim processes, runtime state, pod netns
        files. Empty when every pod is gone."""
        data = str(self.data_dir)
        found: list[str] = []
        with open("/proc/self/mountinfo") as f:
            found += [f"mount {line.split()[4]}" for line in f
                      if line.split()[4].startswith(data + "/")]
        for d in cgroup_dirs(self.cgroup_root):
            found += [f"cgroup {p}" for p in sorted(glob.glob(f"{d}/*")) if os.path.isdir(p)]
        for pid, cmd in _processes_naming(data):
            if "peapod-shim" in cmd or "pause" in cmd:
                found.append(f"process {pid}: {cmd[:120]}")
        state = self.data_dir / "run" / "runtime"
        if state.exists():
            found += [f"runtime state {p.name}" for p in state.iterdir() if p.is_dir()]
        netns_dir = self.data_dir / "run" / "netns"
        if netns_dir.exists():
            found += [f"netns {p}" for p in netns_dir.iterdir()]
        return found

    def wait_clean(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        left = self.leaks()
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = self.leaks()
        assert not left, f"agent {self.name} left behind:\n" + "\n".join(left)

    def close(self) -> None:
        """Stops the agent and removes by force whatever its pods left (a failed test's
        pods): the processes in its cgroups and its shims, mounts under its data dir, its
        runtime state and netns pins (`DATA/run`), and its cgroup root in every hierarchy.
        Idempotent."""
        self.stop()
        pids = set()
        for d in cgroup_dirs(self.cgroup_root):
            for procs in glob.glob(f"{d}/**/cgroup.procs", recursive=True):
                with contextlib.suppress(OSError):
                    pids |= {int(p) for p in Path(procs).read_text().split()}
        pids |= {pid for pid, cmd in _processes_naming(str(self.data_dir))}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        data = str(self.data_dir)
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith(data + "/")]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        # The runtime's state and the netns pins (plain files once unmounted) describe pods
        # that no longer exist; removed only when nothing is mounted under the data dir.
        with open("/proc/self/mountinfo") as f:
            if not any(line.split()[4].startswith(data + "/") for line in f):
                shutil.rmtree(self.data_dir / "run", ignore_errors=True)
        deadline = time.monotonic() + 10
        for d in cgroup_dirs(self.cgroup_root):
            for sub in sorted((p for p, _, _ in os.walk(d)), key=len, reverse=True):
                while True:
                    try:
                        os.rmdir(sub)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.05)


def _processes_naming(text: str) -> list[tuple[int, str]]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmd and " agent " not in f" {cmd} ":
            found.append((int(pid), cmd))
    return found
