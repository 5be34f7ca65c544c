"""Host and shared namespaces (issue 6): a hostNetwork/hostPID/hostIPC pod is in the node's
network, PID and IPC namespaces (its IP is the node's, its hostname the node's); with
shareProcessNamespace a pod's containers see each other's processes under the infra
process as PID 1 (seed 003), and without it each sees only its own."""

from __future__ import annotations

import os

from helpers import to_yaml, wait_until
from test_node_pods import pod, wait_ready


def exec_out(n, ns: str, name: str, *cmd: str, container: str | None = None) -> str:
    extra = ["-c", container] if container else []
    return n.kubectl("exec", name, "-n", ns, *extra, "--", *cmd).stdout


def test_host_network_pid_and_ipc(crun_node, pod_ns):
    n = crun_node
    p = pod("on-host", n.images.busybox, ["sleep", "3600"],
            hostNetwork=True, hostPID=True, hostIPC=True)
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    got = wait_ready(n, pod_ns, "on-host")
    assert got["status"]["podIP"] == got["status"]["hostIP"]
    for kind in ("net", "pid", "ipc"):
        inside = exec_out(n, pod_ns, "on-host", "readlink", f"/proc/self/ns/{kind}").strip()
        assert inside == os.readlink(f"/proc/self/ns/{kind}"), kind
    with open("/proc/sys/kernel/hostname") as f:
        assert exec_out(n, pod_ns, "on-host", "hostname").strip() == f.read().strip()
    # The node's own interfaces are visible: this is the node's network.
    links = exec_out(n, pod_ns, "on-host", "ip", "-o", "link")
    steady = [i for i in os.listdir("/sys/class/net")
              if i != "lo" and not i.startswith(("veth", "pp"))]
    assert steady and all(f": {i}:" in links or f": {i}@" in links for i in steady), links


def two_containers(n, name: str, share: bool) -> dict:
    p = pod(name, n.images.busybox, ["sleep", "3601"], shareProcessNamespace=share)
    p["spec"]["containers"].append(
        {"name": "other", "image": n.images.busybox, "command": ["sleep", "3602"]})
    return p


def test_share_process_namespace_on_and_off(crun_node, pod_ns):
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(two_containers(n, "shared", True)))
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(two_containers(n, "apart", False)))
    wait_ready(n, pod_ns, "shared")
    wait_ready(n, pod_ns, "apart")
    shared = exec_out(n, pod_ns, "shared", "ps", "-o", "pid,args", container="app")
    assert "sleep 3601" in shared and "sleep 3602" in shared, shared
    assert exec_out(n, pod_ns, "shared", "cat", "/proc/1/comm", container="app").strip() == "pause"
    apart = exec_out(n, pod_ns, "apart", "ps", "-o", "pid,args", container="app")
    assert "sleep 3601" in apart and "sleep 3602" not in apart, apart


def test_hostname_subdomain_fqdn_and_sub_path_expr(crun_node, pod_ns):
    n = crun_node
    p = pod("named", n.images.busybox, ["sh", "-c", "echo here > /work/mark; sleep 3600"],
            hostname="web-0", subdomain="web", setHostnameAsFQDN=True)
    p["spec"]["containers"][0]["env"] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    p["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "shared", "mountPath": "/work", "subPathExpr": "logs/$(POD_NAME)"}]
    p["spec"]["containers"].append({"name": "reader", "image": n.images.busybox,
                                    "command": ["sleep", "3600"],
                                    "volumeMounts": [{"name": "shared", "mountPath": "/all"}]})
    p["spec"]["volumes"] = [{"name": "shared", "emptyDir": {}}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "named")
    fqdn = f"web-0.web.{pod_ns}.svc.cluster.local"
    assert exec_out(n, pod_ns, "named", "hostname", container="app").strip() == fqdn
    assert f"web-0.web.{pod_ns}.svc.cluster.local" in exec_out(
        n, pod_ns, "named", "cat", "/etc/hosts", container="app")
    assert wait_until(lambda: exec_out(n, pod_ns, "named", "cat", "/all/logs/named/mark",
                                       container="reader") == "here\n", what="the subPathExpr file")
