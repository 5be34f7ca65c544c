#!/usr/bin/env python3
"""peapod pod network benchmark: pod-to-pod TCP across nodes vs on one node, host-gw and vxlan
side by side.

For each backend (`--pod-network host-gw`, then `--pod-network vxlan`) it starts its own
pieces and stops them by PID: a registry with the busybox test image, a `peapod server` on the
host, and two agents on test hosts of one bridged Lan (tests/e2e/testhost.py), so the two
backends cross the same wire and differ only in encapsulation. Pods: a server pod and a
client on node A, a client on node B. The load runs in the pods' network namespaces (the pod
addresses are source and destination; `nsenter --net` into the netns the agent pinned for the
pod, running the host's Python as the load generator):

  * throughput: one TCP stream, 256 KiB writes for 2 s into a sink, per round (MB/s);
  * request/response: 64-byte ping-pong on one connection (TCP_RR), latency per request;
  * connect + HTTP GET of a 1 KiB file from busybox httpd in the server pod, a new
    connection per request (TCP_CRR), latency per request.

Same-node = client A -> server (both on A, through the pod bridge); cross-node = client B ->
server, the rounds alternating between the two. Prints p50/p90/p99 and the cross/same
ratios, with `figure` lines; asserts nothing.
Every address is inside the Lan's namespaces or on its host bridge.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402
import harness  # noqa: E402
import images  # noqa: E402
import node as node_support  # noqa: E402
import testhost  # noqa: E402

import kubernetes  # noqa: E402

# Runs in the server pod's netns: a sink on 5001, an echo on 5002 (one thread per client).
SERVER = r"""
import socket, threading
def serve(port, handle):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()
def sink(c):
    buf = bytearray(1 << 18)
    while c.recv_into(buf): pass
    c.close()
def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(64)
        if not d: break
        c.sendall(d)
    c.close()
threading.Thread(target=serve, args=(5001, sink), daemon=True).start()
print("serving", flush=True)
serve(5002, echo)
"""

# Runs in a client pod's netns: prints one JSON object.
CLIENT = r"""
import json, socket, sys, time
ip, streams, seconds, rr, crr = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
out = {"mbps": [], "rr_us": [], "crr_us": []}
buf = memoryview(bytes(1 << 18))
for _ in range(streams):
    s = socket.create_connection((ip, 5001)); sent = 0
    t0 = time.perf_counter(); end = t0 + seconds
    while time.perf_counter() < end:
        s.sendall(buf); sent += len(buf)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)  # the sink closes once it has read everything
    out["mbps"].append(sent / (time.perf_counter() - t0) / 1e6)
    s.close()
s = socket.create_connection((ip, 5002)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg = b"x" * 64
for i in range(rr + 50):
    t0 = time.perf_counter(); s.sendall(msg); got = 0
    while got < 64: got += len(s.recv(64 - got))
    if i >= 50: out["rr_us"].append((time.perf_counter() - t0) * 1e6)
s.close()
req = ("GET /small HTTP/1.0\r\nHost: %s\r\n\r\n" % ip).encode()
for i in range(crr + 10):
    t0 = time.perf_counter()
    c = socket.create_connection((ip, 80)); c.sendall(req); body = b""
    while True:
        d = c.recv(65536)
        if not d: break
        body += d
    c.close()
    assert b" 200 " in body.split(b"\r\n")[0], body[:100]
    if i >= 10: out["crr_us"].append((time.perf_counter() - t0) * 1e6)
print(json.dumps(out))
"""

HTTPD = ("mkdir -p /www && head -c 1024 /dev/zero > /www/small && "
         "exec httpd -f -p 80 -h /www")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))]


def pod(name: str, node: str, image: str, command: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": image,
                                     "command": ["sh", "-c", command]}]}}


def wait_ips(core, ns: str, names: list[str], timeout: float = 120) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        ips = {}
        for n in names:
            p = core.read_namespaced_pod(n, ns, _request_timeout=5)
            ready = any(c.type == "Ready" and c.status == "True"
                        for c in (p.status.conditions or []))
            if ready and p.status.pod_ip:
                ips[n] = p.status.pod_ip
        if len(ips) == len(names):
            return ips
        if time.monotonic() > deadline:
            raise RuntimeError(f"pods not running after {timeout}s: have {ips}")
        time.sleep(0.2)


def pod_netns(agent: testhost.JoinedAgent, ip: str) -> str:
    """The netns file the agent pinned for the pod holding `ip`."""
    for f in (agent.data_dir / "run" / "netns").iterdir():
        out = subprocess.run(["nsenter", f"--net={f}", "ip", "-o", "-4", "addr"],
                             capture_output=True, text=True).stdout
        if f" {ip}/" in out:
            return str(f)
    raise RuntimeError(f"no pod netns of {agent.name} holds {ip}")


def run_backend(backend: str, args, work: Path, registry_host: str) -> dict[str, dict]:
    lan = testhost.Lan()
    lan.forward_loopback(int(registry_host.rsplit(":", 1)[1]))
    services = node_support.ServiceRange()
    server = harness.Peapod(work / "server", binary=args.bin, listen_host="0.0.0.0",
                            extra_args=["--service-cidr", services.cidr,
                                        "--advertise-address", lan.gateway])
    server.services, server.cluster_cidr = services, testhost.ClusterCidr()
    if testhost.server_has_ipam(server):
        server.extra_args += ["--cluster-cidr", server.cluster_cidr.cidr]
    sink = None
    results: dict[str, dict] = {}
    try:
        server.start()
        agents = [testhost.JoinedAgent(work / f"agent-{i}", lan.add_host(), server,
                                       extra_args=["--pod-network", backend]).start()
                  for i in range(2)]
        api = kubernetes.config.new_client_from_config(config_file=str(server.kubeconfig))
        core = kubernetes.client.CoreV1Api(api)
        ns = "bench"
        core.create_namespace({"metadata": {"name": ns}})
        deadline = time.monotonic() + 30
        while not core.list_namespaced_service_account(ns).items:
            if time.monotonic() > deadline:
                raise RuntimeError("no default serviceaccount")
            time.sleep(0.1)
        image = f"{registry_host}/bench/busybox:1.0"
        sleep = "trap 'exit 0' TERM; sleep 3600 & wait"
        for name, agent, command in (("srv", agents[0], HTTPD), ("cli-same", agents[0], sleep),
                                     ("cli-cross", agents[1], sleep)):
            core.create_namespaced_pod(ns, pod(name, agent.name, image, command))
        ips = wait_ips(core, ns, ["srv", "cli-same", "cli-cross"])
        srv_ns = pod_netns(agents[0], ips["srv"])
        sink = subprocess.Popen(["nsenter", f"--net={srv_ns}", sys.executable, "-c", SERVER],
                                stdout=subprocess.PIPE, text=True)
        if sink.stdout.readline().strip() != "serving":
            raise RuntimeError("the sink did not start")
        # (not /sys: nsenter --net keeps the host's sysfs)
        link = subprocess.run(["nsenter", f"--net={srv_ns}", "ip", "-j", "link", "show", "eth0"],
                              capture_output=True, text=True).stdout
        mtu = json.loads(link)[0]["mtu"]
        # Rounds alternate between the paths, so a busy moment on the machine falls on both.
        paths = (("same-node", "cli-same", agents[0]), ("cross-node", "cli-cross", agents[1]))
        netns = {path: pod_netns(agent, ips[client]) for path, client, agent in paths}
        for path, _, _ in paths:
            results[path] = {"mbps": [], "rr_us": [], "crr_us": []}
        for _ in range(args.streams):
            for path, _, _ in paths:
                cp = subprocess.run(["nsenter", f"--net={netns[path]}", sys.executable, "-c",
                                     CLIENT, ips["srv"], "1", str(args.seconds),
                                     str(args.rr // args.streams),
                                     str(args.crr // args.streams)],
                                    capture_output=True, text=True, timeout=600)
                if cp.returncode != 0:
                    raise RuntimeError(f"client failed: {cp.stderr}")
                for k, v in json.loads(cp.stdout).items():
                    results[path][k] += v
        results["mtu"] = mtu
    finally:
        if sink is not None:
            sink.kill()
            sink.wait()
        lan.close()
        server.stop()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", type=Path, default=harness.peapod_bin())
    ap.add_argument("--streams", type=int, default=8, help="rounds (one stream each) per path")
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds per throughput run")
    ap.add_argument("--rr", type=int, default=2000, help="request/response round trips")
    ap.add_argument("--crr", type=int, default=300, help="connect + HTTP GET requests")
    args = ap.parse_args()
    all_results = {}
    with tempfile.TemporaryDirectory(prefix="podnet-bench-") as tmp:
        work = Path(tmp)
        reg = images.start_registry(work / "registry")
        try:
            images.push(reg.host_port, "bench/busybox", "1.0", images.busybox_image())
            for backend in ("host-gw", "vxlan"):
                all_results[backend] = run_backend(backend, args, work / backend, reg.host_port)
        finally:
            reg.stop()
    print("pod-to-pod TCP, load in the pods' network namespaces "
          f"({args.streams} x {args.seconds:g} s streams, {args.rr} RR, {args.crr} CRR)")
    print(f"{'backend':8} {'path':11} {'MB/s p50':>9} {'min':>7} {'max':>7}   "
          f"{'RR p50':>7} {'p90':>6} {'p99':>6} us   {'CRR p50':>8} {'p90':>6} {'p99':>6} us")
    for backend, res in all_results.items():
        for path in ("same-node", "cross-node"):
            r = res[path]
            mb, rr, crr = r["mbps"], r["rr_us"], r["crr_us"]
            print(f"{backend:8} {path:11} {pct(mb, 50):9.0f} {min(mb):7.0f} {max(mb):7.0f}   "
                  f"{pct(rr, 50):7.0f} {pct(rr, 90):6.0f} {pct(rr, 99):6.0f}      "
                  f"{pct(crr, 50):8.0f} {pct(crr, 90):6.0f} {pct(crr, 99):6.0f}")
            key = f"podnet/{backend}/{path}"
            figures.emit(f"{key}/throughput_p50_MBps", pct(mb, 50), "higher")
            figures.emit(f"{key}/rr_p50_us", pct(rr, 50), "lower")
            figures.emit(f"{key}/rr_p99_us", pct(rr, 99), "lower")
            figures.emit(f"{key}/crr_p50_us", pct(crr, 50), "lower")
        same, cross = res["same-node"], res["cross-node"]
        ratio = pct(cross["mbps"], 50) / pct(same["mbps"], 50)
        print(f"{backend:8} pod MTU {res['mtu']}; cross/same throughput {ratio:.0%}, "
              f"RR p50 +{pct(cross['rr_us'], 50) - pct(same['rr_us'], 50):.0f} us")
        figures.emit(f"podnet/{backend}/cross_over_same_throughput_pct", ratio * 100, "higher")


if __name__ == "__main__":
    main()
