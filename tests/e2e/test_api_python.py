"""The official Python `kubernetes` client against `peapod server`, on SQLite and on etcd."""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import threading
import urllib.error
import urllib.request

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

import harness
from helpers import pod_manifest

# API semantics only: no scheduler binding pods or writing their status underneath
# (these tests bind by hand and compare exact watch streams and resource versions).
PEAPOD_ARGS = ["--no-scheduler"]

# Every namespace holds the CA ConfigMap (root-ca-cert-publisher), as upstream.
ROOT_CA = "kube-root-ca.crt"

WATCH_TIMEOUT = 20  # seconds a watch may stay open in a test


def api_error(call, *args, **kwargs) -> ApiException:
    with pytest.raises(ApiException) as err:
        call(*args, **kwargs)
    return err.value


def reason(e: ApiException) -> str:
    """The `reason` of the Status body the server answered with."""
    return json.loads(e.body)["reason"]


def pod_names(pods) -> list[str]:
    return [p.metadata.name for p in pods.items]


# --- namespaces -------------------------------------------------------------------------


def test_default_namespaces_exist(core):
    namespaces = {n.metadata.name: n for n in core.list_namespace().items}
    for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert name in namespaces, sorted(namespaces)
        assert namespaces[name].status.phase == "Active"


# --- pods: create, read, list, patch, delete --------------------------------------------


def test_create_get_list_delete_pod(core, ns):
    created = core.create_namespaced_pod(ns, pod_manifest("p1", {"app": "web"}))
    assert created.metadata.name == "p1" and created.metadata.namespace == ns
    assert created.metadata.uid and created.metadata.resource_version
    assert created.status.phase == "Pending"

    got = core.read_namespaced_pod("p1", ns)
    assert got.metadata.uid == created.metadata.uid
    assert got.spec.containers[0].image == "busybox"

    core.create_namespaced_pod(ns, pod_manifest("p2", {"app": "db"}))
    listed = core.list_namespaced_pod(ns)
    assert sorted(pod_names(listed)) == ["p1", "p2"]
    assert listed.metadata.resource_version

    assert pod_names(core.list_namespaced_pod(ns, label_selector="app=web")) == ["p1"]
    assert pod_names(core.list_namespaced_pod(ns, label_selector="app in (db)")) == ["p2"]
    assert pod_names(core.list_namespaced_pod(ns, field_selector="metadata.name=p2")) == ["p2"]
    assert sorted(pod_names(core.list_namespaced_pod(
        ns, field_selector="status.phase=Pending"))) == ["p1", "p2"]
    everywhere = core.list_pod_for_all_namespaces(label_selector="app=web",
                                                  field_selector=f"metadata.namespace={ns}")
    assert pod_names(everywhere) == ["p1"]

    core.delete_namespaced_pod("p1", ns)
    assert pod_names(core.list_namespaced_pod(ns)) == ["p2"]
    assert api_error(core.read_namespaced_pod, "p1", ns).status == 404


def test_patch_strategic_merge_and_json(core, ns):
    core.create_namespaced_pod(ns, pod_manifest("p", {"keep": "1", "drop": "1"}, image="busybox:1.36"))

    # A dict body is a strategic merge patch: containers merge by name, so the command stays.
    patched = core.patch_namespaced_pod("p", ns, {
        "metadata": {"labels": {"added": "smp"}},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.37"}]},
    })
    assert patched.metadata.labels == {"keep": "1", "drop": "1", "added": "smp"}
    assert patched.spec.containers[0].image == "busybox:1.37"
    assert patched.spec.containers[0].command == ["sleep", "3600"]

    # JSON merge patch: null deletes a key.
    patched = core.patch_namespaced_pod(
        "p", ns, {"metadata": {"labels": {"drop": None, "merged": "yes"}}},
        _content_type="application/merge-patch+json")
    assert patched.metadata.labels == {"keep": "1", "added": "smp", "merged": "yes"}

    # JSON patch: a list of operations.
    patched = core.patch_namespaced_pod("p", ns, [
        {"op": "add", "path": "/metadata/annotations", "value": {"via": "json-patch"}},
        {"op": "remove", "path": "/metadata/labels/added"},
    ])
    assert patched.metadata.annotations == {"via": "json-patch"}
    assert patched.metadata.labels == {"keep": "1", "merged": "yes"}

    assert core.read_namespaced_pod("p", ns).metadata.labels == {"keep": "1", "merged": "yes"}


# --- errors -----------------------------------------------------------------------------


def test_not_found_already_exists_conflict(core, ns):
    e = api_error(core.read_namespaced_pod, "missing", ns)
    assert (e.status, reason(e)) == (404, "NotFound")

    core.create_namespaced_pod(ns, pod_manifest("dup"))
    e = api_error(core.create_namespaced_pod, ns, pod_manifest("dup"))
    assert (e.status, reason(e)) == (409, "AlreadyExists")

    stale = core.read_namespaced_pod("dup", ns)
    core.patch_namespaced_pod("dup", ns, {"metadata": {"labels": {"v": "2"}}})
    stale.metadata.labels = {"v": "stale"}
    e = api_error(core.replace_namespaced_pod, "dup", ns, stale)
    assert (e.status, reason(e)) == (409, "Conflict")
    assert core.read_namespaced_pod("dup", ns).metadata.labels == {"v": "2"}

    # With the current resourceVersion the same replace succeeds.
    fresh = core.read_namespaced_pod("dup", ns)
    fresh.metadata.labels = {"v": "3"}
    replaced = core.replace_namespaced_pod("dup", ns, fresh)
    assert replaced.metadata.labels == {"v": "3"}
    assert replaced.metadata.resource_version != fresh.metadata.resource_version


def test_invalid_pod_is_422(core, ns):
    e = api_error(core.create_namespaced_pod, ns, pod_manifest("Bad_Name"))
    assert (e.status, reason(e)) == (422, "Invalid")
    assert "metadata.name" in e.body


def test_dry_run_creates_nothing(core, ns):
    pod = core.create_namespaced_pod(ns, pod_manifest("ghost"), dry_run="All")
    assert pod.metadata.name == "ghost" and pod.status.phase == "Pending"
    assert api_error(core.read_namespaced_pod, "ghost", ns).status == 404
    assert core.list_namespaced_pod(ns).items == []

    core.create_namespaced_pod(ns, pod_manifest("real"))
    core.patch_namespaced_pod("real", ns, {"metadata": {"labels": {"dry": "run"}}}, dry_run="All")
    assert not core.read_namespaced_pod("real", ns).metadata.labels
    core.delete_namespaced_pod("real", ns, dry_run="All")
    assert core.read_namespaced_pod("real", ns).metadata.name == "real"


# --- pagination -------------------------------------------------------------------------


def test_list_pagination_returns_every_pod_once(core, ns):
    expected = {f"page-{i:02d}" for i in range(25)}
    for name in sorted(expected):
        core.create_namespaced_pod(ns, pod_manifest(name))

    seen: list[str] = []
    first = core.list_namespaced_pod(ns, limit=10)
    assert len(first.items) == 10 and first.metadata._continue
    assert first.metadata.remaining_item_count == 15
    seen += pod_names(first)
    # A pod created mid-way is not in the pages: they all read one consistent snapshot.
    core.create_namespaced_pod(ns, pod_manifest("page-late"))
    token, pages = first.metadata._continue, 1
    while token:
        page = core.list_namespaced_pod(ns, limit=10, _continue=token)
        assert len(page.items) <= 10
        seen += pod_names(page)
        token, pages = page.metadata._continue, pages + 1
        assert pages <= 3, "more pages than 25 pods in pages of 10 need"
    assert pages == 3
    assert len(seen) == len(set(seen)), f"a pod was listed twice: {seen}"
    assert set(seen) == expected


def test_list_larger_than_4mib(core, ns):
    """Six ConfigMaps near the 1 MiB object limit make a ~5.4 MB list: more than a gRPC
    client's default 4 MiB message, which kube-apiserver raises for etcd."""
    blob = "x" * 900_000
    for i in range(6):
        core.create_namespaced_config_map(ns, {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"big-{i}"},
            "data": {"blob": blob}})
    listed = [c for c in core.list_namespaced_config_map(ns).items
              if c.metadata.name != ROOT_CA]
    assert sorted(c.metadata.name for c in listed) == [f"big-{i}" for i in range(6)]
    assert all(c.data["blob"] == blob for c in listed)


# --- watch ------------------------------------------------------------------------------


def collect_watch(cluster, ns, resource_version, until, out: list, errors: list):
    """Watch pods in ns from resource_version, appending (type, name) until `until(out)`."""
    api = client.CoreV1Api(cluster.new_client())
    w = watch.Watch()
    try:
        for ev in w.stream(api.list_namespaced_pod, ns, resource_version=resource_version,
                           timeout_seconds=WATCH_TIMEOUT):
            out.append((ev["type"], ev["object"].metadata.name,
                        ev["object"].metadata.resource_version))
            if until(out):
                w.stop()
                break
    except Exception as e:  # reported by the test thread
        errors.append(e)
    finally:
        api.api_client.close()


def test_watch_sees_added_modified_deleted_in_order(cluster, core, ns):
    start = core.list_namespaced_pod(ns).metadata.resource_version
    events, errors = [], []
    t = threading.Thread(target=collect_watch, args=(
        cluster, ns, start, lambda evs: any(e[0] == "DELETED" for e in evs), events, errors))
    t.start()
    try:
        core.create_namespaced_pod(ns, pod_manifest("watched"))
        core.patch_namespaced_pod("watched", ns, {"metadata": {"labels": {"step": "2"}}})
        core.delete_namespaced_pod("watched", ns)
    finally:
        t.join(WATCH_TIMEOUT + 10)
    assert not errors, errors
    assert [(e[0], e[1]) for e in events] == [
        ("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")], events
    assert len({e[2] for e in events}) == 3, f"each event has its own resourceVersion: {events}"


def test_watch_resumes_from_resource_version(cluster, core, ns):
    a = core.create_namespaced_pod(ns, pod_manifest("a"))
    core.patch_namespaced_pod("a", ns, {"metadata": {"labels": {"x": "1"}}})
    core.create_namespaced_pod(ns, pod_manifest("b"))
    core.delete_namespaced_pod("a", ns)

    # Everything after a's creation, and nothing before it, replayed in order.
    events, errors = [], []
    collect_watch(cluster, ns, a.metadata.resource_version, lambda evs: len(evs) >= 3,
                  events, errors)
    assert not errors, errors
    assert [(e[0], e[1]) for e in events] == [
        ("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")], events


def test_watch_from_too_old_resource_version_is_410(cluster, core, ns):
    # The server has written plenty since revision 1 (at least the default namespaces and
    # this test's namespace); like kube-apiserver, it no longer serves a watch from there.
    core.create_namespaced_pod(ns, pod_manifest("recent"))
    w = watch.Watch()
    with pytest.raises(ApiException) as err:
        for _ in w.stream(core.list_namespaced_pod, ns, resource_version="1", timeout_seconds=5):
            pass
    assert err.value.status == 410, err.value


# --- other core and group resources -----------------------------------------------------


def test_configmap_crud(core, ns):
    cm = core.create_namespaced_config_map(ns, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"},
        "data": {"log_level": "debug", "app.properties": "a=1\nb=2\n"}})
    assert cm.data == {"log_level": "debug", "app.properties": "a=1\nb=2\n"}
    core.patch_namespaced_config_map("app-config", ns, {"data": {"log_level": "info"}})
    got = core.read_namespaced_config_map("app-config", ns)
    assert got.data == {"log_level": "info", "app.properties": "a=1\nb=2\n"}
    got.data = {"only": "this"}
    assert core.replace_namespaced_config_map("app-config", ns, got).data == {"only": "this"}
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items
            if c.metadata.name != ROOT_CA] == ["app-config"]
    core.delete_namespaced_config_map("app-config", ns)
    assert api_error(core.read_namespaced_config_map, "app-config", ns).status == 404


def test_secret_crud_and_string_data(core, ns):
    s = core.create_namespaced_secret(ns, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-pass"},
        "stringData": {"password": "s3cret"},
        "data": {"user": base64.b64encode(b"admin").decode()}})
    assert s.type == "Opaque"
    got = core.read_namespaced_secret("db-pass", ns)
    assert got.string_data is None, "stringData is folded into data on write"
    assert {k: base64.b64decode(v) for k, v in got.data.items()} == \
        {"password": b"s3cret", "user": b"admin"}
    core.patch_namespaced_secret("db-pass", ns, {"stringData": {"password": "n3w"}})
    got = core.read_namespaced_secret("db-pass", ns)
    assert base64.b64decode(got.data["password"]) == b"n3w"
    assert [x.metadata.name for x in core.list_namespaced_secret(ns).items] == ["db-pass"]
    core.delete_namespaced_secret("db-pass", ns)
    assert api_error(core.read_namespaced_secret, "db-pass", ns).status == 404


def test_serviceaccount_crud(core, ns):
    core.create_namespaced_service_account(ns, {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder"}})
    sa = core.read_namespaced_service_account("builder", ns)
    assert sa.metadata.name == "builder"
    core.patch_namespaced_service_account("builder", ns, {
        "metadata": {"labels": {"team": "ci"}}, "automountServiceAccountToken": False})
    sa = core.read_namespaced_service_account("builder", ns)
    assert sa.metadata.labels == {"team": "ci"} and sa.automount_service_account_token is False
    assert "builder" in [x.metadata.name for x in core.list_namespaced_service_account(ns).items]
    core.delete_namespaced_service_account("builder", ns)
    assert api_error(core.read_namespaced_service_account, "builder", ns).status == 404


def test_lease_crud(cluster, ns):
    leases = client.CoordinationV1Api(cluster.client)
    now = datetime.datetime.now(datetime.timezone.utc)
    lease = leases.create_namespaced_lease(ns, {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "leader"},
        "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 40,
                 "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}})
    assert lease.spec.holder_identity == "node-a"
    assert lease.spec.renew_time is not None
    # A renewal, the way a lease holder does it: read, change, replace.
    later = now + datetime.timedelta(seconds=10)
    lease.spec.renew_time = later
    lease.spec.holder_identity = "node-b"
    renewed = leases.replace_namespaced_lease("leader", ns, lease)
    assert renewed.spec.holder_identity == "node-b"
    assert abs((renewed.spec.renew_time - later).total_seconds()) < 1e-3
    assert [x.metadata.name for x in leases.list_namespaced_lease(ns).items] == ["leader"]
    leases.delete_namespaced_lease("leader", ns)
    assert api_error(leases.read_namespaced_lease, "leader", ns).status == 404


def test_event_crud_in_both_groups(cluster, core, ns):
    now = datetime.datetime.now(datetime.timezone.utc)
    core.create_namespaced_event(ns, {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "pod-a.1"},
        "involvedObject": {"kind": "Pod", "name": "pod-a", "namespace": ns},
        "reason": "Scheduled", "message": "Successfully assigned", "type": "Normal",
        "source": {"component": "default-scheduler"},
        # eventTime (a MicroTime) is required by events.k8s.io/v1, read below.
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reportingComponent": "default-scheduler", "reportingInstance": "e2e", "action": "Binding",
        "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "count": 1})
    ev = core.read_namespaced_event("pod-a.1", ns)
    assert (ev.reason, ev.involved_object.name, ev.count) == ("Scheduled", "pod-a", 1)
    core.patch_namespaced_event("pod-a.1", ns, {"count": 2})
    assert core.read_namespaced_event("pod-a.1", ns).count == 2
    selected = core.list_namespaced_event(ns, field_selector="involvedObject.name=pod-a")
    assert [e.metadata.name for e in selected.items] == ["pod-a.1"]
    assert core.list_namespaced_event(ns, field_selector="involvedObject.name=pod-b").items == []
    # The same object through events.k8s.io/v1.
    v1events = client.EventsV1Api(cluster.client).list_namespaced_event(ns)
    assert [(e.metadata.name, e.reason, e.regarding.name, e.note) for e in v1events.items] == \
        [("pod-a.1", "Scheduled", "pod-a", "Successfully assigned")]
    assert abs((v1events.items[0].event_time - now).total_seconds()) < 1e-3
    core.delete_namespaced_event("pod-a.1", ns)
    assert api_error(core.read_namespaced_event, "pod-a.1", ns).status == 404


def test_priorityclass_crud(cluster):
    sched = client.SchedulingV1Api(cluster.client)
    name = f"e2e-high-{secrets.token_hex(3)}"
    pc = sched.create_priority_class({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": name}, "value": 1000000, "description": "e2e high priority"})
    assert pc.value == 1000000 and not pc.global_default
    assert pc.metadata.namespace is None, "PriorityClass is cluster-scoped"
    sched.patch_priority_class(name, {"description": "changed"})
    assert sched.read_priority_class(name).description == "changed"
    assert name in [p.metadata.name for p in sched.list_priority_class().items]
    sched.delete_priority_class(name)
    assert api_error(sched.read_priority_class, name).status == 404


def test_system_priority_classes_set_pod_priority(cluster, core, ns):
    """Like kube-apiserver, the cluster starts with the two system priority classes, and
    the Priority admission plugin copies a class's value into the pod."""
    sched = client.SchedulingV1Api(cluster.client)
    values = {p.metadata.name: p.value for p in sched.list_priority_class().items}
    assert values.get("system-node-critical") == 2000001000, values
    assert values.get("system-cluster-critical") == 2000000000, values
    pod = pod_manifest("critical")
    pod["spec"]["priorityClassName"] = "system-node-critical"
    assert core.create_namespaced_pod(ns, pod).spec.priority == 2000001000
    missing = pod_manifest("no-class")
    missing["spec"]["priorityClassName"] = "no-such-class"
    err = api_error(core.create_namespaced_pod, ns, missing)
    assert err.status == 403 and "no PriorityClass with name no-such-class" in err.body


def test_watch_list_sends_initial_state_then_end_bookmark(core, ns):
    """The WatchList form client-go 1.37 uses (kubectl delete --wait, wait, debug): the
    current objects as ADDED events, then a BOOKMARK annotated initial-events-end."""
    for name in ("wl-a", "wl-b"):
        core.create_namespaced_pod(ns, pod_manifest(name))
    w = watch.Watch()
    seen = []
    for ev in w.stream(core.list_namespaced_pod, ns, send_initial_events=True,
                       resource_version_match="NotOlderThan", allow_watch_bookmarks=True,
                       timeout_seconds=WATCH_TIMEOUT):
        if ev["type"] == "BOOKMARK":
            annotations = ev["raw_object"]["metadata"].get("annotations", {})
            seen.append(("BOOKMARK", annotations.get("k8s.io/initial-events-end")))
            w.stop()
        else:
            seen.append((ev["type"], ev["object"].metadata.name))
    assert seen == [("ADDED", "wl-a"), ("ADDED", "wl-b"), ("BOOKMARK", "true")], seen


def test_watch_list_without_bookmarks_is_rejected(core, ns):
    with pytest.raises(ApiException) as err:
        list(watch.Watch().stream(core.list_namespaced_pod, ns, send_initial_events=True,
                                  resource_version_match="NotOlderThan", timeout_seconds=2))
    assert err.value.status in (400, 422)


def test_oversized_body_is_413_and_the_server_keeps_serving(core, ns):
    """Like kube-apiserver, a request body over 3 MiB is refused with 413."""
    big = {"metadata": {"name": "too-big"}, "data": {"blob": "x" * (4 * 1024 * 1024)}}
    err = api_error(core.create_namespaced_config_map, ns, big)
    assert err.status == 413 and reason(err) == "RequestEntityTooLarge", err.body
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items
            if c.metadata.name != ROOT_CA] == []


def raw(cluster, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """One request with the admin token, outside the generated client."""
    info = harness.KubeconfigInfo(cluster.kubeconfig)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(info.server + path, data=data, method=method, headers={
        "Authorization": f"Bearer {info.token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=info.ssl_context(), timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_events_v1_unknown_field_is_rejected_under_strict(cluster, ns):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
            "regarding": {"kind": "Pod", "name": "p", "namespace": ns}, "reason": "Test",
            "note": "n", "type": "Normal", "eventTime": now, "action": "Testing",
            "reportingController": "e2e", "reportingInstance": "e2e", "notAField": 1}
    path = f"/apis/events.k8s.io/v1/namespaces/{ns}/events"
    code, status = raw(cluster, "POST", path + "?fieldValidation=Strict", body)
    assert code == 400 and 'unknown field "notAField"' in status["message"], status
    del body["notAField"]
    code, created = raw(cluster, "POST", path + "?fieldValidation=Strict", body)
    assert code == 201 and created["note"] == "n", created


def test_namespaces_cannot_be_deleted_as_a_collection(cluster):
    """As upstream: no deletecollection on namespaces (discovery does not list it)."""
    code, status = raw(cluster, "DELETE", "/api/v1/namespaces")
    assert code == 405 and status["reason"] == "MethodNotAllowed", status
    names = [n.metadata.name for n in client.CoreV1Api(cluster.client).list_namespace().items]
    assert "default" in names
