#!/usr/bin/env python3
"""peapod Service benchmark (issue 15): how fast a Service change reaches the kernel, and
what the node proxy costs a connection.

Starts one node on loopback (bench/onenode.py: registry, `peapod server`, `peapod agent`),
runs two busybox httpd pods that answer with their own name, then measures from the host:

  * programming latency: a selector-less Service's EndpointSlice is rewritten to point at
    the other pod; the time from the API's answer to the first connection through the
    ClusterIP that reaches the new pod (connections retried back to back), p50/p99;
  * ready-to-traffic: a Service with a selector and no pod; a matching pod is created; the
    time from the pod's Ready (seen on a watch) to the first connection through the
    ClusterIP that reaches it (the EndpointSlice controller plus the proxy), p50/p99;
  * connection rate: sequential HTTP GETs (a new TCP connection each) straight to the pod IP
    and through the ClusterIP in the same run; the ratio is the proxy's cost.

Numbers are printed (and as `figure` lines), never asserted. Aim: a new endpoint takes
traffic <= 100 ms after the pod is Ready.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402
import onenode  # noqa: E402
from pod_startup import pct  # noqa: E402

import kubernetes  # noqa: E402

NS = "bench-svc"
SERVE = ("mkdir -p /www && echo $HOSTNAME > /www/index.html && "
         "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait")


def get(ip: str, port: int, timeout: float = 0.5) -> str | None:
    """One HTTP/1.0 GET on a new connection; the body, or None when it failed."""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    return body.decode(errors="replace").strip() if head.startswith(b"HTTP/1") else None


def until_answer(ip: str, port: int, want: str, timeout: float = 10.0) -> float | None:
    """Connects back to back until `want` answers; the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get(ip, port, timeout=0.2) == want:
            return time.monotonic()
    return None


def pod(name: str, image: str, labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "web", "image": image, "command": ["sh", "-c", SERVE],
                                     "ports": [{"containerPort": 8080}],
                                     "readinessProbe": {"tcpSocket": {"port": 8080},
                                                        "periodSeconds": 1}}],
                     "terminationGracePeriodSeconds": 1}}


class ReadyWatch:
    """When each pod of the namespace was first seen Ready on a watch."""

    def __init__(self, core, ns: str):
        self.ready: dict[str, float] = {}
        self.cond = threading.Condition()
        self.w = kubernetes.watch.Watch()
        threading.Thread(target=self._run, args=(core, ns), daemon=True).start()

    def _run(self, core, ns):
        try:
            for ev in self.w.stream(core.list_namespaced_pod, ns, timeout_seconds=3600):
                p = ev["object"]
                conds = {c.type: c.status for c in (p.status.conditions or [])}
                if conds.get("Ready") == "True":
                    with self.cond:
                        self.ready.setdefault(p.metadata.name, time.monotonic())
                        self.cond.notify_all()
        except Exception:  # noqa: BLE001 - the server stopping ends the stream
            pass

    def wait(self, name: str, timeout: float = 120.0) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: name in self.ready, timeout=timeout):
                raise RuntimeError(f"{name} not Ready within {timeout}s")
            return self.ready[name]


def slice_body(name: str, svc: str, ip: str) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
            "ports": [{"name": "", "port": 8080, "protocol": "TCP"}]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", type=Path, required=True)
    ap.add_argument("--runtime", default="crun")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=300)
    args = ap.parse_args()

    def cleanup(n: onenode.OneNode) -> None:
        core = kubernetes.client.CoreV1Api(n.api)
        core.delete_collection_namespaced_pod(NS, grace_period_seconds=0)

    with onenode.one_node(args.bin, args.runtime, "peapod-svc-bench-", cleanup) as n:
        core = kubernetes.client.CoreV1Api(n.api)
        disco = kubernetes.client.DiscoveryV1Api(n.api)
        core.create_namespace({"metadata": {"name": NS}})
        watch = ReadyWatch(core, NS)
        for name in ("a", "b"):
            core.create_namespaced_pod(NS, pod(name, n.image, {"bench": name}))
        ips = {}
        for name in ("a", "b"):
            watch.wait(name)
            ips[name] = core.read_namespaced_pod(name, NS).status.pod_ip

        # Programming latency: the slice flips between the two pods.
        svc = core.create_namespaced_service(NS, {
            "metadata": {"name": "flip"}, "spec": {"ports": [{"port": 80, "targetPort": 8080}]}})
        cip = svc.spec.cluster_ip
        disco.create_namespaced_endpoint_slice(NS, slice_body("flip-1", "flip", ips["a"]))
        if until_answer(cip, 80, "a", timeout=30) is None:
            print("the ClusterIP never reached pod a", file=sys.stderr)
            return 1
        lat = []
        for i in range(args.rounds):
            target = "b" if i % 2 == 0 else "a"
            body = slice_body("flip-1", "flip", ips[target])
            disco.replace_namespaced_endpoint_slice("flip-1", NS, {
                **body, "metadata": {**body["metadata"],
                                     "resourceVersion": disco.read_namespaced_endpoint_slice(
                                         "flip-1", NS).metadata.resource_version}})
            t0 = time.monotonic()
            t1 = until_answer(cip, 80, target)
            if t1 is not None:
                lat.append((t1 - t0) * 1000)
        print(f"slice change -> traffic (ms): p50 {pct(lat, 50):.1f}  p99 {pct(lat, 99):.1f}"
              f"  ({len(lat)}/{args.rounds})")
        figures.emit("service/slice change to traffic/p50_ms", pct(lat, 50), "lower")
        figures.emit("service/slice change to traffic/p99_ms", pct(lat, 99), "lower")

        # Ready to traffic: the EndpointSlice controller and the proxy together.
        svc = core.create_namespaced_service(NS, {
            "metadata": {"name": "sel"},
            "spec": {"selector": {"bench": "sel"}, "ports": [{"port": 80, "targetPort": 8080}]}})
        cip = svc.spec.cluster_ip
        ready_lat = []
        for i in range(max(3, args.rounds // 4)):
            name = f"sel-{i}"
            core.create_namespaced_pod(NS, pod(name, n.image, {"bench": "sel"}))
            t_ready = watch.wait(name)
            t1 = until_answer(cip, 80, name)
            if t1 is not None:
                ready_lat.append((t1 - t_ready) * 1000)
            core.delete_namespaced_pod(name, NS, grace_period_seconds=0)
        print(f"pod Ready -> traffic (ms): p50 {pct(ready_lat, 50):.1f}  "
              f"p99 {pct(ready_lat, 99):.1f}")
        figures.emit("service/pod ready to traffic/p50_ms", pct(ready_lat, 50), "lower")
        figures.emit("service/pod ready to traffic/p99_ms", pct(ready_lat, 99), "lower")

        # Connection rate, straight and through the proxy, in the same run.
        rates = {}
        for label, (ip, port) in (("pod IP", (ips["a"], 8080)), ("ClusterIP", (cip_flip(core), 80))):
            ok, t0 = 0, time.monotonic()
            for _ in range(args.connections):
                ok += get(ip, port, timeout=2) is not None
            rates[label] = ok / (time.monotonic() - t0)
            print(f"{label:>9}: {rates[label]:.0f} connections/s ({ok}/{args.connections} ok)")
        figures.emit("service/connections per s/pod IP", rates["pod IP"], "higher")
        figures.emit("service/connections per s/ClusterIP", rates["ClusterIP"], "higher")
    return 0


def cip_flip(core) -> str:
    return core.read_namespaced_service("flip", NS).spec.cluster_ip


if __name__ == "__main__":
    sys.exit(main())
