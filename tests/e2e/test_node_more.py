"""Node behaviour that does not depend on the OCI runtime (crun only): registration and
lease, air-gapped images from archives, image pull failures, scheduling onto the real node,
hostPort, and the startup timeline."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request

import harness
import images
from helpers import rows_by_name, to_yaml, wait_until
from test_node_pods import get_pod, pod, wait_phase, wait_ready


def waiting_reason(cluster, ns: str, name: str) -> str | None:
    s = get_pod(cluster, ns, name).get("status", {}).get("containerStatuses", [{}])[0]
    return (s.get("state", {}).get("waiting") or {}).get("reason")


def test_node_registers_ready_with_capacity_and_renews_its_lease(crun_node):
    n = crun_node
    rows = rows_by_name(n.kubectl("get", "nodes", "-o", "wide").stdout)
    row = rows[n.node.name]
    assert row["STATUS"] == "Ready"
    assert row["VERSION"] == "v1.37.0+peapod"
    assert row["INTERNAL-IP"] == "127.0.0.1"
    assert row["CONTAINER-RUNTIME"].startswith("crun://")
    node = json.loads(n.kubectl("get", "node", n.node.name, "-o", "json").stdout)
    alloc = node["status"]["allocatable"]
    assert alloc["pods"] == "110"
    assert int(alloc["cpu"]) >= 1 and alloc["memory"].endswith("Ki")
    assert "ephemeral-storage" in alloc
    assert node["spec"]["podCIDR"] == n.node.pod_cidr
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == n.node.name
    # One node-wide rule NATs pod traffic leaving the cluster; pod-to-pod traffic is not NATed.
    rules = subprocess.run(["iptables", "-w", "-t", "nat", "-S", "POSTROUTING"],
                           capture_output=True, text=True).stdout
    assert f"-s {n.node.pod_cidr} ! -d {n.node.pod_cidr}" in rules
    assert "-j MASQUERADE" in rules
    lease = json.loads(n.kubectl("get", "lease", n.node.name, "-n", "kube-node-lease",
                                 "-o", "json").stdout)
    assert lease["spec"]["holderIdentity"] == n.node.name
    assert lease["spec"]["leaseDurationSeconds"] == 40
    first = lease["spec"]["renewTime"]

    def renewed():
        l = json.loads(n.kubectl("get", "lease", n.node.name, "-n", "kube-node-lease",
                                 "-o", "json").stdout)
        return l["spec"]["renewTime"] != first
    wait_until(renewed, timeout=25, interval=0.5, what="lease renewal (every 10 s)")


def test_archives_imported_into_a_running_node_run_with_pull_policy_never(crun_node, pod_ns,
                                                                          tmp_path):
    n = crun_node
    docker = tmp_path / "docker.tar"
    oci = tmp_path / "oci.tar"
    images.write_docker_archive(docker, images.busybox_image(cmd=["sh", "-c", "echo from-docker; sleep 3600"]),
                                ["archive.test/docker:1"])
    images.write_oci_archive(oci, images.busybox_image(cmd=["sh", "-c", "echo from-oci; sleep 3600"]),
                             "archive.test/oci:1")
    for f in (docker, oci):
        cp = subprocess.run([str(harness.peapod_bin()), "images", "import", "--data-dir",
                             str(n.node.data_dir), str(f)], capture_output=True, text=True,
                            timeout=60)
        assert cp.returncode == 0, cp.stderr
        assert "queued" in cp.stdout  # the running agent imports it
    a = pod("from-docker", "archive.test/docker:1")
    b = pod("from-oci", "archive.test/oci:1")
    for p in (a, b):
        p["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(a, b))
    wait_ready(n, pod_ns, "from-docker")
    wait_ready(n, pod_ns, "from-oci")
    listed = subprocess.run([str(harness.peapod_bin()), "images", "ls", "--data-dir",
                             str(n.node.data_dir)], capture_output=True, text=True, timeout=60)
    assert "archive.test/docker:1" in listed.stdout and "archive.test/oci:1" in listed.stdout
    out = n.kubectl("describe", "pod", "from-docker", "-n", pod_ns).stdout
    assert 'Container image "archive.test/docker:1" already present on machine' in out


def test_missing_images_report_the_kubelet_reasons(crun_node, pod_ns):
    n = crun_node
    never = pod("never", "absent.test/nothing:1")
    never["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    missing = pod("missing", f"{n.images.host}/e2e/does-not-exist:1")
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(never, missing))
    wait_until(lambda: waiting_reason(n, pod_ns, "never") == "ErrImageNeverPull", timeout=30,
               what="ErrImageNeverPull")
    wait_until(lambda: waiting_reason(n, pod_ns, "missing") in ("ErrImagePull", "ImagePullBackOff"),
               timeout=30, what="ErrImagePull")
    rows = rows_by_name(n.kubectl("get", "pods", "-n", pod_ns).stdout)
    assert rows["never"]["STATUS"] == "ErrImageNeverPull"
    assert rows["missing"]["STATUS"] in ("ErrImagePull", "ImagePullBackOff")
    out = n.kubectl("describe", "pod", "missing", "-n", pod_ns).stdout
    assert "Failed to pull image" in out
    assert get_pod(n, pod_ns, "missing")["status"]["phase"] == "Pending"


def test_seed_001_disktype_ssd_pod_runs_once_the_node_is_labelled(crun_node, pod_ns):
    n = crun_node
    p = pod("ssd-pod", n.images.busybox, ["sleep", "3600"], nodeSelector={"disktype": "ssd"})
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))

    def unschedulable():
        conds = get_pod(n, pod_ns, "ssd-pod").get("status", {}).get("conditions", [])
        return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
                   for c in conds)
    wait_until(unschedulable, timeout=30, what="PodScheduled=False")
    out = n.kubectl("describe", "pod", "ssd-pod", "-n", pod_ns).stdout
    assert "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector." in out
    n.kubectl("label", "node", n.node.name, "disktype=ssd")
    try:
        wait_ready(n, pod_ns, "ssd-pod")
    finally:
        n.kubectl("label", "node", n.node.name, "disktype-")


def test_host_port_reaches_the_pod_and_describe_shows_the_startup_timeline(crun_node, pod_ns):
    n = crun_node
    port = harness.free_port()
    p = pod("hostport", n.images.web)
    p["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": port}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "hostport")

    def fetch():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
    wait_until(fetch, timeout=15, what="the hostPort answering")

    def timeline():
        out = n.kubectl("describe", "pod", "hostport", "-n", pod_ns).stdout
        return out if "StartupTimeline" in out else None
    out = wait_until(timeline, timeout=15, what="the StartupTimeline event")
    assert "sandbox +" in out and "started:app +" in out and "ready +" in out


def test_memory_limit_overrun_is_reported_as_oom_killed(crun_node, pod_ns):
    n = crun_node
    # busybox tail keeps the last line in memory; /dev/zero has no newline, so it grows
    # until the 32Mi limit stops it.
    p = pod("hog", n.images.busybox, ["sh", "-c", "head -c 200m /dev/zero | tail"],
            restartPolicy="Never")
    p["spec"]["containers"][0]["resources"] = {"limits": {"memory": "32Mi"}}
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))

    def terminated():
        s = get_pod(n, pod_ns, "hog").get("status", {}).get("containerStatuses", [{}])[0]
        return s.get("state", {}).get("terminated")
    t = wait_until(terminated, timeout=60, what="the hog terminated")
    assert t["reason"] == "OOMKilled", t
    assert t["exitCode"] == 137
    rows = rows_by_name(n.kubectl("get", "pods", "-n", pod_ns).stdout)
    assert rows["hog"]["STATUS"] == "OOMKilled"


def test_active_deadline_fails_the_pod_as_deadline_exceeded(crun_node, pod_ns):
    n = crun_node
    p = pod("deadline", n.images.busybox, ["sleep", "3600"],
            activeDeadlineSeconds=3, terminationGracePeriodSeconds=1)
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    failed = wait_phase(n, pod_ns, "deadline", "Failed", timeout=30)
    assert failed["status"]["reason"] == "DeadlineExceeded"
    assert failed["status"]["message"] == \
        "Pod was active on the node longer than the specified deadline"
    # The container was stopped, not left running (kubernetes#98718); kubectl's STATUS
    # column then shows the container's own terminated reason, as upstream's would.
    assert failed["status"]["containerStatuses"][0]["state"].get("terminated")
    described = n.kubectl("describe", "pod", "deadline", "-n", pod_ns).stdout
    assert re.search(r"^Reason:\s+DeadlineExceeded$", described, re.M), described
    assert "Pod was active on the node longer than the specified deadline" in described


def test_kubectl_drain_evicts_through_pods_eviction_and_uncordon_reopens(crun_node, pod_ns):
    n = crun_node
    node = json.loads(n.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]["metadata"]["name"]
    for name in ("drained-a", "drained-b"):
        p = pod(name, n.images.busybox, ["sleep", "3600"], terminationGracePeriodSeconds=1)
        p["metadata"]["labels"] = {"drain": pod_ns}
        n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "drained-a")
    wait_ready(n, pod_ns, "drained-b")
    try:
        # kubectl 1.37 posts each Eviction (policy/v1) in protobuf.
        out = n.kubectl("drain", node, "--force", "--pod-selector", f"drain={pod_ns}",
                        "--timeout=60s", timeout=90)
        assert f"pod/drained-a evicted" in out.stdout, out.stdout
        assert f"pod/drained-b evicted" in out.stdout, out.stdout
        assert f"node/{node} drained" in out.stdout
        left = n.kubectl("get", "pods", "-n", pod_ns, "-o", "name").stdout.split()
        assert left == [], left
        assert json.loads(n.kubectl("get", "node", node, "-o", "json").stdout)["spec"][
            "unschedulable"] is True
    finally:
        n.kubectl("uncordon", node)
    assert "unschedulable" not in json.loads(
        n.kubectl("get", "node", node, "-o", "json").stdout)["spec"]


def test_an_eviction_marks_the_pod_a_disruption_target_and_deletes_it(crun_node, pod_ns):
    import kubernetes
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(
        pod("evictee", n.images.busybox, ["sleep", "3600"], terminationGracePeriodSeconds=30)))
    wait_ready(n, pod_ns, "evictee")
    core = kubernetes.client.CoreV1Api(n.client)
    body = kubernetes.client.V1Eviction(
        metadata=kubernetes.client.V1ObjectMeta(name="evictee", namespace=pod_ns),
        delete_options=kubernetes.client.V1DeleteOptions(grace_period_seconds=20))
    core.create_namespaced_pod_eviction("evictee", pod_ns, body)
    p = get_pod(n, pod_ns, "evictee")
    assert p["metadata"]["deletionGracePeriodSeconds"] == 20
    conds = {c["type"]: c for c in p["status"]["conditions"]}
    assert conds["DisruptionTarget"]["reason"] == "EvictionByEvictionAPI"
    # A mismatched name is refused.
    bad = kubernetes.client.V1Eviction(metadata=kubernetes.client.V1ObjectMeta(name="other"))
    try:
        core.create_namespaced_pod_eviction("evictee", pod_ns, bad)
        raise AssertionError("a mismatched eviction was accepted")
    except kubernetes.client.ApiException as e:
        assert e.status == 400 and "does not match" in e.body
    n.kubectl("delete", "pod", "evictee", "-n", pod_ns, "--grace-period=0", "--force")
