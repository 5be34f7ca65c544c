"""Cluster DNS (issue 15) on real pods: every node answers DNS on its pod bridge's gateway
(`crates/dns`, node-local), as CoreDNS's kubernetes plugin does, from a watch-fed cache;
pods reach it at the `kube-dns` ClusterIP through the node proxy. Asked from a client pod
with busybox `nslookup`: a Service's FQDN, its short name through the search path, headless
Services and StatefulSet-style `hostname.subdomain` names (hand-written EndpointSlices), SRV,
PTR, ExternalName CNAME, NXDOMAIN at once, and a fast failure for names outside the cluster
(the node's `--resolv-conf` names 127.0.0.1, where nothing listens: nothing leaves the
machine). The node publishes its own `kube-dns-<node>` EndpointSlice."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import socket
import struct
import subprocess
import time

import pytest

from helpers import to_yaml, wait_until

TIMEOUT = 90
CLUSTER_DNS = "10.43.0.10"


def get_json(n, *args: str) -> dict:
    return json.loads(n.kubectl("get", *args, "-o", "json").stdout)


def apply(n, ns: str, *objects: dict) -> None:
    n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(*objects))


@pytest.fixture(autouse=True)
def services_served(request):
    """Skips while the API server does not serve Services (issue 15's kinds land apart)."""
    which = next(f for f in ("crun_node", "split") if f in request.fixturenames)
    n = request.getfixturevalue(which)
    if n.kubectl("get", "services", "-A", check=False).returncode != 0:
        pytest.skip("this API server does not serve Services yet")


def gateway(n) -> str:
    """The node's DNS server: its pod bridge's gateway, the pod CIDR's first address."""
    return str(ipaddress.ip_network(n.node.pod_cidr)[1])


def client_pod(n, ns: str, name: str = "client") -> str:
    apply(n, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                  "spec": {"containers": [{"name": "c", "image": n.images.busybox,
                                           "command": ["sh", "-c",
                                                       "trap 'exit 0' TERM; sleep 3600 & wait"]}],
                           "terminationGracePeriodSeconds": 1}})
    n.kubectl("wait", "-n", ns, f"pod/{name}", "--for=condition=Ready", f"--timeout={TIMEOUT}s",
              timeout=TIMEOUT + 10)
    return name


def nslookup(n, ns: str, pod: str, *args: str):
    """busybox nslookup in the pod; the completed process (stdout, returncode)."""
    return n.kubectl("exec", "-n", ns, pod, "--", "nslookup", *args, check=False, timeout=30)


def addresses(out: str, server: str) -> list[str]:
    return sorted(set(re.findall(r"Address: (\d+\.\d+\.\d+\.\d+)\s*$", out, re.M)) - {server})


def service(name: str, ports: list[dict] | None = None, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {**({"ports": ports} if ports else {}), **spec}}


def endpoint_slice(name: str, service_name: str, endpoints: list[tuple[str, str | None, bool]],
                   ports: list[dict]) -> dict:
    """A hand-written slice (no selector on its Service: the controller leaves it alone)."""
    eps = []
    for ip, hostname, ready in endpoints:
        ep = {"addresses": [ip], "conditions": {"ready": ready}}
        if hostname:
            ep["hostname"] = hostname
        eps.append(ep)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "endpoints": eps, "ports": ports}


def test_service_names_answer_from_the_node(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    gw = gateway(n)
    # A ClusterIP of our choosing (inside the service range), so the answer is known.
    wanted_ip = f"10.43.{secrets.randbelow(200) + 50}.{secrets.randbelow(250) + 2}"
    apply(n, ns,
          service("web", [{"name": "http", "port": 80, "targetPort": 8080}],
                  clusterIP=wanted_ip),
          service("hl", [{"name": "web", "port": 80}], clusterIP="None"),
          endpoint_slice("hl-1", "hl", [("198.51.100.7", "web-0", True),
                                         ("198.51.100.8", "web-1", True),
                                         ("198.51.100.9", None, True),
                                         ("198.51.100.10", "web-3", False)],
                         [{"name": "web", "port": 80, "protocol": "TCP"}]),
          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
           "spec": {"type": "ExternalName", "externalName": "db.example.e2e.test"}})
    client = client_pod(n, ns)
    ip = get_json(n, "svc", "web", "-n", ns)["spec"]["clusterIP"]
    assert ip == wanted_ip
    fqdn = f"web.{ns}.svc.cluster.local"

    # A Service's FQDN: its ClusterIP (once the node's watch has seen it).
    wait_until(lambda: addresses(nslookup(n, ns, client, fqdn, gw).stdout, gw) == [ip],
               timeout=30, what=f"{fqdn} to resolve to {ip}")
    # Case does not matter.
    assert addresses(nslookup(n, ns, client, fqdn.upper(), gw).stdout, gw) == [ip]

    # Headless: the ready endpoints; StatefulSet-style names; dashed addresses.
    hl = f"hl.{ns}.svc.cluster.local"
    wait_until(lambda: addresses(nslookup(n, ns, client, hl, gw).stdout, gw)
               == ["198.51.100.7", "198.51.100.8", "198.51.100.9"],
               timeout=30, what="the headless name to give the ready endpoints")
    assert addresses(nslookup(n, ns, client, f"web-0.{hl}", gw).stdout, gw) == ["198.51.100.7"]
    assert addresses(nslookup(n, ns, client, f"198-51-100-9.{hl}", gw).stdout, gw) == [
        "198.51.100.9"]
    unready = nslookup(n, ns, client, f"web-3.{hl}", gw)
    assert "NXDOMAIN" in unready.stdout + unready.stderr, unready.stdout

    # SRV: a ClusterIP Service's named port, and one record per headless endpoint.
    srv = nslookup(n, ns, client, "-type=srv", f"_http._tcp.{fqdn}", gw).stdout
    assert re.search(rf"service = 0 100 80 {re.escape(fqdn)}", srv), srv
    srv = nslookup(n, ns, client, "-type=srv", f"_web._tcp.{hl}", gw).stdout
    targets = sorted(re.findall(r"service = 0 33 80 (\S+)", srv))
    assert targets == sorted([f"web-0.{hl}", f"web-1.{hl}", f"198-51-100-9.{hl}"]), srv

    # PTR: the ClusterIP names the Service, an endpoint address its own name.
    ptr = nslookup(n, ns, client, ip, gw).stdout
    assert f"name = {fqdn}" in ptr, ptr
    ptr = nslookup(n, ns, client, "198.51.100.7", gw).stdout
    assert f"name = web-0.{hl}" in ptr, ptr

    # ExternalName: a CNAME to the external name.
    cname = nslookup(n, ns, client, "-type=cname", f"ext.{ns}.svc.cluster.local", gw).stdout
    assert "canonical name = db.example.e2e.test" in cname, cname

    # Pods, insecure: the dashed address.
    pod_name = f"10-42-7-9.{ns}.pod.cluster.local"
    assert addresses(nslookup(n, ns, client, pod_name, gw).stdout, gw) == ["10.42.7.9"]

    # A name nobody has: NXDOMAIN at once, from the cluster zone.
    start = time.monotonic()
    missing = nslookup(n, ns, client, f"nothing-here.{ns}.svc.cluster.local", gw)
    assert missing.returncode != 0
    assert "NXDOMAIN" in missing.stdout + missing.stderr, missing.stdout
    assert time.monotonic() - start < 5

    # Outside the cluster: forwarded to 127.0.0.1 (nothing there): SERVFAIL, fast.
    start = time.monotonic()
    outside = nslookup(n, ns, client, "www.example.e2e.test", gw)
    assert outside.returncode != 0
    assert "SERVFAIL" in outside.stdout + outside.stderr, outside.stdout
    assert time.monotonic() - start < 5


def test_changes_reach_the_answers(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    gw = gateway(n)
    apply(n, ns, service("hl", [{"name": "web", "port": 80}], clusterIP="None"),
          endpoint_slice("hl-1", "hl", [("198.51.100.7", None, True)],
                         [{"name": "web", "port": 80, "protocol": "TCP"}]))
    client = client_pod(n, ns)
    hl = f"hl.{ns}.svc.cluster.local"
    wait_until(lambda: addresses(nslookup(n, ns, client, hl, gw).stdout, gw) == ["198.51.100.7"],
               timeout=30, what="the first endpoint")
    apply(n, ns, endpoint_slice("hl-2", "hl", [("198.51.100.8", None, True)],
                                [{"name": "web", "port": 80, "protocol": "TCP"}]))
    wait_until(lambda: addresses(nslookup(n, ns, client, hl, gw).stdout, gw)
               == ["198.51.100.7", "198.51.100.8"], timeout=10, what="the second slice")
    n.kubectl("delete", "svc", "hl", "-n", ns)
    wait_until(lambda: "NXDOMAIN" in nslookup(n, ns, client, hl, gw).stdout,
               timeout=10, what="the deleted Service to be gone")


def test_the_node_publishes_its_kube_dns_endpoint(crun_node):
    n = crun_node
    name = f"kube-dns-{n.node.name}"

    def published() -> dict | None:
        out = n.kubectl("get", "endpointslice", name, "-n", "kube-system", "-o", "json",
                        check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None
    wait_until(lambda: published() is not None, timeout=30, what=f"endpointslice {name}")
    s = published()
    assert s["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
    assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
        "node-dns.peapod.io"
    owner = s["metadata"]["ownerReferences"][0]
    node = get_json(n, "node", n.node.name)
    assert (owner["kind"], owner["name"], owner["uid"]) == \
        ("Node", n.node.name, node["metadata"]["uid"])
    assert s["addressType"] == "IPv4"
    [ep] = s["endpoints"]
    assert ep["addresses"] == [gateway(n)]
    assert ep["nodeName"] == n.node.name
    assert ep["conditions"]["ready"] is True
    assert sorted((p["name"], p["port"], p["protocol"]) for p in s["ports"]) == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]


def test_pods_reach_it_at_the_kube_dns_service(crun_node, pod_ns):
    """Through the kube-dns ClusterIP (the node proxy, `internalTrafficPolicy: Local`) and
    the pod's own resolv.conf: short names via the search path."""
    n, ns = crun_node, pod_ns
    kube_dns = n.kubectl("get", "svc", "kube-dns", "-n", "kube-system", "-o", "json", check=False)
    if kube_dns.returncode != 0:
        pytest.skip("no kube-dns Service on this API server yet")
    apply(n, ns, service("web", [{"name": "http", "port": 80}]))
    client = client_pod(n, ns)
    ip = get_json(n, "svc", "web", "-n", ns)["spec"]["clusterIP"]
    for name in ("web", f"web.{ns}", f"web.{ns}.svc", f"web.{ns}.svc.cluster.local"):
        wait_until(lambda: addresses(nslookup(n, ns, client, name).stdout, CLUSTER_DNS) == [ip],
                   timeout=30, what=f"{name} through {CLUSTER_DNS}")


def ask_from_host(server: str, name: str) -> tuple[int, list[str]]:
    """One A question over UDP from the host (a test's only DNS message built by hand):
    the response code and the addresses answered."""
    qname = b"".join(bytes([len(label)]) + label.encode()
                     for label in name.rstrip(".").split(".")) + b"\0"
    qid = secrets.randbelow(65536)
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(query, (server, 53))
        data = s.recv(4096)
    rid, flags, _qd, an, _ns, _ar = struct.unpack(">HHHHHH", data[:12])
    assert rid == qid
    off = 12 + len(qname) + 4
    ips = []
    for _ in range(an):
        while data[off] != 0 and data[off] & 0xC0 != 0xC0:
            off += data[off] + 1
        off += 2 if data[off] & 0xC0 == 0xC0 else 1
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", data[off:off + 10])
        off += 10
        if rtype == 1 and rdlen == 4:
            ips.append(socket.inet_ntoa(data[off:off + 4]))
        off += rdlen
    return flags & 0xF, ips


def test_keeps_answering_while_the_api_server_is_away(split):
    """`peapod server` stopped under a running `peapod agent`: the node's DNS answers from its
    cache all along, and follows changes again once the server is back."""
    n = split
    ns = n.create_namespace()
    gw = str(ipaddress.ip_network(n.agent.pod_cidr)[1])
    ip = f"10.43.{secrets.randbelow(200) + 50}.{secrets.randbelow(250) + 2}"
    apply(n, ns, service("web", [{"name": "http", "port": 80}], clusterIP=ip))
    client_pod(n, ns)
    # The bridge holds the gateway once a pod is attached; asking before that would route
    # the question off the machine.
    addrs = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", n.agent.bridge],
                           capture_output=True, text=True).stdout
    assert f" {gw}/" in addrs, addrs
    fqdn = f"web.{ns}.svc.cluster.local"
    wait_until(lambda: ask_from_host(gw, fqdn) == (0, [ip]), timeout=30,
               what=f"{fqdn} from the node")

    n.server.stop()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert ask_from_host(gw, fqdn) == (0, [ip])
            assert ask_from_host(gw, f"nothing.{ns}.svc.cluster.local")[0] == 3  # NXDOMAIN
            time.sleep(0.2)
    finally:
        n.server.start()
        n.close()  # the old client's pooled connections went with the old server
    other = f"10.43.{secrets.randbelow(200) + 50}.{secrets.randbelow(250) + 2}"
    apply(n, ns, service("late", [{"name": "http", "port": 80}], clusterIP=other))
    wait_until(lambda: ask_from_host(gw, f"late.{ns}.svc.cluster.local") == (0, [other]),
               timeout=60, what="a Service made after the restart to resolve")
    n.kubectl("delete", "pods", "--all", "-n", ns, "--grace-period=1", "--wait=true",
              timeout=120)
