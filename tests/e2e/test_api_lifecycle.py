"""Binding, the status subresource, graceful deletion of pods on nodes and delete
preconditions: what the scheduler, the node agent and careful clients rely on."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import pod_manifest

# API semantics only: no scheduler binding pods or writing their status underneath
# (these tests bind by hand and compare exact watch streams and resource versions).
PEAPOD_ARGS = ["--no-scheduler"]


def bind(core, ns, name, node):
    # The generated client cannot decode the Status a binding answers with, so read it raw.
    body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
    resp = core.create_namespaced_pod_binding(name, ns, body, _preload_content=False)
    return resp.status, json.loads(resp.data)


def test_binding_assigns_a_node_once(core, ns):
    core.create_namespaced_pod(ns, pod_manifest("bound"))
    status, body = bind(core, ns, "bound", "node-a")
    assert status == 201 and body["status"] == "Success", body
    pod = core.read_namespaced_pod("bound", ns)
    assert pod.spec.node_name == "node-a"
    scheduled = [c for c in pod.status.conditions or [] if c.type == "PodScheduled"]
    assert [c.status for c in scheduled] == ["True"], pod.status.conditions
    with pytest.raises(ApiException) as err:
        bind(core, ns, "bound", "node-b")
    assert err.value.status == 409
    assert "already assigned to node" in err.value.body
    assert core.read_namespaced_pod("bound", ns).spec.node_name == "node-a"


def test_status_subresource_owns_status(core, ns):
    core.create_namespaced_pod(ns, pod_manifest("st"))
    core.patch_namespaced_pod_status("st", ns, {"status": {"phase": "Running", "podIP": "10.0.0.7"}})
    pod = core.read_namespaced_pod("st", ns)
    assert (pod.status.phase, pod.status.pod_ip) == ("Running", "10.0.0.7")
    # The main resource ignores status: a client cannot fake it through a plain patch.
    core.patch_namespaced_pod("st", ns, {"metadata": {"labels": {"x": "1"}},
                                         "status": {"phase": "Failed"}})
    pod = core.read_namespaced_pod("st", ns)
    assert pod.status.phase == "Running" and pod.metadata.labels == {"x": "1"}
    # And the status subresource cannot change the spec.
    core.patch_namespaced_pod_status("st", ns, {"spec": {"activeDeadlineSeconds": 5}})
    assert core.read_namespaced_pod("st", ns).spec.active_deadline_seconds is None


def test_pod_on_a_node_terminates_gracefully(cluster, core, ns):
    core.create_namespaced_pod(ns, pod_manifest("graceful"))
    bind(core, ns, "graceful", "node-a")
    core.delete_namespaced_pod("graceful", ns)
    pod = core.read_namespaced_pod("graceful", ns)
    assert pod.metadata.deletion_timestamp is not None
    assert pod.metadata.deletion_grace_period_seconds == 30
    out = cluster.kubectl("get", "pod", "graceful", "-n", ns).stdout
    assert "Terminating" in out, out
    # A later delete may shorten the grace period; zero (the node's confirmation, or
    # --force --grace-period=0) removes it at once.
    core.delete_namespaced_pod("graceful", ns, grace_period_seconds=10)
    assert core.read_namespaced_pod("graceful", ns).metadata.deletion_grace_period_seconds == 10
    core.delete_namespaced_pod("graceful", ns, grace_period_seconds=0)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("graceful", ns)
    assert err.value.status == 404


def test_unbound_pod_is_deleted_at_once(core, ns):
    core.create_namespaced_pod(ns, pod_manifest("pending"))
    core.delete_namespaced_pod("pending", ns)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("pending", ns)
    assert err.value.status == 404


def test_delete_preconditions(core, ns):
    pod = core.create_namespaced_pod(ns, pod_manifest("pre"))
    wrong = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-the-uid"))
    with pytest.raises(ApiException) as err:
        core.delete_namespaced_pod("pre", ns, body=wrong)
    assert err.value.status == 409 and "Precondition failed" in err.value.body
    stale = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1"))
    with pytest.raises(ApiException) as err:
        core.delete_namespaced_pod("pre", ns, body=stale)
    assert err.value.status == 409
    right = client.V1DeleteOptions(preconditions=client.V1Preconditions(
        uid=pod.metadata.uid, resource_version=pod.metadata.resource_version))
    core.delete_namespaced_pod("pre", ns, body=right)
    assert core.list_namespaced_pod(ns).items == []


def test_finalizers_hold_an_object_until_removed(core, ns):
    core.create_namespaced_config_map(ns, {"metadata": {"name": "held",
                                                         "finalizers": ["example.com/hold"]}})
    core.delete_namespaced_config_map("held", ns)
    cm = core.read_namespaced_config_map("held", ns)
    assert cm.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("held", ns)
    assert err.value.status == 404
