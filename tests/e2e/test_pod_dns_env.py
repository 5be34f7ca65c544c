"""What the node agent writes into pods for Services and DNS (issue 15), on real pods: the
pod's `/etc/resolv.conf` per dnsPolicy exactly as the kubelet (and containerd) write it, the
Service environment variables (the `kubernetes` Service always, the namespace's Services
unless `enableServiceLinks: false`), and the managed `/etc/hosts`.

The node's `--resolv-conf` is the test file of `node.py` (`search e2e.test`, `nameserver
127.0.0.1`), so every expected file is known exactly and no lookup leaves the machine (the
pods here resolve nothing)."""

from __future__ import annotations

import json

from helpers import to_yaml, wait_until
from test_node_pods import pod, wait_ready

SLEEP = ["sleep", "3600"]


def exec_out(n, ns: str, name: str, *cmd: str) -> str:
    return n.kubectl("exec", name, "-n", ns, "--", *cmd).stdout


def apply(n, ns: str, obj: dict) -> None:
    n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(obj))


def env_of(n, ns: str, name: str) -> dict[str, str]:
    out = exec_out(n, ns, name, "env")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def cluster_ip(n, ns: str, name: str) -> str:
    return json.loads(n.kubectl("get", "svc", name, "-n", ns, "-o", "json").stdout)[
        "spec"]["clusterIP"]


def cluster_dns(n) -> str:
    """The node's `--cluster-dns`: the kube-dns Service's ClusterIP (10.43.0.10 by default)."""
    return cluster_ip(n, "kube-system", "kube-dns")


def cluster_first(n, ns: str) -> str:
    return (f"search {ns}.svc.cluster.local svc.cluster.local cluster.local e2e.test\n"
            f"nameserver {cluster_dns(n)}\noptions ndots:5\n")


HOST = "search e2e.test\nnameserver 127.0.0.1\n"


def test_resolv_conf_per_dns_policy(crun_node, pod_ns):
    n = crun_node
    custom = {"nameservers": ["192.0.2.53"], "searches": ["my.test"],
              "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}
    cases = {
        "default-policy": ({}, cluster_first(n, pod_ns)),
        "cluster-first": ({"dnsPolicy": "ClusterFirst"}, cluster_first(n, pod_ns)),
        "default": ({"dnsPolicy": "Default"}, HOST),
        "none": ({"dnsPolicy": "None", "dnsConfig": custom},
                 "search my.test\nnameserver 192.0.2.53\noptions ndots:2 edns0\n"),
        "cluster-first-config": (
            {"dnsConfig": custom},
            f"search {pod_ns}.svc.cluster.local svc.cluster.local cluster.local e2e.test "
            f"my.test\nnameserver {cluster_dns(n)}\nnameserver 192.0.2.53\n"
            "options ndots:2 edns0\n"),
        "with-host-net": ({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": True},
                          cluster_first(n, pod_ns)),
        "host-net": ({"dnsPolicy": "ClusterFirst", "hostNetwork": True}, HOST),
    }
    for name, (spec, _) in cases.items():
        apply(n, pod_ns, pod(name, n.images.busybox, SLEEP, **spec))
    for name, (_, want) in cases.items():
        wait_ready(n, pod_ns, name)
        assert exec_out(n, pod_ns, name, "cat", "/etc/resolv.conf") == want, name


def test_too_many_nameservers_are_cut_with_an_event(crun_node, pod_ns):
    n = crun_node
    extra = {"nameservers": ["192.0.2.1", "192.0.2.2", "192.0.2.3"]}
    apply(n, pod_ns, pod("cut", n.images.busybox, SLEEP, dnsPolicy="Default", dnsConfig=extra))
    wait_ready(n, pod_ns, "cut")
    assert exec_out(n, pod_ns, "cut", "cat", "/etc/resolv.conf") == (
        "search e2e.test\nnameserver 127.0.0.1\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n")

    def event():
        items = json.loads(n.kubectl("get", "events", "-n", pod_ns, "--field-selector",
                                     "involvedObject.name=cut", "-o", "json").stdout)["items"]
        return [e for e in items if e["reason"] == "DNSConfigForming"]
    [ev] = wait_until(event, what="the DNSConfigForming event")
    assert ev["type"] == "Warning"
    assert ev["message"] == (
        "Nameserver limits were exceeded, some nameservers have been omitted, the applied "
        "nameserver line is: 127.0.0.1 192.0.2.1 192.0.2.2")


def service(name: str, ports: list[dict], **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": ports, **spec}}


def test_service_environment_variables(crun_node, pod_ns):
    n = crun_node
    # 10.43.0.1 with the default --service-cidr.
    kubernetes_ip = cluster_ip(n, "default", "kubernetes")
    apply(n, pod_ns, service("my-db", [{"name": "sql", "port": 5432, "targetPort": 5432},
                                       {"name": "stats", "port": 9187, "protocol": "UDP"}]))
    apply(n, pod_ns, service("headless", [{"port": 80}], clusterIP="None"))
    apply(n, pod_ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "outside"},
                      "spec": {"type": "ExternalName", "externalName": "example.test"}})
    db_ip = cluster_ip(n, pod_ns, "my-db")
    linked = pod("linked", n.images.busybox, SLEEP)
    linked["spec"]["containers"][0]["env"] = [
        {"name": "DB_URL", "value": "postgres://$(MY_DB_SERVICE_HOST):$(MY_DB_SERVICE_PORT)"},
        {"name": "MY_DB_SERVICE_PORT_STATS", "value": "mine"}]
    apply(n, pod_ns, linked)
    apply(n, pod_ns, pod("unlinked", n.images.busybox, SLEEP, enableServiceLinks=False))
    wait_ready(n, pod_ns, "linked")
    wait_ready(n, pod_ns, "unlinked")

    kube = {
        "KUBERNETES_SERVICE_HOST": kubernetes_ip,
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": f"tcp://{kubernetes_ip}:443",
        "KUBERNETES_PORT_443_TCP": f"tcp://{kubernetes_ip}:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": kubernetes_ip,
    }
    db = {
        "MY_DB_SERVICE_HOST": db_ip,
        "MY_DB_SERVICE_PORT": "5432",
        "MY_DB_SERVICE_PORT_SQL": "5432",
        "MY_DB_SERVICE_PORT_STATS": "mine",
        "MY_DB_PORT": f"tcp://{db_ip}:5432",
        "MY_DB_PORT_5432_TCP": f"tcp://{db_ip}:5432",
        "MY_DB_PORT_5432_TCP_PROTO": "tcp",
        "MY_DB_PORT_5432_TCP_PORT": "5432",
        "MY_DB_PORT_5432_TCP_ADDR": db_ip,
        "MY_DB_PORT_9187_UDP": f"udp://{db_ip}:9187",
        "MY_DB_PORT_9187_UDP_PROTO": "udp",
        "MY_DB_PORT_9187_UDP_PORT": "9187",
        "MY_DB_PORT_9187_UDP_ADDR": db_ip,
    }
    env = env_of(n, pod_ns, "linked")
    services = {k: v for k, v in env.items() if k.startswith(("KUBERNETES_", "MY_DB_"))}
    assert services == {**kube, **db}
    assert env["DB_URL"] == f"postgres://{db_ip}:5432"
    # Neither the headless nor the ExternalName Service gives variables.
    assert not [k for k in env if k.startswith(("HEADLESS_", "OUTSIDE_"))]

    env = env_of(n, pod_ns, "unlinked")
    assert {k: v for k, v in env.items() if k.startswith("KUBERNETES_")} == kube
    assert not [k for k in env if k.startswith("MY_DB_")]


LOCAL = ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"
         "::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
         "fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")


def test_hosts_file(crun_node, pod_ns):
    n = crun_node
    aliases = [{"ip": "192.0.2.9", "hostnames": ["a.test", "b.test"]}]
    apply(n, pod_ns, pod("plain", n.images.busybox, SLEEP))
    apply(n, pod_ns, pod("member", n.images.busybox, SLEEP, hostname="db-0", subdomain="db",
                         hostAliases=aliases))
    apply(n, pod_ns, pod("on-host", n.images.busybox, SLEEP, hostNetwork=True,
                         hostAliases=aliases))
    ip = wait_ready(n, pod_ns, "plain")["status"]["podIP"]
    assert exec_out(n, pod_ns, "plain", "cat", "/etc/hosts") == f"{LOCAL}{ip}\tplain\n"
    ip = wait_ready(n, pod_ns, "member")["status"]["podIP"]
    assert exec_out(n, pod_ns, "member", "cat", "/etc/hosts") == (
        f"{LOCAL}{ip}\tdb-0.db.{pod_ns}.svc.cluster.local\tdb-0\n"
        "\n# Entries added by HostAliases.\n192.0.2.9\ta.test\tb.test\n")
    assert exec_out(n, pod_ns, "member", "hostname").strip() == "db-0"
    wait_ready(n, pod_ns, "on-host")
    with open("/etc/hosts") as f:
        node_hosts = f.read()
    assert exec_out(n, pod_ns, "on-host", "cat", "/etc/hosts") == (
        "# Kubernetes-managed hosts file (host network).\n" + node_hosts
        + "\n# Entries added by HostAliases.\n192.0.2.9\ta.test\tb.test\n")
