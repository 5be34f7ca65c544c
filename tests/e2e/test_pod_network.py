"""The flat pod network across nodes (crates/podnet): a server on the host and two agents on
test hosts (`tests/e2e/testhost.py`), on a bridged Lan (one subnet: `auto` picks host-gw), on a
routed Lan (a /30 each: `auto` picks vxlan), and with vxlan forced on a bridged Lan.

Each case: a stale route of ours is removed at start and someone else's kept; the routes
(and for vxlan the device, neighbours, fdb entries and the VTEP published on the Node) are
there; a pod on one node fetches HTTP from a pod on the other and the server sees the client
pod's own address (busybox httpd's CGI prints REMOTE_ADDR); a Service's ClusterIP reaches
backends on both nodes from either node, the client's address kept; pods keep talking
while an agent is stopped and after it restarts; a stopped agent's node keeps its routes,
and deleting its Node removes them on the other node; `peapod
cleanup-network` leaves nothing of the pod network in the test hosts, and the
host's own network never saw any of it."""

from __future__ import annotations

import ipaddress
import json
import subprocess

import testhost
from conftest import Cluster
from helpers import to_yaml, wait_until

POD_TIMEOUT = 120
PROTO = "94"  # podnet's route protocol
DEVICE = "peapod.1"

# busybox httpd with one CGI script answering "<client address> <server hostname>".
SERVER = r"""mkdir -p /www/cgi-bin
cat > /www/cgi-bin/peer <<'EOF'
#!/bin/sh
echo "Content-Type: text/plain"
echo
echo "$REMOTE_ADDR $(hostname)"
EOF
chmod +x /www/cgi-bin/peer
exec httpd -f -p 80 -h /www
"""


def pod(c: Cluster, name: str, node: str, server: bool) -> dict:
    command = ["sh", "-c", SERVER] if server else \
        ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "srv" if server else "cli"}},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": c.images.busybox,
                                     "command": command, "ports": [{"containerPort": 80}]}]}}


def get(c: Cluster, *args: str) -> dict:
    return json.loads(c.kubectl("get", *args, "-o", "json").stdout)


def running_ips(c: Cluster, ns: str, names: list[str]) -> dict[str, str]:
    def check():
        items = {p["metadata"]["name"]: p for p in get(c, "pods", "-n", ns)["items"]}
        out = {}
        for n in names:
            st = items.get(n, {}).get("status", {})
            conds = {x["type"]: x["status"] for x in st.get("conditions", [])}
            if st.get("phase") != "Running" or conds.get("Ready") != "True":
                return None
            out[n] = st["podIP"]
        return out
    return wait_until(check, timeout=POD_TIMEOUT, interval=0.5, what=f"pods {names} running")


def fetch(c: Cluster, ns: str, client: str, ip: str) -> str:
    """GET /cgi-bin/peer on ip from inside the client pod: "<client address> <server name>"."""
    cp = c.kubectl("exec", "-n", ns, client, "--", "timeout", "10", "wget", "-qO-",
                   f"http://{ip}/cgi-bin/peer", check=False, timeout=60)
    if cp.returncode != 0:
        return f"error {cp.returncode}: {cp.stderr}"
    # httpd listens dual-stack: an IPv4 client shows as [::ffff:a.b.c.d].
    return cp.stdout.strip().replace("[::ffff:", "").replace("]", "")


def routes(host: testhost.TestHost) -> list[dict]:
    cp = host.run(["ip", "-j", "route", "show", "proto", PROTO])
    return json.loads(cp.stdout or "[]")


def device(host: testhost.TestHost) -> dict | None:
    cp = host.run(["ip", "-j", "-d", "addr", "show", "dev", DEVICE])
    return json.loads(cp.stdout)[0] if cp.returncode == 0 else None


def pod_cidrs(c: Cluster, agents: list[testhost.JoinedAgent]) -> dict[str, str]:
    def check():
        nodes = {n["metadata"]["name"]: n for n in get(c, "nodes")["items"]}
        cidrs = {a.name: nodes.get(a.name, {}).get("spec", {}).get("podCIDR") for a in agents}
        return cidrs if all(cidrs.values()) else None
    return wait_until(check, timeout=60, what="both nodes with a podCIDR")


def expect_route(host: testhost.TestHost, peer: testhost.TestHost, cidr: str, backend: str):
    """Waits for the route to `cidr` by `backend`; returns it."""
    net = cidr.split("/")[0]

    def check():
        for r in routes(host):
            if r.get("dst") != cidr:
                continue
            if backend == "host-gw" and r.get("gateway") == peer.ip and r.get("dev") == "eth0":
                return r
            if backend == "vxlan" and r.get("gateway") == net and r.get("dev") == DEVICE \
                    and "onlink" in r.get("flags", []):
                return r
        return None
    return wait_until(check, timeout=30, interval=0.1,
                      what=f"{backend} route to {cidr} in {host.name} (have {routes(host)})")


def check_vxlan(c: Cluster, hosts, agents, cidrs) -> None:
    """The device as flannel makes it, the VTEP on each Node, and per peer the neighbour and
    fdb entry naming the peer's published MAC."""
    nodes = {n["metadata"]["name"]: n for n in get(c, "nodes")["items"]}
    macs = {}
    for h, a in zip(hosts, agents):
        dev = device(h)
        assert dev is not None, f"no {DEVICE} in {h.name}"
        info = dev["linkinfo"]["info_data"]
        assert (info["id"], info["port"], info["local"], info["link"], info["learning"]) == \
            (1, 8472, h.ip, "eth0", False), info
        assert dev["mtu"] == 1450
        addrs = [x["local"] for x in dev.get("addr_info", []) if x["family"] == "inet"]
        assert addrs == [cidrs[a.name].split("/")[0]]
        ann = nodes[a.name]["metadata"]["annotations"]
        assert ann["flannel.alpha.coreos.com/backend-type"] == "vxlan"
        assert ann["flannel.alpha.coreos.com/public-ip"] == h.ip
        data = json.loads(ann["flannel.alpha.coreos.com/backend-data"])
        assert data == {"VNI": 1, "VtepMAC": dev["address"]}
        macs[a.name] = dev["address"]
    for (h, _), (peer_host, peer) in [(p, q) for p in zip(hosts, agents)
                                      for q in zip(hosts, agents) if p[1] != q[1]]:
        net = cidrs[peer.name].split("/")[0]
        neigh = json.loads(h.run(["ip", "-j", "neigh", "show", "dev", DEVICE]).stdout)
        assert {"dst": net, "lladdr": macs[peer.name]}.items() <= \
            next((n for n in neigh if n["dst"] == net), {}).items(), neigh
        assert "PERMANENT" in next(n for n in neigh if n["dst"] == net)["state"]
        fdb = json.loads(h.run(["bridge", "-j", "fdb", "show", "dev", DEVICE]).stdout)
        assert any(f["mac"] == macs[peer.name] and f.get("dst") == peer_host.ip for f in fdb), fdb


def host_has_nothing(cluster_cidr: str) -> list[str]:
    """What of the pod network shows in the host's own network namespace (nothing, ever)."""
    found = []
    if subprocess.run(["ip", "link", "show", DEVICE], capture_output=True).returncode == 0:
        found.append(f"link {DEVICE} on the host")
    out = subprocess.run(["ip", "-4", "route", "show", "proto", PROTO], capture_output=True,
                         text=True).stdout
    net = ipaddress.ip_network(cluster_cidr)
    found += [f"route {line} on the host" for line in out.splitlines()
              if ipaddress.ip_network(line.split()[0], strict=False).overlaps(net)]
    return found


def exercise(lan: testhost.Lan, server, tmp_path, test_images, backend: str,
             extra_args: list[str] | None = None) -> None:
    lan.forward_loopback(int(test_images.host.rsplit(":", 1)[1]))
    c = Cluster(server, tmp_path)
    c.images = test_images
    try:
        hosts = [lan.add_host() for _ in range(2)]
        # Left from an earlier life: a route of ours (proto 94) nobody wants any more, and
        # someone else's route. The first sync removes the first and keeps the second.
        stale, foreign = "10.254.254.0/24", "10.254.253.0/24"
        for dst, proto in ((stale, PROTO), (foreign, "static")):
            cp = hosts[0].run(["ip", "route", "add", dst, "via", hosts[0].gateway,
                               "proto", proto])
            assert cp.returncode == 0, cp.stderr
        agents = [testhost.JoinedAgent(tmp_path / f"a{i}", h, server,
                                       extra_args=extra_args).start()
                  for i, h in enumerate(hosts)]
        cidrs = pod_cidrs(c, agents)
        for (h, peer_host, peer) in [(hosts[0], hosts[1], agents[1]),
                                     (hosts[1], hosts[0], agents[0])]:
            expect_route(h, peer_host, cidrs[peer.name], backend)
        assert not any(r["dst"] == stale for r in routes(hosts[0])), routes(hosts[0])
        kept = hosts[0].run(["ip", "-j", "route", "show", foreign]).stdout
        assert json.loads(kept), "someone else's route was removed"
        hosts[0].run(["ip", "route", "del", foreign])
        if backend == "vxlan":
            check_vxlan(c, hosts, agents, cidrs)
        else:
            assert all(device(h) is None for h in hosts), "host-gw needs no vxlan device"

        ns = c.create_namespace()
        wait_until(lambda: c.kubectl("get", "sa", "default", "-n", ns,
                                     check=False).returncode == 0, timeout=30,
                   what="the default serviceaccount")
        names = []
        for i, a in enumerate(agents):
            for server_pod in (True, False):
                name = f"{'srv' if server_pod else 'cli'}-{i}"
                c.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(pod(c, name, a.name,
                                                                          server_pod)))
                names.append(name)
        ips = running_ips(c, ns, names)
        for i in range(2):
            assert ipaddress.ip_address(ips[f"srv-{i}"]) in ipaddress.ip_network(cidrs[agents[i].name])

        # Pod to pod across nodes, both ways: the server sees the client pod's own address.
        for client, target in (("cli-0", "srv-1"), ("cli-1", "srv-0")):
            got = wait_until(lambda: (lambda out: out if not out.startswith("error") else None)(
                fetch(c, ns, client, ips[target])), timeout=30, interval=0.5,
                what=f"{client} -> {target}")
            assert got == f"{ips[client]} {target}", got

        # A Service's ClusterIP reaches backends on both nodes from either node.
        c.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "srv"},
            "spec": {"selector": {"app": "srv"}, "ports": [{"port": 80, "targetPort": 80}]}}))
        cluster_ip = get(c, "service", "srv", "-n", ns)["spec"]["clusterIP"]
        for client in ("cli-0", "cli-1"):
            seen: set[str] = set()

            def both_backends():
                out = fetch(c, ns, client, cluster_ip)
                if not out.startswith("error"):
                    addr, backend_name = out.split()
                    assert addr == ips[client], f"{client} via the Service seen as {addr}"
                    seen.add(backend_name)
                return seen == {"srv-0", "srv-1"}
            wait_until(both_backends, timeout=60, interval=0.1,
                       what=f"{client} reaching both backends through {cluster_ip} (saw {seen})")

        # Pods keep talking while an agent is down (its routes stay), and after it is back.
        before = routes(hosts[0])
        agents[0].stop()
        got = fetch(c, ns, "cli-1", ips["srv-0"])
        assert got == f"{ips['cli-1']} srv-0", got
        agents[0].start()
        got = fetch(c, ns, "cli-1", ips["srv-0"])
        assert got == f"{ips['cli-1']} srv-0", got
        assert routes(hosts[0]) == before

        # A stopped agent's node keeps its routes; deleting its Node removes them elsewhere.
        c.kubectl("delete", "pod", "-n", ns, "srv-1", "cli-1", "--grace-period=1",
                  "--wait=true", timeout=120)
        agents[1].wait_clean()
        agents[1].stop()
        assert any(r["dst"] == cidrs[agents[0].name] for r in routes(hosts[1])), \
            "a stopped node keeps its routes"
        gone_cidr = cidrs[agents[1].name]
        assert any(r["dst"] == gone_cidr for r in routes(hosts[0]))
        c.kubectl("delete", "node", agents[1].name)
        wait_until(lambda: not any(r["dst"] == gone_cidr for r in routes(hosts[0])),
                   timeout=30, interval=0.1, what=f"the route to {gone_cidr} removed")
        if backend == "vxlan":
            net = gone_cidr.split("/")[0]
            neigh = hosts[0].run(["ip", "-j", "neigh", "show", "dev", DEVICE]).stdout
            assert net not in neigh, neigh
            fdb = json.loads(hosts[0].run(["bridge", "-j", "fdb", "show", "dev", DEVICE]).stdout)
            assert not any(f.get("dst") == hosts[1].ip for f in fdb), fdb

        # Teardown: pods gone, agents stopped, cleanup-network in each test host.
        c.kubectl("delete", "pods", "--all", "-n", ns, "--grace-period=1", "--wait=true",
                  timeout=120)
        agents[0].wait_clean()
        agents[0].stop()
        for h in hosts:
            cp = h.run([str(server.binary), "cleanup-network"])
            assert cp.returncode == 0, cp.stderr
            assert routes(h) == [], routes(h)
            assert device(h) is None
            assert h.run(["nft", "list", "table", "ip", "peapod"]).returncode != 0
            left = h.leaks(allow_links=("peapod0",))
            assert not left, left
            # Twice is fine: nothing there is not an error.
            assert h.run([str(server.binary), "cleanup-network"]).returncode == 0
        assert not host_has_nothing(server.cluster_cidr.cidr)
    finally:
        c.close()


def test_bridged_lan_auto_routes_by_host_gw(lan, cluster_server, tmp_path, test_images):
    exercise(lan, cluster_server, tmp_path, test_images, "host-gw")


def test_routed_lan_auto_routes_by_vxlan(routed_lan, cluster_server, tmp_path, test_images):
    exercise(routed_lan, cluster_server, tmp_path, test_images, "vxlan")


def test_vxlan_forced_on_a_bridged_lan(lan, cluster_server, tmp_path, test_images):
    exercise(lan, cluster_server, tmp_path, test_images, "vxlan",
             extra_args=["--pod-network", "vxlan"])


def test_host_gw_forced_on_a_routed_lan_routes_nothing(routed_lan, cluster_server, tmp_path,
                                                       test_images):
    """host-gw cannot reach a node on another subnet: no route, no device, and the agent
    says why."""
    hosts = [routed_lan.add_host() for _ in range(2)]
    agents = [testhost.JoinedAgent(tmp_path / f"a{i}", h, cluster_server,
                                   extra_args=["--pod-network", "host-gw"]).start()
              for i, h in enumerate(hosts)]
    wait_until(lambda: "its pods are not reachable from here" in agents[0].log.read_text(),
               timeout=30, what="the host-gw warning")
    assert routes(hosts[0]) == [] and device(hosts[0]) is None
    for a in agents:
        a.stop()
    for h in hosts:
        assert h.run([str(cluster_server.binary), "cleanup-network"]).returncode == 0
