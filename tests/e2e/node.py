"""Support for tests that run real pods: a `peapod up` node with its own pod CIDR and bridge,
and the leak check that proves a node gave everything back (processes, mounts, network
namespaces, veths, IP leases, cgroups, runtime state)."""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Iterator

import harness


def unique_network() -> tuple[str, str]:
    """A pod CIDR and bridge name no other test node on this machine uses."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    for _ in range(100):
        octet = 100 + secrets.randbelow(150)
        third = secrets.randbelow(250)
        prefix = f"10.{octet}.{third}."
        if prefix not in used:
            return f"{prefix}0/24", f"pp{secrets.token_hex(3)}"
    raise RuntimeError("no free pod CIDR found")


class ServiceRange:
    """A test cluster's own service range (`--service-cidr`, a /20 inside 10.1.0.0–10.99.255.255,
    apart from the pod CIDRs `unique_network` hands out): clusters side by side on one machine
    each program their ClusterIPs (`kubernetes` at `.1`, kube-dns at `.10`) into the host's
    nftables, and the same address in two tables would send one cluster's traffic to the
    other. `static_ip()` hands out addresses a test may request as `clusterIP`, one after
    the other from the range's statically allocated lower part (upstream keeps the lower
    256 addresses of a /20 for requests), so they never collide with dynamic ones."""

    def __init__(self):
        used = subprocess.run(["ip", "-o", "-4", "route"], capture_output=True, text=True).stdout
        used += subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
        for _ in range(100):
            second, third = 1 + secrets.randbelow(99), 16 * secrets.randbelow(16)
            if not any(f"10.{second}.{t}." in used for t in range(third, third + 16)):
                self.prefix = (second, third)
                self.cidr = f"10.{second}.{third}.0/20"
                self._next = 20
                return
        raise RuntimeError("no free service range found")

    def ip(self, offset: int) -> str:
        second, third = self.prefix
        return f"10.{second}.{third + offset // 256}.{offset % 256}"

    @property
    def kubernetes(self) -> str:
        return self.ip(1)

    @property
    def dns(self) -> str:
        return self.ip(10)

    def static_ip(self) -> str:
        self._next += 1
        if self._next >= 250:
            raise RuntimeError("the test asked for more static ClusterIPs than it may")
        return self.ip(self._next)

    def args(self) -> list[str]:
        return ["--service-cidr", self.cidr, "--cluster-dns", self.dns]


# What test nodes use as the host's resolver configuration (`--resolv-conf`): the cluster DNS
# forwards names outside the cluster to it, and pods with dnsPolicy Default copy it. Nothing
# listens on 127.0.0.1:53, so a forwarded query is refused at once and never leaves the
# machine (the host's own resolver is another host).
TEST_RESOLV_CONF = "search e2e.test\nnameserver 127.0.0.1\n"


def resolv_conf(workdir: Path) -> Path:
    path = workdir / "resolv.conf"
    path.write_text(TEST_RESOLV_CONF)
    return path


def cgroup_root(bridge: str) -> str:
    """The test node's own cgroup root (`--cgroup-root`), so that test runs side by side on
    one machine never count each other's pod cgroups as leaks."""
    return f"peapod-{bridge}"


def proxy_table(bridge: str) -> str:
    """The test node's own service-proxy table (`--proxy-table`, `table ip <name>`): nodes
    side by side on one machine would otherwise rebuild each other's."""
    return f"peapod-{bridge}"


@contextlib.contextmanager
def host_address(prefix: str) -> Iterator[str]:
    """A fresh address on an interface made for it (one end of a veth pair: the kernel here
    has no dummy links), for nodes whose Services must be reached on a node address that is
    not loopback (nftables proxies serve no localhost NodePorts, as upstream's); removed again
    on the way out."""
    link = f"{prefix}{secrets.token_hex(3)}"
    addr = f"198.19.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 2}"
    subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name", f"{link}p"],
                   check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", link], check=True)
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
        subprocess.run(["ip", "link", "set", f"{link}p", "up"], check=True)
        yield addr
    finally:
        subprocess.run(["ip", "link", "del", link], check=False)


class Node:
    """`peapod up`: control plane and node agent in one process."""

    def __init__(self, workdir: Path, runtime: str = "crun", extra_args: list[str] | None = None,
                 node_ip: str = "127.0.0.1"):
        self.workdir = workdir
        self.runtime = runtime
        self.node_ip = node_ip
        self.pod_cidr, self.bridge = unique_network()
        self.name = f"node-{secrets.token_hex(3)}"
        self.services = ServiceRange()
        args = ["--node-name", self.name, "--node-ip", node_ip, "--pod-cidr", self.pod_cidr,
                *self.services.args(),
                "--resolv-conf", str(resolv_conf(workdir)),
                "--cluster-cidr", self.pod_cidr,
                "--cni-bridge", self.bridge, "--cgroup-root", cgroup_root(self.bridge),
                "--proxy-table", proxy_table(self.bridge),
                "--runtime", runtime, "--kubelet-port", "0", *(extra_args or [])]
        self.server = harness.Peapod(workdir, mode="up", extra_args=args)

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir

    def start(self) -> "Node":
        self.server.start(timeout=90)
        return self

    def leaks(self) -> list[str]:
        """Everything the node's pods left behind; empty when the node is clean."""
        return leaks(self.data_dir, self.bridge)

    def wait_clean(self, timeout: float = 30.0) -> None:
        wait_clean(self.data_dir, self.bridge, timeout)

    def stop(self) -> None:
        self.server.stop()
        remove_network(self.pod_cidr, self.bridge)


class Agent:
    """`peapod agent` joining a running control plane, as its own process: with the server's
    join token (`DIR/node-token`) and nothing else, as a user would (`crates/bootstrap`). Its
    client certificate stays in its data dir, so a restart needs no token (`token_file = None`);
    `servers` lists more servers of the same cluster to reach through the agent's load
    balancer."""

    def __init__(self, workdir: Path, server: harness.Peapod, runtime: str = "crun",
                 services: ServiceRange | None = None,
                 servers: list[harness.Peapod] | None = None, pod_cidr_from_ipam: bool = False,
                 extra_args: list[str] | None = None):
        """`pod_cidr_from_ipam`: start without `--pod-cidr`, so the agent waits for the one
        node IPAM writes into its Node; the server's `--cluster-cidr` must then be
        `self.pod_cidr` (a /24 cut in /24s: the only subnet there is to hand out).
        `extra_args` are added to the agent's command line."""
        self.workdir = workdir
        self.pod_cidr_from_ipam = pod_cidr_from_ipam
        self.extra_args = list(extra_args or [])
        self.server = server
        # None: `self.server` alone (which a fixture may set after construction).
        self.servers = servers
        # The token file given (None: none); "node-token": the server's `DIR/node-token`.
        self.token_file: Path | str | None = "node-token"
        # The server's service range (`ServiceRange.args()`'s `--service-cidr` on it), so the
        # agent's pods get its kube-dns address.
        self.services = services
        self.runtime = runtime
        self.pod_cidr, self.bridge = unique_network()
        self.name = f"agent-{secrets.token_hex(3)}"
        self.data_dir = workdir / "agent-data"
        self.log = workdir / "agent.log"
        self.stdout = workdir / "agent.stdout"
        self.proc = None

    def argv(self) -> list[str]:
        servers = ",".join(f"https://127.0.0.1:{s.port}" for s in self.servers or [self.server])
        token_file = self.token_file
        if token_file == "node-token":
            token_file = self.server.data_dir / "node-token"
        token = ["--token-file", str(token_file)] if token_file else []
        return [str(self.server.binary), "agent", "--server", servers, *token,
             "--node-name", self.name, "--node-ip", "127.0.0.1",
             *([] if self.pod_cidr_from_ipam else ["--pod-cidr", self.pod_cidr]),
             "--cluster-cidr", self.pod_cidr, "--cni-bridge", self.bridge,
             "--cgroup-root", cgroup_root(self.bridge), "--proxy-table", proxy_table(self.bridge),
             "--runtime", self.runtime, "--kubelet-port", "0", "--data-dir", str(self.data_dir),
             "--resolv-conf", str(resolv_conf(self.workdir)),
             *(["--cluster-dns", self.services.dns] if self.services else []),
             *self.extra_args]

    def start(self, timeout: float = 60.0) -> "Agent":
        self.stdout.write_bytes(b"")
        self.proc = harness.spawn(self.argv(), self.log, stdout=self.stdout)
        deadline = time.monotonic() + timeout
        while "peapod agent ready" not in self.stdout.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent did not start:\n{harness.tail(self.log)}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, 9)
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        harness.stop(self.proc)
        self.proc = None
        remove_network(self.pod_cidr, self.bridge)


def leaks(data_dir: Path, bridge: str) -> list[str]:
    """Everything a node's pods left behind on the host; empty when the node is clean."""
    data = str(data_dir)
    found: list[str] = []
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if data in line.split()[4]]
    netns_dir = data_dir / "run" / "netns"
    if netns_dir.exists():
        found += [f"netns {p}" for p in netns_dir.iterdir()]
    leases = data_dir / "cni" / "networks"
    if leases.exists():
        for p in leases.rglob("*"):
            if p.is_file() and not p.name.startswith(("last_reserved_ip", "lock")):
                found.append(f"ip lease {p.name}")
    links = subprocess.run(["ip", "-o", "link", "show", "master", bridge],
                           capture_output=True, text=True).stdout
    found += [f"veth {line.split(':')[1].strip()}" for line in links.splitlines() if line]
    root = cgroup_root(bridge)
    for d in glob.glob(f"/sys/fs/cgroup/*/{root}/pod*") + glob.glob(f"/sys/fs/cgroup/{root}/pod*"):
        found.append(f"cgroup {d}")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if data in cmd and "peapod-shim" in cmd:
            found.append(f"process {pid}: {cmd[:120]}")
    state = data_dir / "run" / "runtime"
    if state.exists():
        found += [f"runtime state {p.name}" for p in state.iterdir() if p.is_dir()]
    return found


def wait_clean(data_dir: Path, bridge: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    left = leaks(data_dir, bridge)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = leaks(data_dir, bridge)
    assert not left, "node left behind:\n" + "\n".join(left)


def remove_network(pod_cidr: str, bridge: str, cluster_cidr: str | None = None) -> None:
    """What a node leaves on the host by design (its bridge, its masquerade rule, its empty
    cgroup root and its service-proxy table), removed when a test is done with the node."""
    subprocess.run(["ip", "link", "del", bridge], capture_output=True)
    subprocess.run(["nft", "delete", "table", "ip", proxy_table(bridge)], capture_output=True)
    root = cgroup_root(bridge)
    for d in glob.glob(f"/sys/fs/cgroup/*/{root}") + glob.glob(f"/sys/fs/cgroup/{root}"):
        try:
            os.rmdir(d)
        except OSError:
            pass
    subprocess.run(["iptables", "-w", "-t", "nat", "-D", "POSTROUTING", "-s", pod_cidr, "!", "-d",
                    cluster_cidr or pod_cidr, "-m", "comment", "--comment",
                    "peapod: masquerade pod traffic leaving the cluster", "-j", "MASQUERADE"],
                   capture_output=True)
