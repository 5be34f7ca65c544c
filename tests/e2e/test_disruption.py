"""PodDisruptionBudgets with real pods (issue 14): the disruption controller fills a PDB's
status from the pods it selects (bare pods are their own expected set under an integer
minAvailable, as upstream), `pods/eviction` refuses with 429 and the DisruptionBudget cause
when the budget is exhausted and admits an eviction within it, and `kubectl drain`
respects the budget. crun only: nothing here depends on the OCI runtime."""

from __future__ import annotations

import json
import re

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from helpers import to_yaml, wait_until
from test_node_pods import pod, wait_ready

REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


def start_pods(n, ns: str, names: list[str]) -> None:
    for name in names:
        p = pod(name, n.images.busybox, ["sleep", "3600"], terminationGracePeriodSeconds=1)
        p["metadata"]["labels"] = {"app": ns}
        n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(p))
    for name in names:
        wait_ready(n, ns, name)


def pdb_status(n, ns: str, name: str) -> dict:
    obj = json.loads(n.kubectl("-n", ns, "get", "pdb", name, "-o", "json").stdout)
    return {**obj["status"], "generation": obj["metadata"]["generation"]}


def wait_status(n, ns: str, name: str, **want) -> dict:
    def check():
        s = pdb_status(n, ns, name)
        return s if all(s.get(k) == v for k, v in want.items()) else None
    return wait_until(check, timeout=30, interval=0.2, what=f"PDB {name} status {want}")


def evict(core, ns: str, name: str):
    body = kubernetes.client.V1Eviction(
        metadata=kubernetes.client.V1ObjectMeta(name=name, namespace=ns))
    return core.create_namespaced_pod_eviction(name, ns, body)


def test_controller_status_and_evictions_within_the_budget(crun_node, pod_ns):
    n = crun_node
    core = kubernetes.client.CoreV1Api(n.client)
    start_pods(n, pod_ns, ["web-a", "web-b"])
    n.kubectl("-n", pod_ns, "create", "pdb", "web", f"--selector=app={pod_ns}", "--min-available=2")

    s = wait_status(n, pod_ns, "web", expectedPods=2, currentHealthy=2, desiredHealthy=2,
                    observedGeneration=1)
    assert s["disruptionsAllowed"] == 0
    [cond] = s["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == \
        ("DisruptionAllowed", "False", "InsufficientPods")
    out = n.kubectl("-n", pod_ns, "get", "pdb", "web").stdout
    assert out.split("\n")[1].split()[1:4] == ["2", "N/A", "0"], out

    # Exhausted: 429 with upstream's message and cause; the pod stays.
    with pytest.raises(ApiException) as e:
        evict(core, pod_ns, "web-a")
    assert e.value.status == 429
    body = json.loads(e.value.body)
    assert (body["reason"], body["message"]) == ("TooManyRequests", REFUSED)
    assert body["details"]["causes"] == [{
        "reason": "DisruptionBudget",
        "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}]
    assert core.read_namespaced_pod("web-a", pod_ns).metadata.deletion_timestamp is None

    # A looser budget, once observed, allows one eviction.
    n.kubectl("-n", pod_ns, "patch", "pdb", "web", "--type=merge", "-p", '{"spec":{"minAvailable":1}}')
    s = wait_status(n, pod_ns, "web", observedGeneration=2, disruptionsAllowed=1, desiredHealthy=1)
    assert s["generation"] == 2
    assert (s["conditions"][0]["status"], s["conditions"][0]["reason"]) == ("True", "SufficientPods")
    evict(core, pod_ns, "web-a")
    # The eviction used the budget at once, so the next one is refused before the
    # controller has seen the pod go.
    with pytest.raises(ApiException) as e:
        evict(core, pod_ns, "web-b")
    assert e.value.status == 429
    # 2 healthy until the controller sees web-a terminating, 1 after.
    assert re.fullmatch(r"The disruption budget web needs 1 healthy pods and has [12] currently",
                        json.loads(e.value.body)["details"]["causes"][0]["message"]), e.value.body

    wait_until(lambda: "web-a" not in n.kubectl("-n", pod_ns, "get", "pods", "-o", "name").stdout,
               timeout=60, what="web-a deleted")
    s = wait_status(n, pod_ns, "web", expectedPods=1, currentHealthy=1, disruptionsAllowed=0)
    assert not s.get("disruptedPods"), s
    assert core.read_namespaced_pod("web-b", pod_ns).metadata.deletion_timestamp is None

    # Two budgets over one pod: upstream's eviction subresource refuses to choose.
    n.kubectl("-n", pod_ns, "create", "-f", "-", input=to_yaml({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "everything"},
        "spec": {"maxUnavailable": 1, "selector": {}}}))
    with pytest.raises(ApiException) as e:
        evict(core, pod_ns, "web-b")
    assert e.value.status == 500
    assert json.loads(e.value.body)["message"] == (
        "Internal error occurred: This pod has more than one PodDisruptionBudget, which the "
        "eviction subresource does not support.")


def test_drain_respects_the_budget(crun_node, pod_ns):
    n = crun_node
    node = json.loads(n.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]["metadata"]["name"]
    start_pods(n, pod_ns, ["db-a", "db-b"])
    n.kubectl("-n", pod_ns, "create", "pdb", "db", f"--selector=app={pod_ns}", "--min-available=1")
    wait_status(n, pod_ns, "db", expectedPods=2, currentHealthy=2, disruptionsAllowed=1)
    try:
        cp = n.kubectl("drain", node, "--force", "--pod-selector", f"app={pod_ns}",
                       "--timeout=15s", check=False, timeout=60)
        # One pod may go; the other is held by the budget until drain gives up.
        assert cp.returncode != 0, cp.stdout
        assert REFUSED in cp.stderr, cp.stderr
        assert cp.stdout.count(" evicted") == 1, cp.stdout
        left = n.kubectl("get", "pods", "-n", pod_ns, "-o", "name").stdout.split()
        assert len(left) == 1, left
        wait_status(n, pod_ns, "db", expectedPods=1, currentHealthy=1, disruptionsAllowed=0)
    finally:
        n.kubectl("uncordon", node)
