"""The namespace controller (issue 13): deleting a namespace deletes everything in it through
the API — pods running on a node stop gracefully first — while the namespace reports
upstream's deletion conditions, then it is finalized and goes. And `namespaces/{name}/finalize`
is how any finalizer of a namespace is dropped."""

from __future__ import annotations

import datetime
import json
import re
import time

import kubernetes
import pytest

from helpers import to_yaml, wait_until
from test_node_pods import wait_phase

DELETION_DEADLINE = 90  # seconds for a namespace with running pods to go


def conditions(core, ns: str) -> dict[str, tuple[str, str, str]]:
    """The namespace's conditions: type → (status, reason, message); {} once it is gone."""
    try:
        status = core.read_namespace(ns).status
    except kubernetes.client.ApiException as e:
        if e.status == 404:
            return {}
        raise
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions or []}


def gone(read) -> bool:
    try:
        read()
    except kubernetes.client.ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


def test_deleting_a_namespace_deletes_pods_and_everything_else(crun_node):
    n = crun_node
    core = kubernetes.client.CoreV1Api(n.client)
    ns = n.create_namespace()
    # The pods stop 5 s after SIGTERM, well within their grace period: long enough for the
    # controller's first pass over every discovered kind to see them, even on a busy machine.
    stoppable = {"name": "app", "image": n.images.busybox,
                 "command": ["sh", "-c", "trap 'sleep 5; exit 0' TERM; sleep 3600 & wait"]}
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
             "spec": {"containers": [stoppable], "terminationGracePeriodSeconds": 10}}
            for name in ("web", "worker")]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    content = [
        *pods,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
         "data": {"mode": "fast"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
         "stringData": {"password": "hunter2"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder"}},
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "leader"},
         "spec": {"holderIdentity": "web"}},
        {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1"},
         "involvedObject": {"kind": "Pod", "name": "web", "namespace": ns},
         "reason": "Testing", "message": "core event", "type": "Normal",
         "firstTimestamp": now, "lastTimestamp": now, "source": {"component": "e2e"}},
        {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "web.2"},
         "eventTime": now.replace("Z", ".000000Z"), "reportingController": "e2e/test",
         "reportingInstance": "e2e", "action": "Testing", "reason": "Testing",
         "regarding": {"kind": "Pod", "name": "web", "namespace": ns},
         "note": "events.k8s.io event", "type": "Normal"},
    ]
    n.kubectl("create", "-n", ns, "-f", "-", input=to_yaml(*content))
    for name in ("web", "worker"):
        wait_phase(n, ns, name, "Running")

    started = time.monotonic()
    n.kubectl("delete", "namespace", ns, "--wait=false")
    # While the pods stop, the namespace says what it waits for, in upstream's words.
    def waiting_for_pods():
        c = conditions(core, ns)
        remaining = c.get("NamespaceContentRemaining")
        return c if remaining and remaining[0] == "True" else None
    seen = wait_until(waiting_for_pods, timeout=30, interval=0.1,
                      what="NamespaceContentRemaining while the pods stop")
    status, reason, message = seen["NamespaceContentRemaining"]
    assert reason == "SomeResourcesRemain", seen
    # Both pods, or the one not gone yet.
    assert re.fullmatch(r"Some resources are remaining: pods\. has [12] resource instances",
                        message), seen
    assert seen["NamespaceDeletionDiscoveryFailure"] == (
        "False", "ResourcesDiscovered", "All resources successfully discovered"), seen
    assert seen["NamespaceDeletionContentFailure"][0] == "False", seen
    assert json.loads(n.kubectl("get", "ns", ns, "-o", "json").stdout)["status"]["phase"] \
        == "Terminating"

    wait_until(lambda: gone(lambda: core.read_namespace(ns)), timeout=DELETION_DEADLINE,
               interval=0.2, what=f"namespace {ns} gone")
    took = time.monotonic() - started
    # Every kind it held went with it.
    for kind in ("pods", "configmaps", "secrets", "serviceaccounts", "leases", "events"):
        out = n.kubectl("get", kind, "-A", "--field-selector", f"metadata.namespace={ns}",
                        "-o", "name").stdout
        assert out.strip() == "", f"{kind} left in {ns}: {out}"
    n.node.wait_clean()
    # Pods stop within their 10 s grace and the controller looks again after
    # estimate / 2 + 1 s (upstream's requeue): far from the deadline.
    assert took < 30, f"namespace took {took:.1f}s to go"


def test_namespace_finalizers_are_dropped_through_finalize(cluster, core):
    ns = f"held-{int(time.time() * 1000) % 100000}"
    core.create_namespace({"metadata": {"name": ns},
                           "spec": {"finalizers": ["example.com/hold"]}})
    assert sorted(core.read_namespace(ns).spec.finalizers) == ["example.com/hold", "kubernetes"]
    core.create_namespaced_config_map(ns, {"metadata": {"name": "held",
                                                         "finalizers": ["example.com/cm"]}})
    core.delete_namespace(ns)

    # A ConfigMap held by its finalizer holds the namespace, and the conditions say why.
    def held():
        c = conditions(core, ns)
        return c if c.get("NamespaceFinalizersRemaining", ("",))[0] == "True" else None
    c = wait_until(held, timeout=20, what="NamespaceFinalizersRemaining")
    assert c["NamespaceFinalizersRemaining"][1:] == (
        "SomeFinalizerRemain", "Some finalizers are remaining: example.com/cm in 1 resource instances")
    assert c["NamespaceContentRemaining"][1:] == (
        "SomeResourcesRemain", "Some resources are remaining: configmaps. has 1 resource instances")
    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})

    # Emptied, the controller drops only its own finalizer; the namespace stays for the other.
    def finalized():
        spec = core.read_namespace(ns).spec
        return spec if spec.finalizers == ["example.com/hold"] else None
    wait_until(finalized, timeout=30, what="the kubernetes finalizer dropped")
    c = conditions(core, ns)
    assert c["NamespaceContentRemaining"] == (
        "False", "ContentRemoved", "All content successfully removed"), c
    assert core.read_namespace(ns).status.phase == "Terminating"
    # A plain update cannot drop a namespace finalizer; `finalize` can, and the namespace goes.
    current = core.read_namespace(ns)
    current.spec.finalizers = []
    core.replace_namespace(ns, current)
    assert core.read_namespace(ns).spec.finalizers == ["example.com/hold"]
    current = core.read_namespace(ns)
    current.spec.finalizers = []
    core.replace_namespace_finalize(ns, current)
    assert gone(lambda: core.read_namespace(ns))
    with pytest.raises(kubernetes.client.ApiException) as e:
        core.patch_namespace(ns, {"spec": {"finalizers": []}})
    assert e.value.status == 404
