"""The scheduler inside `peapod server`, driven by the real kubectl 1.37 and the Python client.

No node agent exists yet, so nodes here are plain Node objects created through the API (with
allocatable cpu/memory/pods and a Ready condition): the scheduler binds pods to them, and
records PodScheduled=False with a FailedScheduling event when none fits. Scenarios follow
seed 001 (nodeSelector disktype=ssd) and kube-scheduler's default plugins.

Nodes are cluster-wide, so each test names its own nodes uniquely and removes them, and
force-deletes its pods (bound pods would otherwise wait for a kubelet), so a test never sees
another's nodes or pending pods.
"""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from pathlib import Path

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from helpers import pod_manifest, to_yaml, wait_until

SCHEDULE_TIMEOUT = 30.0  # seconds for the scheduler to act on a change


class Nodes:
    """Creates Node objects for one test and deletes them afterwards."""

    def __init__(self, core: kubernetes.client.CoreV1Api):
        self.core = core
        self.names: list[str] = []
        self.suffix = secrets.token_hex(3)

    def create(self, name: str, cpu: str = "4", memory: str = "8Gi", pods: str = "110",
               labels: dict[str, str] | None = None, taints: list[dict] | None = None,
               unschedulable: bool = False) -> str:
        full = f"{name}-{self.suffix}"
        body = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": full, "labels": {"kubernetes.io/hostname": full, **(labels or {})}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
        }
        self.core.create_node(body)
        self.names.append(full)
        resources = {"cpu": cpu, "memory": memory, "pods": pods}
        # Status through the status subresource, as a kubelet reports it.
        self.core.patch_node_status(full, {"status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "e2e node object"}],
        }})
        return full

    def delete_all(self) -> None:
        for name in self.names:
            try:
                self.core.delete_node(name)
            except ApiException as e:
                if e.status != 404:
                    raise


@pytest.fixture
def core(cluster):
    return kubernetes.client.CoreV1Api(cluster.client)


@pytest.fixture
def nodes(core):
    n = Nodes(core)
    try:
        yield n
    finally:
        n.delete_all()


@pytest.fixture
def ns(cluster, core):
    """A fresh namespace whose pods are force-deleted (grace 0) at teardown, so bound pods
    do not wait for a kubelet and no pending pod outlives its test."""
    name = cluster.create_namespace()
    yield name
    try:
        core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    except ApiException:
        for p in core.list_namespaced_pod(name).items:
            core.delete_namespaced_pod(p.metadata.name, name, grace_period_seconds=0)
    wait_until(lambda: not core.list_namespaced_pod(name).items, timeout=30,
               what=f"pods of {name} gone")
    core.delete_namespace(name)


def node_of(core, ns, name) -> str | None:
    return core.read_namespaced_pod(name, ns).spec.node_name


def wait_bound(core, ns, name, timeout=SCHEDULE_TIMEOUT) -> str:
    return wait_until(lambda: node_of(core, ns, name), timeout=timeout,
                      what=f"pod {name} bound")


def scheduled_condition(core, ns, name):
    pod = core.read_namespaced_pod(name, ns)
    return next((c for c in pod.status.conditions or [] if c.type == "PodScheduled"), None)


def wait_unschedulable(core, ns, name, timeout=SCHEDULE_TIMEOUT):
    """Waits for PodScheduled=False/Unschedulable and returns the condition."""
    def check():
        c = scheduled_condition(core, ns, name)
        return c if c and c.status == "False" and c.reason == "Unschedulable" else None
    return wait_until(check, timeout=timeout, what=f"pod {name} marked Unschedulable")


def pod_events(core, ns, name, reason):
    return [e for e in core.list_namespaced_event(ns).items
            if e.involved_object.name == name and e.reason == reason]


def wait_event(core, ns, name, reason, timeout=SCHEDULE_TIMEOUT):
    return wait_until(lambda: pod_events(core, ns, name, reason), timeout=timeout,
                      what=f"{reason} event for {name}")[0]


def assert_pending(core, ns, name):
    pod = core.read_namespaced_pod(name, ns)
    assert pod.status.phase == "Pending" and not pod.spec.node_name, pod.status


def describe_events(cluster, ns, name) -> str:
    out = cluster.kubectl("describe", "pod", name, "-n", ns).stdout
    return out[out.index("\nEvents:"):]


NODE_SELECTOR_MSG = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."


def test_pod_is_bound_to_a_node(cluster, core, ns, nodes):
    node = nodes.create("plain")
    core.create_namespaced_pod(ns, pod_manifest("web"))
    assert wait_bound(core, ns, "web") == node
    c = scheduled_condition(core, ns, "web")
    assert c is not None and c.status == "True", c
    ev = wait_event(core, ns, "web", "Scheduled")
    assert ev.type == "Normal"
    assert ev.message == f"Successfully assigned {ns}/web to {node}"
    assert ev.source.component == "default-scheduler"
    assert ev.reporting_component == "default-scheduler" and ev.reporting_instance
    assert ev.involved_object.kind == "Pod" and ev.involved_object.api_version == "v1"
    assert ev.involved_object.uid == core.read_namespaced_pod("web", ns).metadata.uid
    assert ev.count == 1 and ev.first_timestamp and ev.last_timestamp
    events = describe_events(cluster, ns, "web")
    assert re.search(rf"^\s+Normal\s+Scheduled\s+\S+\s+default-scheduler\s+"
                     rf"Successfully assigned {ns}/web to {node}$", events, re.M), events
    out = cluster.kubectl("get", "pod", "web", "-n", ns, "-o", "wide").stdout
    assert node in out, out


def test_seed_001_node_selector_waits_for_the_label(cluster, core, ns, nodes, testdata):
    node = nodes.create("plain")
    cluster.kubectl("create", "-n", ns, "-f", str(testdata / "disktype-ssd-pod.yaml"))
    c = wait_unschedulable(core, ns, "ssd-pod")
    assert c.message.startswith(NODE_SELECTOR_MSG), c.message
    assert c.last_transition_time is not None
    assert_pending(core, ns, "ssd-pod")
    ev = wait_event(core, ns, "ssd-pod", "FailedScheduling")
    assert ev.type == "Warning" and ev.message.startswith(NODE_SELECTOR_MSG), ev.message
    assert ev.source.component == "default-scheduler"
    events = describe_events(cluster, ns, "ssd-pod")
    assert re.search(r"^\s+Warning\s+FailedScheduling\s+\S+\s+default-scheduler\s+"
                     + re.escape(NODE_SELECTOR_MSG), events, re.M), events
    out = cluster.kubectl("describe", "pod", "ssd-pod", "-n", ns).stdout
    assert re.search(r"^\s+PodScheduled\s+False\s*$", out, re.M), out
    assert re.search(r"^Node-Selectors:\s+disktype=ssd$", out, re.M), out

    cluster.kubectl("label", "node", node, "disktype=ssd")
    assert wait_bound(core, ns, "ssd-pod") == node
    ev = wait_event(core, ns, "ssd-pod", "Scheduled")
    assert ev.message == f"Successfully assigned {ns}/ssd-pod to {node}"


def test_failed_scheduling_is_not_repeated_as_new_events(cluster, core, ns, nodes):
    """Retries with the same outcome bump one event's count rather than adding events."""
    node = nodes.create("plain")
    core.create_namespaced_pod(ns, pod_manifest("picky", nodeSelector={"zone": "nowhere"}))
    wait_event(core, ns, "picky", "FailedScheduling")
    # Each irrelevant node change retries the pod; the outcome stays the same.
    for i in range(3):
        cluster.kubectl("label", "node", node, f"round={i}", "--overwrite")
        wait_until(lambda: pod_events(core, ns, "picky", "FailedScheduling")[0].count >= i + 2,
                   timeout=SCHEDULE_TIMEOUT, what=f"count {i + 2}")
    evs = pod_events(core, ns, "picky", "FailedScheduling")
    assert len(evs) == 1 and evs[0].count >= 4, evs
    assert evs[0].last_timestamp >= evs[0].first_timestamp


def test_insufficient_cpu_stays_pending(cluster, core, ns, nodes):
    nodes.create("small", cpu="2")
    pod = pod_manifest("hungry")
    pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "3"}}
    core.create_namespaced_pod(ns, pod)
    c = wait_unschedulable(core, ns, "hungry")
    assert c.message.startswith("0/1 nodes are available: 1 Insufficient cpu."), c.message
    assert_pending(core, ns, "hungry")
    ev = wait_event(core, ns, "hungry", "FailedScheduling")
    assert "Insufficient cpu" in ev.message
    assert "Insufficient cpu" in describe_events(cluster, ns, "hungry")


def test_taint_blocks_and_toleration_admits(core, ns, nodes):
    node = nodes.create("tainted", taints=[{"key": "dedicated", "value": "gpu",
                                            "effect": "NoSchedule"}])
    core.create_namespaced_pod(ns, pod_manifest("plain"))
    c = wait_unschedulable(core, ns, "plain")
    assert c.message.startswith(
        "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}."), c.message
    core.create_namespaced_pod(ns, pod_manifest("tolerant", tolerations=[
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]))
    assert wait_bound(core, ns, "tolerant") == node
    assert_pending(core, ns, "plain")


def test_cordoned_node_blocks_until_uncordoned(cluster, core, ns, nodes):
    node = nodes.create("cordon")
    assert cluster.kubectl("cordon", node).stdout.strip() == f"node/{node} cordoned"
    core.create_namespaced_pod(ns, pod_manifest("waiting"))
    c = wait_unschedulable(core, ns, "waiting")
    assert c.message.startswith("0/1 nodes are available: 1 node(s) were unschedulable."), \
        c.message
    assert_pending(core, ns, "waiting")
    cluster.kubectl("uncordon", node)
    assert wait_bound(core, ns, "waiting") == node


def test_no_nodes_at_all(core, ns):
    core.create_namespaced_pod(ns, pod_manifest("alone"))
    c = wait_unschedulable(core, ns, "alone")
    assert c.message == "no nodes available to schedule pods", c.message
    ev = wait_event(core, ns, "alone", "FailedScheduling")
    assert ev.message == "no nodes available to schedule pods"


def test_burst_of_20_pods_fills_two_nodes_without_overcommit(cluster, core, ns, nodes):
    a = nodes.create("burst-a", pods="10")
    b = nodes.create("burst-b", pods="10")
    pods = [pod_manifest(f"b{i:02d}") for i in range(20)]
    cluster.kubectl("create", "-n", ns, "-f", "-", input=to_yaml(*pods))

    def placement():
        items = core.list_namespaced_pod(ns).items
        return items if all(p.spec.node_name for p in items) and len(items) == 20 else None
    items = wait_until(placement, timeout=60, what="all 20 pods bound")
    per_node = Counter(p.spec.node_name for p in items)
    assert per_node == {a: 10, b: 10}, per_node
    # A 21st pod finds both nodes full.
    core.create_namespaced_pod(ns, pod_manifest("b20"))
    c = wait_unschedulable(core, ns, "b20")
    assert c.message.startswith("0/2 nodes are available: 2 Too many pods."), c.message


@pytest.fixture
def priority_class(core, cluster):
    sched = kubernetes.client.SchedulingV1Api(cluster.client)
    name = f"e2e-high-{secrets.token_hex(3)}"
    sched.create_priority_class({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                                 "metadata": {"name": name}, "value": 1000})
    try:
        yield name
    finally:
        sched.delete_priority_class(name)


def test_higher_priority_pod_is_scheduled_first(cluster, core, ns, nodes, priority_class):
    node = nodes.create("one-slot", pods="1", unschedulable=True)
    core.create_namespaced_pod(ns, pod_manifest("low"))
    core.create_namespaced_pod(ns, pod_manifest("high", priorityClassName=priority_class))
    assert core.read_namespaced_pod("high", ns).spec.priority == 1000
    wait_unschedulable(core, ns, "low")
    wait_unschedulable(core, ns, "high")
    # Both wait; room for one appears. The older but lower-priority pod must not get it.
    cluster.kubectl("uncordon", node)
    assert wait_bound(core, ns, "high") == node
    c = wait_until(lambda: (lambda c: c if c and "Too many pods" in (c.message or "") else None)(
        scheduled_condition(core, ns, "low")), timeout=SCHEDULE_TIMEOUT,
        what="low pod reported Too many pods")
    assert c.status == "False"
    assert_pending(core, ns, "low")


def test_pod_for_another_scheduler_is_left_alone(core, ns, nodes):
    nodes.create("plain")
    core.create_namespaced_pod(ns, pod_manifest("custom", schedulerName="my-scheduler"))
    core.create_namespaced_pod(ns, pod_manifest("ours"))
    wait_bound(core, ns, "ours")
    # "ours" was created after "custom" and is already bound: custom was never picked up.
    assert_pending(core, ns, "custom")
    assert scheduled_condition(core, ns, "custom") is None
    assert not pod_events(core, ns, "custom", "FailedScheduling")
