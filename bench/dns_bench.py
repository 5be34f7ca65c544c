#!/usr/bin/env python3
"""peapod cluster DNS benchmark (issue 15): queries/s and p50/p99 latency of the node's DNS
answering from its cache.

  * loopback: `dns_load` (crates/dns/examples) runs the server in its own process on
    127.0.0.1 (a 2-thread runtime, as on a 2-core node) with 1,000 Services x 10 endpoints,
    and asks it over UDP;
  * from a pod: one node (bench/onenode.py: registry, `peapod server`, `peapod agent`), the
    Services `svc-<i>` (every 7th i below 1,000) in namespace `bench`, one busybox pod; then
    `dns_load` runs in that pod's network namespace (nsenter) against the node's DNS on the
    pod bridge's gateway, and against the kube-dns ClusterIP when the API server has that
    Service (through the node proxy).

Every question stays on this machine. The ClusterIP path needs this node's proxy table to be
the only one on the host claiming 10.43.0.10: another node's table (a test node running
meanwhile) may DNAT the pod's questions to that node's DNS, which answers NXDOMAIN for this
node's Services (counted as errors). Numbers are printed (and as `figure` lines), never
asserted. Aim: >= 20,000 queries/s, p99 <= 2 ms from the cache on 2 cores.

    cargo build --release -p dns --example dns_load
    python3 bench/dns_bench.py --bin target/debug/peapod --load target/release/examples/dns_load
"""

from __future__ import annotations

import argparse
import ipaddress
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import onenode  # noqa: E402

import kubernetes  # noqa: E402

NS = "bench"


def run_load(load: Path, extra: list[str], prefix: list[str] | None = None) -> int:
    argv = [*(prefix or []), str(load), *extra]
    return subprocess.run(argv).returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", type=Path, required=True, help="the peapod binary")
    ap.add_argument("--load", type=Path, required=True, help="the dns_load example binary")
    ap.add_argument("--runtime", default="crun")
    ap.add_argument("--seconds", default="5")
    ap.add_argument("--concurrency", default="32")
    ap.add_argument("--no-pod", action="store_true", help="loopback only")
    args = ap.parse_args()
    common = ["--seconds", args.seconds, "--concurrency", args.concurrency]

    rc = run_load(args.load, common)
    if rc != 0 or args.no_pod:
        return rc

    def cleanup(n: onenode.OneNode) -> None:
        kubernetes.client.CoreV1Api(n.api).delete_collection_namespaced_pod(
            NS, grace_period_seconds=0)

    with onenode.one_node(args.bin, args.runtime, "peapod-dns-bench-", cleanup) as n:
        core = kubernetes.client.CoreV1Api(n.api)
        core.create_namespace({"metadata": {"name": NS}})
        for i in range(0, 1000, 7):
            core.create_namespaced_service(NS, {
                "metadata": {"name": f"svc-{i}"},
                "spec": {"clusterIP": f"10.43.{i // 250 + 100}.{i % 250 + 2}",
                         "ports": [{"name": "http", "port": 80}]}})
        core.create_namespaced_pod(NS, {
            "metadata": {"name": "client"},
            "spec": {"containers": [{"name": "c", "image": n.image, "command": ["sleep", "3600"]}],
                     "terminationGracePeriodSeconds": 0}})
        deadline = time.monotonic() + 60
        while core.read_namespaced_pod("client", NS).status.phase != "Running":
            if time.monotonic() > deadline:
                print("the client pod never ran", file=sys.stderr)
                return 1
            time.sleep(0.2)
        pins = sorted((n.tmp / "agent" / "data" / "run" / "netns").iterdir())
        if len(pins) != 1:
            print(f"expected one pod network namespace, found {pins}", file=sys.stderr)
            return 1
        agent_cmd = Path(f"/proc/{n.agent.pid}/cmdline").read_bytes().split(b"\0")
        cidr = agent_cmd[agent_cmd.index(b"--pod-cidr") + 1].decode()
        gateway = str(ipaddress.ip_network(cidr)[1])
        nsenter = ["nsenter", f"--net={pins[0]}"]
        time.sleep(1)  # the node's watch sees the Services
        rc = run_load(args.load, [*common, "--target", f"{gateway}:53", "--label", "pod to gateway"],
                      nsenter)
        try:
            core.read_namespaced_service("kube-dns", "kube-system")
            rc |= run_load(args.load, [*common, "--target", "10.43.0.10:53",
                                       "--label", "pod to kube-dns ClusterIP"], nsenter)
        except kubernetes.client.ApiException:
            print("no kube-dns Service on this API server: ClusterIP path not measured")
    return rc


if __name__ == "__main__":
    sys.exit(main())
