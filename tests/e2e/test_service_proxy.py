"""The node's service proxy (kube-proxy's nftables mode, issue 15) on real pods and real kernel
rules: selector-less Services with hand-written EndpointSlices pointing at busybox httpd pods
that answer with their own name, reached from a client pod and from the host.

ClusterIP answers and spreads over both backends; the Service port maps onto the endpoint
port (80 → 8080); a Service without endpoints refuses at once; NodePort answers on the node's
address (on a veth interface the test creates: nftables proxies serve no localhost NodePorts, as upstream);
ClientIP affinity sticks; a pod reaches itself through its own Service (hairpin); the host
reaches ClusterIPs; a new endpoint takes traffic promptly; across a node restart the table is
the same and nothing is duplicated, traffic keeps flowing while the node is down, and
`peapod cleanup-network` removes the table."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
import urllib.request

import pytest

import harness
import node as node_support
from helpers import to_yaml, wait_until

TIMEOUT = 90
# Deleted before the pods at the end of each test (conftest.py `pod_ns`).
OWNERS = ("svc,endpointslices", "background")
SERVE = ("mkdir -p /www && echo $HOSTNAME > /www/index.html && "
         "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait")


def table(n) -> str:
    return node_support.proxy_table(n.node.bridge)


def get_json(n, *args: str) -> dict:
    return json.loads(n.kubectl("get", *args, "-o", "json").stdout)


def apply(n, ns: str, *objects: dict) -> None:
    n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(*objects))


def pod(n, ns: str, name: str, script: str) -> str:
    """Starts a busybox pod running `script`; its IP once Ready."""
    apply(n, ns, {"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": name, "labels": {"role": name}},
                  "spec": {"containers": [{"name": "c", "image": n.images.busybox,
                                           "command": ["sh", "-c", script]}],
                           "terminationGracePeriodSeconds": 1}})
    n.kubectl("wait", "-n", ns, f"pod/{name}", "--for=condition=Ready", f"--timeout={TIMEOUT}s",
              timeout=TIMEOUT + 10)
    return get_json(n, "pod", name, "-n", ns)["status"]["podIP"]


def backend(n, ns: str, name: str) -> str:
    return pod(n, ns, name, SERVE)


def client(n, ns: str) -> str:
    pod(n, ns, "client", "trap 'exit 0' TERM; sleep 3600 & wait")
    return "client"


def service(n, ns: str, name: str, port: int = 80, node_port: bool = False, **spec) -> dict:
    """A selector-less Service (its slices are ours); the object as stored. Its ClusterIP
    (and NodePort) are picked at random, so test clusters side by side on one host, which
    share the default service range, do not program the same address."""
    ports = {"name": "http", "port": port, "targetPort": 8080}
    if node_port:
        spec["type"] = "NodePort"
        ports["nodePort"] = 30000 + secrets.randbelow(2768)
    apply(n, ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                  "spec": {"ports": [ports], **spec,
                           "clusterIP": f"10.43.{secrets.randbelow(200) + 40}."
                                        f"{secrets.randbelow(250) + 2}"}})
    return get_json(n, "svc", name, "-n", ns)


def endpoint_slice(n, ns: str, svc: str, ips: list[str], port: int = 8080,
                   name: str | None = None) -> None:
    apply(n, ns, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                  "metadata": {"name": name or f"{svc}-1",
                               "labels": {"kubernetes.io/service-name": svc}},
                  "addressType": "IPv4",
                  "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                  "endpoints": [{"addresses": [ip], "conditions": {"ready": True},
                                 "nodeName": n.node.name} for ip in ips]})


def in_pod(n, ns: str, pod_name: str, script: str):
    return n.kubectl("exec", "-n", ns, pod_name, "--", "sh", "-c", script, check=False,
                     timeout=30)


def fetch(n, ns: str, pod_name: str, url: str) -> str | None:
    out = in_pod(n, ns, pod_name, f"timeout 5 wget -qO- {url}")
    return out.stdout.strip() if out.returncode == 0 else None


def host_get(url: str, timeout: float = 3) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode().strip()
    except OSError:
        return None


def test_cluster_ip_spreads_over_both_backends_with_port_mapping(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    ips = [backend(n, ns, "web-a"), backend(n, ns, "web-b")]
    cip = service(n, ns, "web")["spec"]["clusterIP"]
    endpoint_slice(n, ns, "web", ips)
    c = client(n, ns)
    # Port 80 on the ClusterIP reaches port 8080 on the pods.
    wait_until(lambda: fetch(n, ns, c, f"http://{cip}/") in ("web-a", "web-b"), timeout=30,
               what="the ClusterIP answering")
    seen = set()
    script = " ; ".join([f"timeout 5 wget -qO- http://{cip}/"] * 20)
    for _ in range(5):
        seen |= set(in_pod(n, ns, c, script).stdout.split())
        if seen == {"web-a", "web-b"}:
            break
    assert seen == {"web-a", "web-b"}, seen


def test_service_without_endpoints_refuses_at_once(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    ip = backend(n, ns, "web-a")
    cip = service(n, ns, "gone")["spec"]["clusterIP"]
    endpoint_slice(n, ns, "gone", [ip])
    c = client(n, ns)
    wait_until(lambda: fetch(n, ns, c, f"http://{cip}/") == "web-a", timeout=30,
               what="the ClusterIP answering")
    endpoint_slice(n, ns, "gone", [])

    def refused() -> str | None:
        out = in_pod(n, ns, c, f"time -p timeout 5 wget -qO- http://{cip}/ 2>&1; echo rc=$?")
        text = out.stdout + out.stderr
        return text if "Connection refused" in text else None
    text = wait_until(refused, timeout=10, what="the emptied Service refusing")
    real = float(re.search(r"real (\d+\.\d+)", text).group(1))
    assert real < 1.0, f"took {real}s to refuse:\n{text}"
    # From the host too.
    start = time.monotonic()
    assert host_get(f"http://{cip}/") is None
    assert time.monotonic() - start < 1.0


def test_nodeport_and_cluster_ip_from_the_host(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    ip = backend(n, ns, "web-a")
    svc = service(n, ns, "np", node_port=True)
    endpoint_slice(n, ns, "np", [ip])
    node_port = svc["spec"]["ports"][0]["nodePort"]
    cip = svc["spec"]["clusterIP"]
    wait_until(lambda: host_get(f"http://{n.node.node_ip}:{node_port}/") == "web-a", timeout=30,
               what="the NodePort on the node's address")
    wait_until(lambda: host_get(f"http://{cip}/") == "web-a", timeout=10,
               what="the ClusterIP from the host")
    # A NodePort Service without endpoints refuses on its NodePort too.
    endpoint_slice(n, ns, "np", [])
    wait_until(lambda: refused_from_host(n.node.node_ip, node_port), timeout=10,
               what="the NodePort refusing")


def refused_from_host(ip: str, port: int) -> bool:
    import socket
    try:
        socket.create_connection((ip, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def test_client_ip_affinity_sticks(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    ips = [backend(n, ns, "web-a"), backend(n, ns, "web-b")]
    cip = service(n, ns, "sticky", sessionAffinity="ClientIP")["spec"]["clusterIP"]
    endpoint_slice(n, ns, "sticky", ips)
    c = client(n, ns)
    wait_until(lambda: fetch(n, ns, c, f"http://{cip}/") in ("web-a", "web-b"), timeout=30,
               what="the ClusterIP answering")
    script = " ; ".join([f"timeout 5 wget -qO- http://{cip}/"] * 20)
    answers = in_pod(n, ns, c, script).stdout.split()
    assert len(answers) == 20 and len(set(answers)) == 1, answers


def test_a_pod_reaches_itself_through_its_service(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    ip = backend(n, ns, "web-a")
    cip = service(n, ns, "self")["spec"]["clusterIP"]
    endpoint_slice(n, ns, "self", [ip])
    wait_until(lambda: fetch(n, ns, "web-a", f"http://{cip}/") == "web-a", timeout=30,
               what="hairpin traffic")


def test_a_new_endpoint_takes_traffic_promptly(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    a, b = backend(n, ns, "web-a"), backend(n, ns, "web-b")
    cip = service(n, ns, "move")["spec"]["clusterIP"]
    endpoint_slice(n, ns, "move", [a])
    wait_until(lambda: host_get(f"http://{cip}/") == "web-a", timeout=30,
               what="the first endpoint")
    endpoint_slice(n, ns, "move", [b])
    start = time.monotonic()
    wait_until(lambda: host_get(f"http://{cip}/", timeout=0.5) == "web-b", timeout=10,
               interval=0.01, what="the new endpoint")
    # kubectl's apply returned before this; the proxy's part is a fraction of it.
    assert time.monotonic() - start < 2.0


def listing(name: str) -> list[str] | None:
    out = subprocess.run(["nft", "list", "table", "ip", name], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return sorted(t.strip() for t in re.split(r"[\n,{}]", out.stdout) if t.strip())


def duplicated_rules(name: str) -> list[str]:
    out = subprocess.run(["nft", "list", "table", "ip", name], capture_output=True, text=True)
    dups, chain, seen = [], None, set()
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith("chain "):
            chain, seen = line, set()
        elif chain and line and line != "}" and not line.startswith("type "):
            if line in seen:
                dups.append(f"{chain}: {line}")
            seen.add(line)
    return dups


def test_restart_keeps_the_table_and_cleanup_removes_it(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    a, b = backend(n, ns, "web-a"), backend(n, ns, "web-b")
    svc = service(n, ns, "kept", node_port=True)
    cip = svc["spec"]["clusterIP"]
    endpoint_slice(n, ns, "kept", [a, b])
    service(n, ns, "empty")
    wait_until(lambda: host_get(f"http://{cip}/") in ("web-a", "web-b"), timeout=30,
               what="the ClusterIP answering")
    name = table(n)
    before = listing(name)
    assert before and not duplicated_rules(name)

    n.node.server.stop()
    # The rules stay while the node is down: Services keep answering.
    assert listing(name) == before
    assert host_get(f"http://{cip}/") in ("web-a", "web-b")

    n.node.server.start(timeout=90)
    wait_until(lambda: "service proxy synced" in n.node.server.log.read_text(errors="replace")
               .rsplit("--- start:", 1)[-1], timeout=30, what="the restarted proxy's first sync")
    assert listing(name) == before
    assert not duplicated_rules(name)
    assert host_get(f"http://{cip}/") in ("web-a", "web-b")

    # cleanup-network: stopped node, then nothing of the table is left.
    n.node.server.stop()
    out = subprocess.run([str(harness.peapod_bin()), "cleanup-network", "--table", name],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert listing(name) is None
    # Twice is fine: nothing to remove.
    out = subprocess.run([str(harness.peapod_bin()), "cleanup-network", "--table", name],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    n.node.server.start(timeout=90)
    wait_until(lambda: listing(name) == before, timeout=30, what="the table rebuilt")
