"""A highly available control plane: two `peapod server` on one 3-member etcd cluster with the
same `--etcd-prefix`. The scheduler and the controllers each run on one server only, elected
through the `kube-scheduler` and `kube-controller-manager` Leases in kube-system (client-go's
leader election); kill -9 of the leader hands both to the other server, whose scheduler binds
new pods; a leader paused past its lease steps down when it finds another holder; node
IPAM gives every node a distinct podCIDR whichever server it registered through.

The second server starts with an empty data dir: it adopts the cluster's CA, keys and
tokens from the datastore (`apiserver::bundle`), so the first server's kubeconfig works
against it.

Nodes are Node objects created through the API (the scheduler binds to them; nothing runs
the pods), so the test needs no network namespaces.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import harness
from conftest import KUBECTL_TIMEOUT, kubectl_env
from helpers import wait_until

LEASES = ("kube-scheduler", "kube-controller-manager")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def log_text(peapod: harness.Peapod) -> str:
    """The server's log without tracing's colour codes."""
    return ANSI.sub("", peapod.log.read_text(errors="replace"))
CLUSTER_CIDR = "10.42.0.0/22"


class Server:
    """One control-plane member and how to reach it with kubectl."""

    def __init__(self, peapod: harness.Peapod, name: str):
        self.peapod = peapod
        self.name = name

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = KUBECTL_TIMEOUT) -> subprocess.CompletedProcess:
        assert self.peapod.kubeconfig is not None
        return subprocess.run(
            [str(harness.kubectl_bin()), "--kubeconfig", str(self.peapod.kubeconfig), *args],
            input=input, capture_output=True, text=True, check=check, timeout=timeout,
            env=kubectl_env(self.peapod.workdir))

    def identity(self) -> str | None:
        """This server's leader-election identity, from its log."""
        m = re.search(r"attempting to acquire leader lease.*identity=(\S+)",
                      log_text(self.peapod))
        return m.group(1) if m else None

    def acquired(self) -> set[str]:
        log = log_text(self.peapod)
        return {name for name in LEASES
                if re.search(rf"successfully acquired lease.*lease=kube-system/{name}\b", log)}


@pytest.fixture
def ha(tmp_path):
    etcd = harness.EtcdCluster(tmp_path / "etcd")
    (tmp_path / "etcd").mkdir()
    servers: list[Server] = []
    try:
        etcd.start()
        # Four /24s, so a test can exhaust the range.
        args = ["--cluster-cidr", CLUSTER_CIDR]
        a = harness.Peapod(tmp_path / "a", backend="etcd", etcd=etcd, extra_args=args)
        (tmp_path / "a").mkdir()
        a.start()
        b = harness.Peapod(tmp_path / "b", backend="etcd", etcd=etcd, extra_args=args)
        (tmp_path / "b").mkdir()
        b.etcd_prefix = a.etcd_prefix
        servers = [Server(a, "a"), Server(b, "b")]
        b.start()
        yield servers
    finally:
        for s in servers:
            s.peapod.stop()
        etcd.stop()


def lease_holder(server: Server, name: str) -> str:
    return server.kubectl("get", "lease", name, "-n", "kube-system", "-o",
                          "jsonpath={.spec.holderIdentity}").stdout.strip()


def both_holders(server: Server) -> dict[str, str]:
    out = server.kubectl("get", "lease", "-n", "kube-system", "-o", "json", check=False)
    if out.returncode != 0:
        return {}
    items = json.loads(out.stdout)["items"]
    return {i["metadata"]["name"]: (i.get("spec") or {}).get("holderIdentity", "")
            for i in items if i["metadata"]["name"] in LEASES}


def node_manifest(name: str, pod_cidr: str | None = None) -> str:
    spec = {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]} if pod_cidr else {}
    resources = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    return json.dumps({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": spec,
        "status": {"capacity": resources, "allocatable": resources,
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                   "message": "kubelet is posting ready status"}]},
    })


def pod_manifest(name: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "busybox"}],
                 "tolerations": [{"operator": "Exists"}]},
    })


def pod_cidr_of(server: Server, node: str) -> str:
    return server.kubectl("get", "node", node, "-o", "jsonpath={.spec.podCIDR}").stdout.strip()


def wait_leaders(servers: list[Server]) -> dict[str, str]:
    """Both Leases held, each by one of the servers."""
    ids = {s.identity() for s in servers}

    def held():
        h = both_holders(servers[0])
        return h if len(h) == 2 and set(h.values()) <= ids else None
    return wait_until(held, timeout=30, interval=0.5, what="both leases held")


def test_exactly_one_holder_of_each_lease(ha):
    a, b = ha
    holders = wait_leaders(ha)
    ids = {a.identity(): a, b.identity(): b}
    assert None not in ids and len(ids) == 2, "each server logs its own identity"
    for name in LEASES:
        leader = ids[holders[name]]
        other = b if leader is a else a
        assert name in leader.acquired(), f"{leader.name} holds {name} but never acquired it"
        assert name not in other.acquired(), f"both servers acquired {name}"
        # Both read the same Lease (the same etcd prefix), and its spec is client-go's.
        spec = json.loads(other.kubectl("get", "lease", name, "-n", "kube-system",
                                        "-o", "json").stdout)["spec"]
        assert spec["holderIdentity"] == holders[name]
        assert spec["leaseDurationSeconds"] == 15
        assert spec["acquireTime"] and spec["renewTime"]
        assert holders[name].split("_", 1)[0], "identity is <hostname>_<uuid>"
    # The leader renews (every 2 s) and nobody takes over meanwhile.
    before = a.kubectl("get", "lease", "kube-scheduler", "-n", "kube-system", "-o",
                       "jsonpath={.spec.renewTime}").stdout
    wait_until(lambda: a.kubectl("get", "lease", "kube-scheduler", "-n", "kube-system", "-o",
                                 "jsonpath={.spec.renewTime}").stdout != before,
               timeout=10, interval=0.5, what="the scheduler lease renewed")
    assert both_holders(b) == holders
    # Upstream's event on the Lease.
    events = a.kubectl("get", "events", "-n", "kube-system", "-o", "json").stdout
    became = [e["message"] for e in json.loads(events)["items"]
              if e.get("reason") == "LeaderElection"]
    for name in LEASES:
        assert f"{holders[name]} became leader" in became, became


def test_kubeconfig_of_either_server_works(ha):
    a, b = ha
    a.kubectl("create", "namespace", "ha-either")
    b.kubectl("create", "configmap", "from-b", "-n", "ha-either", "--from-literal=k=v")
    assert a.kubectl("get", "configmap", "from-b", "-n", "ha-either", "-o",
                     "jsonpath={.data.k}").stdout == "v"
    assert "ha-either" in b.kubectl("get", "namespaces", "-o", "name").stdout


def test_ipam_gives_distinct_pod_cidrs_through_either_server(ha):
    a, b = ha
    a.kubectl("apply", "-f", "-", input=node_manifest("via-a"))
    b.kubectl("apply", "-f", "-", input=node_manifest("via-b"))
    a.kubectl("apply", "-f", "-", input=node_manifest("via-a-2"))
    cidrs = {}
    for n in ("via-a", "via-b", "via-a-2"):
        cidrs[n] = wait_until(lambda: pod_cidr_of(b, n), timeout=30, interval=0.3,
                              what=f"a podCIDR for {n}")
    assert len(set(cidrs.values())) == 3, cidrs
    for n, c in cidrs.items():
        assert c.startswith("10.42.") and c.endswith("/24"), (n, c)
        assert json.loads(a.kubectl("get", "node", n, "-o", "json").stdout)["spec"][
            "podCIDRs"] == [c]
    # A node registering a subnet that is already another's gets upstream's event.
    taken = cidrs["via-b"]
    b.kubectl("apply", "-f", "-", input=node_manifest("clash", taken))
    ev = wait_until(lambda: not_available_events(a, "clash"), timeout=30, interval=0.5,
                    what="CIDRNotAvailable event")[0]
    assert ev["type"] == "Warning"
    assert ev["message"] == "Node clash status is now: CIDRNotAvailable"
    assert ev["source"]["component"] == "cidrAllocator"
    assert json.loads(a.kubectl("get", "node", "clash", "-o", "json").stdout)["spec"][
        "podCIDRs"] == [taken], "a clash changes nothing"

    # The fourth /24 goes to the next node; a fifth finds the range exhausted ...
    b.kubectl("apply", "-f", "-", input=node_manifest("via-b-2"))
    fourth = wait_until(lambda: pod_cidr_of(a, "via-b-2"), timeout=30, interval=0.3,
                        what="the last free subnet handed out")
    assert fourth not in cidrs.values()
    a.kubectl("apply", "-f", "-", input=node_manifest("starved"))
    ev = wait_until(lambda: not_available_events(b, "starved"), timeout=30, interval=0.5,
                    what="CIDRNotAvailable for an exhausted range")[0]
    assert ev["message"] == "Node starved status is now: CIDRNotAvailable"
    assert pod_cidr_of(a, "starved") == ""
    # ... until a deleted node gives its subnet back.
    a.kubectl("delete", "node", "via-a")
    got = wait_until(lambda: pod_cidr_of(b, "starved"), timeout=30, interval=0.3,
                     what="the freed subnet handed to the waiting node")
    assert got == cidrs["via-a"]


def not_available_events(server: Server, node: str) -> list[dict]:
    out = server.kubectl("get", "events", "-n", "default", "--field-selector",
                         f"involvedObject.name={node}", "-o", "json").stdout
    return [e for e in json.loads(out)["items"] if e.get("reason") == "CIDRNotAvailable"]


def test_killing_the_leader_hands_over_scheduling(ha):
    a, b = ha
    holders = wait_leaders(ha)
    by_id = {a.identity(): a, b.identity(): b}
    leader = by_id[holders["kube-scheduler"]]
    survivor = b if leader is a else a
    survivor.kubectl("apply", "-f", "-", input=node_manifest("worker"))
    survivor.kubectl("create", "namespace", "ha-failover")
    # Scheduling works before the kill.
    survivor.kubectl("apply", "-n", "ha-failover", "-f", "-", input=pod_manifest("before"))
    wait_until(lambda: survivor.kubectl("get", "pod", "before", "-n", "ha-failover", "-o",
                                        "jsonpath={.spec.nodeName}").stdout,
               timeout=30, interval=0.3, what="the first pod bound")

    leader.peapod.kill()
    killed = time.monotonic()
    survivor.kubectl("apply", "-n", "ha-failover", "-f", "-", input=pod_manifest("after"))
    wait_until(lambda: survivor.kubectl("get", "pod", "after", "-n", "ha-failover", "-o",
                                        "jsonpath={.spec.nodeName}").stdout == "worker",
               timeout=30, interval=0.2, what="the new pod bound by the surviving scheduler")
    print(f"failover: the new pod was bound {time.monotonic() - killed:.1f} s after kill -9")
    me = survivor.identity()
    wait_until(lambda: both_holders(survivor) == {n: me for n in LEASES}, timeout=30,
               interval=0.5, what="the survivor holding both leases")
    assert set(LEASES) <= survivor.acquired()
    transitions = survivor.kubectl("get", "lease", "kube-scheduler", "-n", "kube-system", "-o",
                                   "jsonpath={.spec.leaseTransitions}").stdout
    assert int(transitions) >= 1
    # The survivor's controllers run too: node IPAM serves a node registered now.
    survivor.kubectl("apply", "-f", "-", input=node_manifest("late"))
    wait_until(lambda: pod_cidr_of(survivor, "late"), timeout=30, interval=0.3,
               what="a podCIDR from the new controller-manager leader")


def test_a_paused_leader_steps_down_when_it_finds_another_holder(ha):
    """SIGSTOP the scheduler's leader past its lease: the other server takes over; the old
    leader, resumed, finds another holder and stops its scheduler (back to campaigning)
    instead of running a second one."""
    a, b = ha
    holders = wait_leaders(ha)
    by_id = {a.identity(): a, b.identity(): b}
    leader = by_id[holders["kube-scheduler"]]
    other = b if leader is a else a
    assert leader.peapod.proc is not None
    os.kill(leader.peapod.proc.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: lease_holder(other, "kube-scheduler") == other.identity(),
                   timeout=40, interval=0.5, what="the other server taking the lease over")
    finally:
        os.kill(leader.peapod.proc.pid, signal.SIGCONT)
    wait_until(lambda: re.search(r"leaderelection lost.*lease=kube-system/kube-scheduler",
                                 log_text(leader.peapod)),
               timeout=30, interval=0.5, what="the resumed leader stepping down")
    # It campaigns again, and waits: the lease stays with the other server.
    wait_until(lambda: len(re.findall(
        r"attempting to acquire leader lease.*lease=kube-system/kube-scheduler",
        log_text(leader.peapod))) >= 2, timeout=10, interval=0.5, what="campaigning again")
    assert lease_holder(leader, "kube-scheduler") == other.identity()
    events = json.loads(other.kubectl("get", "events", "-n", "kube-system", "-o",
                                      "json").stdout)["items"]
    stopped = [e["message"] for e in events if e.get("reason") == "LeaderElection"]
    assert f"{leader.identity()} stopped leading" in stopped, stopped
