"""The garbage collector and delete propagation (issue 14): background, foreground and orphan
deletes through kubectl's `--cascade` and the Python client's `propagationPolicy`, dependents
of absent owners collected, references to absent owners dropped, the namespace rules, and a
restarted controller finishing what was left. Owners and dependents are ConfigMaps, pods
(unscheduled: no node, so they go at once) and a PriorityClass, the kinds served today."""

from __future__ import annotations

import json
import queue
import threading
import uuid

import kubernetes
import pytest

import harness
from conftest import Cluster
from helpers import pod_manifest, wait_until
from test_node_pods import wait_phase

GC_DEADLINE = 30  # seconds for the collector to act


def ref(obj, block: bool = False) -> dict:
    """An owner reference to a Python-client object."""
    return {"apiVersion": obj.api_version or "v1", "kind": obj.kind or "ConfigMap",
            "name": obj.metadata.name, "uid": obj.metadata.uid, "blockOwnerDeletion": block}


def config_map(core, ns: str, name: str, owners=(), finalizers=()):
    cm = core.create_namespaced_config_map(ns, {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": list(owners),
                     "finalizers": list(finalizers)},
        "data": {"k": "v"}})
    cm.api_version, cm.kind = "v1", "ConfigMap"
    return cm


def pod(core, ns: str, name: str, owners=()):
    manifest = pod_manifest(name)
    manifest["metadata"]["ownerReferences"] = list(owners)
    return core.create_namespaced_pod(ns, manifest)


def gone(read) -> bool:
    try:
        read()
    except kubernetes.client.ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


def delete_with(core, ns: str, name: str, policy: str) -> dict:
    """Deletes a ConfigMap with a propagation policy; the metadata of the marked object the
    API answers with (the client types that answer as a Status, so it comes as a dict)."""
    answer = core.delete_namespaced_config_map(
        name, ns, body=kubernetes.client.V1DeleteOptions(propagation_policy=policy))
    if not isinstance(answer, dict):
        answer = core.api_client.sanitize_for_serialization(answer)
    return answer.get("metadata") or {}


def wait_gone(read, what: str, timeout: float = GC_DEADLINE):
    wait_until(lambda: gone(read), timeout=timeout, what=f"{what} gone")


def test_background_delete_removes_dependents(cluster, ns, core):
    owner = config_map(core, ns, "owner")
    config_map(core, ns, "dep-cm", owners=[ref(owner)])
    pod(core, ns, "dep-pod", owners=[ref(owner)])
    bystander = config_map(core, ns, "bystander")
    cluster.kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=background")
    assert gone(lambda: core.read_namespaced_config_map("owner", ns)), \
        "a background delete removes the owner at once"
    wait_gone(lambda: core.read_namespaced_config_map("dep-cm", ns), "dependent ConfigMap")
    wait_gone(lambda: core.read_namespaced_pod("dep-pod", ns), "dependent pod")
    assert core.read_namespaced_config_map("bystander", ns).metadata.uid == bystander.metadata.uid


def test_python_client_default_delete_is_background(cluster, ns, core):
    owner = pod(core, ns, "owner-pod")
    owner.api_version, owner.kind = "v1", "Pod"
    config_map(core, ns, "dep", owners=[ref(owner)])
    core.delete_namespaced_pod("owner-pod", ns)
    wait_gone(lambda: core.read_namespaced_config_map("dep", ns), "dependent of a pod")


def test_foreground_delete_waits_for_blocking_dependents(cluster, ns, core):
    owner = config_map(core, ns, "owner")
    # The blocking dependent is held by a finalizer of its own, so the owner must wait.
    config_map(core, ns, "blocker", owners=[ref(owner, block=True)],
               finalizers=["example.com/hold"])
    pod(core, ns, "loose", owners=[ref(owner)])

    events: queue.Queue = queue.Queue()
    w = kubernetes.watch.Watch()
    rv = core.read_namespaced_config_map("owner", ns).metadata.resource_version

    def watch():
        for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv,
                           field_selector="metadata.name=owner", timeout_seconds=GC_DEADLINE * 3):
            events.put((ev["type"], ev["object"]))
            if ev["type"] == "DELETED":
                break

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    marked = delete_with(core, ns, "owner", "Foreground")
    assert marked.get("deletionTimestamp"), marked
    assert marked.get("finalizers") == ["foregroundDeletion"]

    wait_gone(lambda: core.read_namespaced_pod("loose", ns), "non-blocking dependent")
    blocker = wait_until(
        lambda: (b := core.read_namespaced_config_map("blocker", ns)).metadata.deletion_timestamp
        and b, timeout=GC_DEADLINE, what="the blocking dependent marked for deletion")
    assert blocker.metadata.finalizers == ["example.com/hold"]
    still = core.read_namespaced_config_map("owner", ns)
    assert still.metadata.deletion_timestamp is not None
    assert still.metadata.finalizers == ["foregroundDeletion"], \
        "the owner waits while a blockOwnerDeletion dependent exists"

    core.patch_namespaced_config_map("blocker", ns, {"metadata": {"finalizers": None}})
    wait_gone(lambda: core.read_namespaced_config_map("blocker", ns), "blocking dependent")
    wait_gone(lambda: core.read_namespaced_config_map("owner", ns), "foreground owner")

    watcher.join(timeout=GC_DEADLINE)
    w.stop()
    seen = []
    while not events.empty():
        seen.append(events.get())
    kinds = [t for t, _ in seen]
    assert kinds[-1] == "DELETED", kinds
    marked_events = [o for t, o in seen if t == "MODIFIED"
                     and o.metadata.deletion_timestamp is not None
                     and o.metadata.finalizers == ["foregroundDeletion"]]
    assert marked_events, f"a watch shows the owner marked with foregroundDeletion: {kinds}"


def test_kubectl_cascade_foreground_without_blockers(cluster, ns, core):
    owner = config_map(core, ns, "owner")
    config_map(core, ns, "dep", owners=[ref(owner, block=True)])
    cluster.kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=foreground",
                    "--timeout=60s")
    assert gone(lambda: core.read_namespaced_config_map("dep", ns)), \
        "the owner of a foreground delete goes only after its blocking dependents"
    assert gone(lambda: core.read_namespaced_config_map("owner", ns))


def test_orphan_delete_keeps_dependents_without_the_reference(cluster, ns, core):
    owner = config_map(core, ns, "owner")
    other = config_map(core, ns, "other-owner")
    config_map(core, ns, "dep", owners=[ref(owner), ref(other)])
    pod(core, ns, "dep-pod", owners=[ref(owner)])
    cluster.kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=orphan",
                    "--timeout=60s")
    wait_gone(lambda: core.read_namespaced_config_map("owner", ns), "orphaning owner")
    dep = core.read_namespaced_config_map("dep", ns)
    assert [r.uid for r in dep.metadata.owner_references] == [other.metadata.uid]
    assert core.read_namespaced_pod("dep-pod", ns).metadata.owner_references is None


def test_orphan_finalizer_while_marked_then_background_redelete(cluster, ns, core):
    """An owner marked by a foreground delete, deleted again with `Orphan`, switches
    finalizers as upstream does; its dependents are orphaned."""
    owner = config_map(core, ns, "owner", finalizers=["example.com/hold"])
    config_map(core, ns, "dep", owners=[ref(owner)])
    first = delete_with(core, ns, "owner", "Foreground")
    assert sorted(first["finalizers"]) == ["example.com/hold", "foregroundDeletion"]
    again = delete_with(core, ns, "owner", "Orphan")
    assert "foregroundDeletion" not in again["finalizers"], again
    # The orphan finalizer goes once the dependent lost its reference (unless the GC was
    # faster than the foreground pass, in which case the dependent is gone).
    wait_until(lambda: "orphan" not in
               (core.read_namespaced_config_map("owner", ns).metadata.finalizers or []),
               timeout=GC_DEADLINE, what="orphan finalizer removed")
    try:
        dep = core.read_namespaced_config_map("dep", ns)
        assert dep.metadata.owner_references is None
    except kubernetes.client.ApiException as e:
        assert e.status == 404
    core.patch_namespaced_config_map("owner", ns, {"metadata": {"finalizers": None}})
    wait_gone(lambda: core.read_namespaced_config_map("owner", ns), "owner")


def test_dependent_of_a_nonexistent_owner_is_deleted(cluster, ns, core):
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "never-was",
             "uid": str(uuid.uuid4())}
    config_map(core, ns, "orphaned", owners=[ghost])
    wait_gone(lambda: core.read_namespaced_config_map("orphaned", ns), "dependent of no owner")


def test_owner_replaced_by_a_new_uid_counts_as_absent(cluster, ns, core):
    old = config_map(core, ns, "owner")
    core.delete_namespaced_config_map("owner", ns)
    config_map(core, ns, "owner")  # same name, new uid
    config_map(core, ns, "dep", owners=[ref(old)])
    wait_gone(lambda: core.read_namespaced_config_map("dep", ns), "dependent of a replaced owner")


def test_two_owners_one_absent_keeps_the_dependent(cluster, ns, core):
    present = config_map(core, ns, "present")
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost",
             "uid": str(uuid.uuid4())}
    config_map(core, ns, "dep", owners=[ref(present), ghost])
    wait_until(lambda: [r.uid for r in
                        core.read_namespaced_config_map("dep", ns).metadata.owner_references]
               == [present.metadata.uid],
               timeout=GC_DEADLINE, what="the reference to the absent owner removed")


def test_cluster_scoped_dependent_of_a_namespaced_owner_is_reported(cluster, ns, core):
    owner = config_map(core, ns, "owner")
    sched = kubernetes.client.SchedulingV1Api(cluster.client)
    name = f"gc-{ns}"
    sched.create_priority_class({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": name, "ownerReferences": [ref(owner)]}, "value": 10})
    try:
        def reported():
            out = cluster.kubectl("get", "events", "-A", "-o", "json",
                                  "--field-selector=reason=OwnerRefInvalidNamespace").stdout
            return [e for e in json.loads(out)["items"]
                    if e["involvedObject"].get("name") == name]
        events = wait_until(reported, timeout=GC_DEADLINE, what="OwnerRefInvalidNamespace event")
        assert events[0]["type"] == "Warning"
        assert owner.metadata.uid in events[0]["message"]
        # Unresolvable, as upstream: the dependent is not collected.
        assert sched.read_priority_class(name).metadata.owner_references[0].uid == \
            owner.metadata.uid
    finally:
        sched.delete_priority_class(name)


def test_owner_in_another_namespace_is_absent_and_reported(cluster, ns, core):
    owner = config_map(core, ns, "owner")
    other = cluster.create_namespace()
    try:
        config_map(core, other, "dep", owners=[ref(owner)])
        wait_gone(lambda: core.read_namespaced_config_map("dep", other),
                  "dependent naming an owner of another namespace")

        def reported():
            out = cluster.kubectl("get", "events", "-n", other, "-o", "json",
                                  "--field-selector=reason=OwnerRefInvalidNamespace").stdout
            return json.loads(out)["items"]
        events = wait_until(reported, timeout=GC_DEADLINE, what="OwnerRefInvalidNamespace event")
        assert events[0]["involvedObject"]["name"] == "dep"
        assert events[0]["message"] == (
            f"ownerRef [v1/ConfigMap, namespace: {other}, name: owner, "
            f"uid: {owner.metadata.uid}] does not exist in namespace \"{other}\"")
        assert core.read_namespaced_config_map("owner", ns).metadata.uid == owner.metadata.uid
    finally:
        core.delete_namespace(other)


def test_delete_options_both_policies_are_invalid(cluster, ns, core):
    config_map(core, ns, "cm")
    with pytest.raises(kubernetes.client.ApiException) as e:
        core.delete_namespaced_config_map("cm", ns, body=kubernetes.client.V1DeleteOptions(
            orphan_dependents=True, propagation_policy="Foreground"))
    assert e.value.status == 422
    status = json.loads(e.value.body)
    assert status["message"] == ('DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: '
                                 'Invalid value: "Foreground": orphanDependents and '
                                 'deletionPropagation cannot be both set')
    assert status["details"]["causes"][0]["field"] == "propagationPolicy"
    # The deprecated field alone still works: orphan.
    dep_owner = core.read_namespaced_config_map("cm", ns)
    dep_owner.api_version, dep_owner.kind = "v1", "ConfigMap"
    config_map(core, ns, "dep", owners=[ref(dep_owner)])
    core.delete_namespaced_config_map(
        "cm", ns, body=kubernetes.client.V1DeleteOptions(orphan_dependents=True))
    wait_gone(lambda: core.read_namespaced_config_map("cm", ns), "owner deleted with orphanDependents")
    assert core.read_namespaced_config_map("dep", ns).metadata.owner_references is None


@pytest.fixture
def server(tmp_path):
    """A server of its own (this test restarts it), stopped by PID at the end."""
    s = harness.Peapod(tmp_path)
    try:
        yield s
    finally:
        s.stop()


def test_restarted_collector_finishes_what_was_left(server):
    server.start()
    c = Cluster(server, server.workdir)
    core = kubernetes.client.CoreV1Api(c.client)
    ns = c.create_namespace()
    owner = config_map(core, ns, "owner")
    config_map(core, ns, "blocker", owners=[ref(owner, block=True)],
               finalizers=["example.com/hold"])
    delete_with(core, ns, "owner", "Foreground")
    wait_until(lambda: core.read_namespaced_config_map("blocker", ns).metadata.deletion_timestamp,
               timeout=GC_DEADLINE, what="the blocking dependent marked for deletion")
    c.close()
    server.stop()

    server.start()
    core = kubernetes.client.CoreV1Api(c.client)
    # Left from before the restart: an owner waiting in the foreground, and a dependent
    # whose owner no longer exists.
    assert core.read_namespaced_config_map("owner", ns).metadata.finalizers == \
        ["foregroundDeletion"]
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": str(uuid.uuid4())}
    config_map(core, ns, "stray", owners=[ghost])
    core.patch_namespaced_config_map("blocker", ns, {"metadata": {"finalizers": None}})
    wait_gone(lambda: core.read_namespaced_config_map("blocker", ns), "blocker")
    wait_gone(lambda: core.read_namespaced_config_map("owner", ns),
              "the owner, finished by the restarted collector")
    wait_gone(lambda: core.read_namespaced_config_map("stray", ns), "stray dependent")
    c.close()


def test_foreground_delete_of_a_running_pod_keeps_its_grace_period(crun_node):
    """A pod on a node, deleted in the foreground, terminates gracefully as always; it goes
    once its grace is over and its blocking dependent is gone."""
    n = crun_node
    core = kubernetes.client.CoreV1Api(n.client)
    ns = n.create_namespace()
    try:
        stoppable = {"name": "app", "image": n.images.busybox,
                     "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}
        owner = core.create_namespaced_pod(ns, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "owner"},
            "spec": {"containers": [stoppable], "terminationGracePeriodSeconds": 20}})
        owner.api_version, owner.kind = "v1", "Pod"
        wait_phase(n, ns, "owner", "Running")
        config_map(core, ns, "dep", owners=[ref(owner, block=True)])
        marked = core.delete_namespaced_pod(
            "owner", ns, body=kubernetes.client.V1DeleteOptions(propagation_policy="Foreground"))
        if not isinstance(marked, dict):
            marked = core.api_client.sanitize_for_serialization(marked)
        assert marked["metadata"]["deletionGracePeriodSeconds"] == 20, marked["metadata"]
        assert marked["metadata"]["finalizers"] == ["foregroundDeletion"]
        wait_gone(lambda: core.read_namespaced_config_map("dep", ns), "the pod's dependent")
        wait_gone(lambda: core.read_namespaced_pod("owner", ns), "the pod", timeout=60)
    finally:
        core.delete_namespace(ns)
