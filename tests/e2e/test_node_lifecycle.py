"""Node lifecycle across two nodes: a `peapod server` with `--node-monitor-grace-period 8s`
and two `peapod agent`s in the host network namespace (each with its own bridge, pod CIDR
and cgroup root). Killing one agent makes its node Unknown and tainted, its pods not ready;
pods are evicted as their tolerations run out and a Deployment's pod comes back on the
other node; the restarted agent brings the node back and cleans up what the cluster deleted
meanwhile. Cordon, drain and uncordon move the unschedulable taint.

Every wait is a poll with a deadline; the timings asserted are the deadlines, never sleeps."""

from __future__ import annotations

import time
from pathlib import Path

import kubernetes
import pytest

import harness
import node as node_support
from conftest import Cluster
from helpers import pod_manifest, to_yaml, wait_until

GRACE = 8
# The agents run with their defaults: they renew their Lease every 2 s, so a healthy node
# never looks late to a server with an 8 s grace.
AGENT_ARGS: list[str] = []
# Grace, one monitor period (5 s), the tainting pass and the watch: Unknown within this.
UNKNOWN_DEADLINE = GRACE + 5 + 12
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, test_images):
    workdir = tmp_path_factory.mktemp("lifecycle")
    (workdir / "server").mkdir()
    server = harness.Peapod(workdir / "server", extra_args=[
        "--node-monitor-grace-period", f"{GRACE}s"])
    agents = []
    c = None
    try:
        server.start()
        for name in ("a", "b"):
            (workdir / name).mkdir()
            agents.append(node_support.Agent(workdir / name, server, extra_args=AGENT_ARGS))
        for agent in agents:
            agent.start()
        c = Cluster(server, workdir)
        c.agents = agents
        c.images = test_images
        core = kubernetes.client.CoreV1Api(c.client)
        wait_until(lambda: all(ready_status(core, a.name) == "True" for a in agents),
                   timeout=60, what="both nodes Ready")
        yield c
        for agent in agents:
            if agent.proc is None:
                agent.start()
        c.kubectl("delete", "deploy,ds", "--all", "-A", "--wait=true", timeout=120)
        c.kubectl("delete", "pods", "--all", "-A", "--grace-period=1", "--wait=true",
                  timeout=120)
        for agent in agents:
            node_support.wait_clean(agent.data_dir, agent.bridge)
    finally:
        if c is not None:
            c.close()
        for agent in agents:
            agent.stop()
        server.stop()


def node_obj(core, name):
    return core.read_node(name)


def condition(conditions, kind):
    return next((c for c in conditions or [] if c.type == kind), None)


def ready_status(core, name) -> str | None:
    try:
        c = condition(core.read_node(name).status.conditions, "Ready")
    except kubernetes.client.ApiException:
        return None
    return c.status if c else None


def taints(core, name) -> set[tuple[str, str]]:
    return {(t.key, t.effect) for t in core.read_node(name).spec.taints or []}


def pod_on(name, node, image, tolerations=None, labels=None) -> dict:
    m = pod_manifest(name, labels=labels, image=image,
                     nodeSelector={"kubernetes.io/hostname": node},
                     terminationGracePeriodSeconds=1)
    if tolerations:
        m["spec"]["tolerations"] = tolerations
    return m


def tolerate_unreachable(seconds: int) -> list[dict]:
    return [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": seconds}]


def running_ready(pod) -> bool:
    c = condition(pod.status.conditions, "Ready")
    return pod.status.phase == "Running" and c is not None and c.status == "True"


def container_ids(pod) -> list[str]:
    return [s.container_id.split("://", 1)[1]
            for s in pod.status.container_statuses or [] if s.container_id]


def containers_left(agent, ids: list[str]) -> list[str]:
    """Runtime state or shim processes an agent still has for these containers."""
    left = [i for i in ids if (agent.data_dir / "run" / "runtime" / i).exists()]
    for pid in Path("/proc").iterdir():
        if not pid.name.isdigit():
            continue
        try:
            cmd = (pid / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        left += [f"process {pid.name} ({i})" for i in ids if i in cmd]
    return left


def events_for(core, ns, name, reason) -> list[str]:
    return [e.message for e in core.list_namespaced_event(ns).items
            if e.involved_object.name == name and e.reason == reason]


def test_dead_node_is_unknown_tainted_and_its_pods_move(cluster):
    core = kubernetes.client.CoreV1Api(cluster.client)
    apps = kubernetes.client.AppsV1Api(cluster.client)
    a, b = cluster.agents
    ns = cluster.create_namespace()
    image = cluster.images.busybox
    # The Deployment's pod starts on b: a is cordoned while it is placed.
    cluster.kubectl("cordon", a.name)
    deploy = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"terminationGracePeriodSeconds": 1,
                                       "tolerations": tolerate_unreachable(5),
                                       "containers": [{"name": "app", "image": image,
                                                       "command": ["sleep", "3600"]}]}}},
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(
        pod_on("tolerant", b.name, image, tolerate_unreachable(5)),
        pod_on("default", b.name, image),
        deploy))

    def web_pods():
        return [p for p in core.list_namespaced_pod(ns, label_selector="app=web").items
                if p.metadata.deletion_timestamp is None]

    def all_running():
        pods = {p.metadata.name: p for p in core.list_namespaced_pod(ns).items}
        return len(pods) == 3 and all(running_ready(p) and p.spec.node_name == b.name
                                      for p in pods.values()) and pods
    pods = wait_until(all_running, timeout=90, what="pods Running on b")
    cluster.kubectl("uncordon", a.name)
    # The default pod got DefaultTolerationSeconds' 300 s tolerations.
    tols = {(t.key, t.toleration_seconds) for t in pods["default"].spec.tolerations}
    assert {(NOT_READY, 300), (UNREACHABLE, 300)} <= tols
    web = web_pods()[0].metadata.name
    evicted_ids = container_ids(pods["tolerant"]) + container_ids(pods[web])
    assert evicted_ids

    b.kill()
    killed = time.monotonic()

    def unknown():
        n = node_obj(core, b.name)
        c = condition(n.status.conditions, "Ready")
        return c.status == "Unknown" and c
    ready = wait_until(unknown, timeout=UNKNOWN_DEADLINE, interval=0.2,
                       what="node Ready=Unknown")
    assert ready.reason == "NodeStatusUnknown"
    assert ready.message == "Kubelet stopped posting node status."
    conditions = node_obj(core, b.name).status.conditions
    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert condition(conditions, kind).status == "Unknown", kind
    wait_until(lambda: (UNREACHABLE, "NoExecute") in taints(core, b.name),
               timeout=UNKNOWN_DEADLINE + 5 - (time.monotonic() - killed), interval=0.2,
               what="unreachable:NoExecute taint")
    t = next(t for t in node_obj(core, b.name).spec.taints if t.key == UNREACHABLE
             and t.effect == "NoExecute")
    assert t.time_added is not None
    wait_until(lambda: (UNREACHABLE, "NoSchedule") in taints(core, b.name), timeout=10,
               what="unreachable:NoSchedule taint")
    assert (NOT_READY, "NoExecute") not in taints(core, b.name)
    wait_until(lambda: all(condition(p.status.conditions, "Ready").status == "False"
                           for p in core.list_namespaced_pod(ns).items
                           if p.spec.node_name == b.name),
               timeout=15, what="b's pods Ready=False")
    assert any("NodeNotReady" == e.reason for e in core.list_namespaced_event(ns).items)

    # The 5 s toleration runs out: evicted (Terminating: no agent finishes it yet).
    def evicted(name):
        def check():
            try:
                p = core.read_namespaced_pod(name, ns)
            except kubernetes.client.ApiException as e:
                return e.status == 404
            return p.metadata.deletion_timestamp is not None and p
        return check
    p = wait_until(evicted("tolerant"), timeout=20, what="tolerant pod evicted")
    if p is not True:
        target = condition(p.status.conditions, "DisruptionTarget")
        assert target is not None and target.reason == "DeletionByTaintManager"
        assert target.message == "Taint manager: deleting due to NoExecute taint"
    wait_until(lambda: events_for(core, ns, "tolerant", "TaintManagerEviction"), timeout=10,
               what="TaintManagerEviction event")
    assert events_for(core, ns, "tolerant", "TaintManagerEviction") == [
        f"Marking for deletion Pod {ns}/tolerant"]

    # The Deployment's pod is recreated on a.
    new = wait_until(lambda: [p for p in web_pods()
                              if p.spec.node_name == a.name and running_ready(p)],
                     timeout=60, what="replacement pod Running on a")
    assert new[0].metadata.name != web
    # The default pod (300 s) stays.
    default = core.read_namespaced_pod("default", ns)
    assert default.metadata.deletion_timestamp is None

    # The agent comes back: Ready, no taint, the evicted pods' containers gone.
    b.start()
    wait_until(lambda: ready_status(core, b.name) == "True", timeout=60, what="b Ready again")
    wait_until(lambda: not {(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule"),
                            (NOT_READY, "NoExecute"), (NOT_READY, "NoSchedule")}
               & taints(core, b.name),
               timeout=20, what="b's taints removed")

    def gone(name):
        try:
            core.read_namespaced_pod(name, ns)
        except kubernetes.client.ApiException as e:
            return e.status == 404
        return False
    wait_until(lambda: gone("tolerant") and gone(web), timeout=60,
               what="evicted pods finished by the agent")
    wait_until(lambda: not containers_left(b, evicted_ids), timeout=30,
               what="no container left of the deleted pods")
    wait_until(lambda: running_ready(core.read_namespaced_pod("default", ns)), timeout=60,
               what="the default pod Ready again")
    assert core.read_namespaced_pod("default", ns).spec.node_name == b.name
    apps.delete_namespaced_deployment("web", ns)


def test_cordon_drain_uncordon(cluster):
    core = kubernetes.client.CoreV1Api(cluster.client)
    a, b = cluster.agents
    ns = cluster.create_namespace()
    image = cluster.images.busybox
    ds = {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "ds"}},
                 "template": {"metadata": {"labels": {"app": "ds"}},
                              "spec": {"terminationGracePeriodSeconds": 1,
                                       "containers": [{"name": "app", "image": image,
                                                       "command": ["sleep", "3600"]}]}}},
    }
    deploy = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "spread"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "spread"}},
                 "template": {"metadata": {"labels": {"app": "spread"}},
                              "spec": {"terminationGracePeriodSeconds": 1,
                                       "volumes": [{"name": "scratch", "emptyDir": {}}],
                                       "containers": [{"name": "app", "image": image,
                                                       "command": ["sleep", "3600"]}]}}},
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(
        pod_on("on-a", a.name, image), pod_on("on-b", b.name, image), ds, deploy))

    def pods():
        return [p for p in core.list_namespaced_pod(ns).items
                if p.metadata.deletion_timestamp is None]
    wait_until(lambda: len(pods()) == 6 and all(running_ready(p) for p in pods()),
               timeout=90, what="pods Running on both nodes")
    assert {p.spec.node_name for p in pods()} == {a.name, b.name}

    cluster.kubectl("cordon", b.name)
    wait_until(lambda: (UNSCHEDULABLE, "NoSchedule") in taints(core, b.name), timeout=15,
               what="unschedulable taint")
    out = cluster.kubectl("drain", b.name, "--ignore-daemonsets", "--delete-emptydir-data",
                          "--force", "--timeout=90s", timeout=120).stdout
    assert f"node/{b.name} drained" in out
    # Only the DaemonSet's pod is left on b; the Deployment's pods all run on a.
    left = [p for p in pods() if p.spec.node_name == b.name]
    assert [p.metadata.labels.get("app") for p in left] == ["ds"]
    wait_until(lambda: [p for p in pods() if p.metadata.labels.get("app") == "spread"
                        and running_ready(p)] and
               all(p.spec.node_name == a.name for p in pods()
                   if p.metadata.labels.get("app") == "spread"),
               timeout=60, what="the Deployment's pods on a")
    node_b = cluster.kubectl("get", "node", b.name).stdout
    assert "SchedulingDisabled" in node_b

    cluster.kubectl("uncordon", b.name)
    wait_until(lambda: (UNSCHEDULABLE, "NoSchedule") not in taints(core, b.name), timeout=15,
               what="unschedulable taint gone")
    cluster.kubectl("run", "after", "-n", ns, f"--image={image}", "--restart=Never",
                    "--overrides",
                    '{"spec":{"nodeSelector":{"kubernetes.io/hostname":"%s"}}}' % b.name,
                    "--", "sleep", "3600")
    wait_until(lambda: running_ready(core.read_namespaced_pod("after", ns)), timeout=60,
               what="a new pod Running on the uncordoned node")
    cluster.kubectl("delete", "deploy,ds", "--all", "-n", ns, "--wait=true", timeout=120)
