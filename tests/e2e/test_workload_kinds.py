"""The workload kinds served (issue 14, "Kinds served"): apps/v1 Deployment, ReplicaSet,
StatefulSet, DaemonSet, ControllerRevision and core/v1 ReplicationController, each through
the kind recipe — discovery, explain, defaults, validation, tables, short names, `all`,
the status and scale subresources, protobuf and field selectors — driven by the real
kubectl 1.37 and the Python client. About the API: the ReplicaSet/RC controller does make
pods for the replica sets here, so what it writes (status, pods) is waited for, never assumed
absent; their images name a registry on a closed loopback port, so no pull leaves the machine.
"""

from __future__ import annotations

import json
import re

import kubernetes
import pytest

from helpers import names, rows_by_name, table, to_yaml, wait_until
from test_protobuf import PB, first, request, unwrap

# A registry on a closed loopback port: pods of these templates never pull from the outside.
REGISTRY = "127.0.0.1:9"
CONTAINERS = [{"name": "app", "image": f"{REGISTRY}/nginx:1.27"},
              {"name": "side", "image": f"{REGISTRY}/busybox"}]


def template(labels: dict) -> dict:
    return {"metadata": {"labels": labels}, "spec": {"containers": CONTAINERS}}


def apps(kind: str, name: str, **spec) -> dict:
    labels = {"app": name}
    body = {"selector": {"matchLabels": labels}, "template": template(labels), **spec}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": body}


def rc(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name},
            "spec": {"template": template({"app": name}), **spec}}


def get_json(cluster, ns: str, *what: str) -> dict:
    return json.loads(cluster.kubectl("-n", ns, "get", *what, "-o", "json").stdout)


API_RESOURCES = [
    # NAME, SHORTNAMES, APIVERSION, NAMESPACED, KIND
    ("replicationcontrollers", "rc", "v1", "true", "ReplicationController"),
    ("controllerrevisions", "", "apps/v1", "true", "ControllerRevision"),
    ("daemonsets", "ds", "apps/v1", "true", "DaemonSet"),
    ("deployments", "deploy", "apps/v1", "true", "Deployment"),
    ("replicasets", "rs", "apps/v1", "true", "ReplicaSet"),
    ("statefulsets", "sts", "apps/v1", "true", "StatefulSet"),
]


def test_api_resources_short_names_and_categories(cluster):
    out = cluster.kubectl("api-resources").stdout
    rows = []
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) == 4:  # no short names
            cols.insert(1, "")
        rows.append(tuple(cols))
    for expected in API_RESOURCES:
        assert expected in rows, f"{expected} missing from kubectl api-resources:\n{out}"
    # The apps group lists its resources in upstream's (alphabetical) order.
    apps_rows = [r[0] for r in rows if r[2] == "apps/v1"]
    assert apps_rows == sorted(apps_rows) == \
        ["controllerrevisions", "daemonsets", "deployments", "replicasets", "statefulsets"]

    in_all = set(
        cluster.kubectl("api-resources", "--categories", "all", "-o", "name").stdout.split())
    for name in ["pods", "replicationcontrollers", "deployments.apps", "replicasets.apps",
                 "statefulsets.apps", "daemonsets.apps"]:
        assert name in in_all, in_all
    assert "controllerrevisions.apps" not in in_all

    # Subresources in discovery: status for all but ControllerRevision, scale as autoscaling/v1.
    status, _, body = request(cluster, "GET", "/apis/apps/v1")
    assert status == 200, body
    served = {r["name"]: r for r in json.loads(body)["resources"]}
    for kind in ["deployments", "replicasets", "statefulsets"]:
        assert served[f"{kind}/scale"]["kind"] == "Scale"
        assert served[f"{kind}/scale"]["group"] == "autoscaling"
        assert f"{kind}/status" in served
    assert "daemonsets/status" in served and "daemonsets/scale" not in served
    assert not [n for n in served if n.startswith("controllerrevisions/")]
    status, _, body = request(cluster, "GET", "/api/v1")
    core = {r["name"] for r in json.loads(body)["resources"]}
    assert {"replicationcontrollers/scale", "replicationcontrollers/status"} <= core


def test_explain(cluster):
    out = cluster.kubectl("explain", "deploy.spec.strategy").stdout
    assert re.search(r"^GROUP:\s+apps$", out, re.M), out
    assert re.search(r"^KIND:\s+Deployment$", out, re.M), out
    assert re.search(r"^FIELD:\s+strategy <DeploymentStrategy>$", out, re.M), out
    assert re.search(r"^\s+rollingUpdate\s+<RollingUpdateDeployment>$", out, re.M), out
    out = cluster.kubectl("explain", "sts.spec.updateStrategy.rollingUpdate").stdout
    assert re.search(r"^\s+partition\s+<integer>$", out, re.M), out
    out = cluster.kubectl("explain", "rc.spec.selector").stdout
    assert re.search(r"^KIND:\s+ReplicationController$", out, re.M), out
    assert re.search(r"^FIELD:\s+selector <map\[string\]string>$", out, re.M), out


def test_defaults_visible_in_yaml(cluster, ns):
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=to_yaml(
        apps("Deployment", "web"), apps("StatefulSet", "db"), apps("DaemonSet", "agent"),
        apps("ReplicaSet", "front"), rc("legacy")))

    d = get_json(cluster, ns, "deploy", "web")
    assert d["spec"]["replicas"] == 1
    assert d["spec"]["strategy"] == {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert d["spec"]["revisionHistoryLimit"] == 10
    assert d["spec"]["progressDeadlineSeconds"] == 600
    pod_spec = d["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Always"
    assert pod_spec["dnsPolicy"] == "ClusterFirst"
    assert pod_spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert d["metadata"]["generation"] == 1
    # The Deployment controller writes the status it observed.
    wait_until(lambda: get_json(cluster, ns, "deploy", "web")["status"].get("observedGeneration")
               == 1, what="the deployment's status observed")
    # The YAML a user reads shows them too.
    out = cluster.kubectl("-n", ns, "get", "deploy", "web", "-o", "yaml").stdout
    assert "maxSurge: 25%" in out and "progressDeadlineSeconds: 600" in out, out

    s = get_json(cluster, ns, "sts", "db")
    assert s["spec"]["podManagementPolicy"] == "OrderedReady"
    assert s["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert s["spec"]["persistentVolumeClaimRetentionPolicy"] == \
        {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert s["spec"]["revisionHistoryLimit"] == 10 and s["spec"]["replicas"] == 1
    # The API's create-time status; the StatefulSet controller then counts its pod.
    assert {"replicas", "availableReplicas"} <= set(s["status"]), s["status"]

    ds = get_json(cluster, ns, "ds", "agent")
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    assert ds["spec"]["revisionHistoryLimit"] == 10
    assert ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "1"

    r = get_json(cluster, ns, "rs", "front")
    assert r["spec"]["replicas"] == 1
    # A create drops the status it is sent: the stored object starts from `replicas: 0`
    # (the controller writes its own afterwards).
    sent = apps("ReplicaSet", "sent", replicas=0)
    sent["status"] = {"replicas": 7, "readyReplicas": 7}
    made = json.loads(cluster.kubectl("-n", ns, "create", "-o", "json", "-f", "-",
                                      input=to_yaml(sent)).stdout)
    assert made["status"] == {"replicas": 0}

    c = get_json(cluster, ns, "rc", "legacy")
    assert c["spec"]["selector"] == {"app": "legacy"}
    assert c["metadata"]["labels"] == {"app": "legacy"}
    assert c["spec"]["replicas"] == 1


TABLES = [
    ("deploy", "web", ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
     ["CONTAINERS", "IMAGES", "SELECTOR"]),
    ("rs", "front", ["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
     ["CONTAINERS", "IMAGES", "SELECTOR"]),
    ("rc", "legacy", ["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
     ["CONTAINERS", "IMAGES", "SELECTOR"]),
    ("sts", "db", ["NAME", "READY", "AGE"], ["CONTAINERS", "IMAGES"]),
    ("ds", "agent", ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE",
                     "NODE SELECTOR", "AGE"], ["CONTAINERS", "IMAGES", "SELECTOR"]),
]


def test_tables_short_names_and_get_all(cluster, ns):
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=to_yaml(
        apps("Deployment", "web", replicas=3), apps("StatefulSet", "db"),
        apps("DaemonSet", "agent"), apps("ReplicaSet", "front", replicas=2), rc("legacy"),
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo"},
         "spec": {"containers": [{"name": "app", "image": f"{REGISTRY}/busybox"}]}}))
    for short, name, header, wide in TABLES:
        out = cluster.kubectl("-n", ns, "get", short).stdout
        assert table(out)[0] == header, out
        out = cluster.kubectl("-n", ns, "get", short, "-o", "wide").stdout
        assert table(out)[0] == header + wide, out
        row = rows_by_name(out)[name]
        assert row["CONTAINERS"] == "app,side", row
        assert row["IMAGES"] == f"{REGISTRY}/nginx:1.27,{REGISTRY}/busybox", row
        if "SELECTOR" in row:
            assert row["SELECTOR"] == f"app={name}", row
    assert rows_by_name(cluster.kubectl("-n", ns, "get", "deploy").stdout)["web"]["READY"] == "0/3"
    # The replica set's pods exist but cannot pull: current 2, ready 0.
    wait_until(lambda: (lambda f: (f["DESIRED"], f["CURRENT"], f["READY"]) == ("2", "2", "0"))(
        rows_by_name(cluster.kubectl("-n", ns, "get", "rs").stdout)["front"]),
        what="rs front: 2 desired, 2 current, 0 ready")
    assert rows_by_name(cluster.kubectl("-n", ns, "get", "ds").stdout)["agent"]["NODE SELECTOR"] \
        == "<none>"

    # `kubectl get all` in upstream's order: core (pods, replicationcontrollers), then apps
    # alphabetically; no ControllerRevisions.
    # The controllers' own pods (`front-xxxxx`, `legacy-xxxxx`, `web-<hash>-xxxxx`, the
    # StatefulSet's `db-0`) come first, with the pods; the deployment's ReplicaSet
    # `web-<hash>` with the ReplicaSets.
    out = cluster.kubectl("-n", ns, "get", "all", "-o", "name").stdout.split()
    made = [o for o in out
            if re.fullmatch(r"pod/(front|legacy|web-[a-z0-9]+)-[a-z0-9]{5}", o)
            or o == "pod/db-0"]
    web_rs = [o for o in out if re.fullmatch(r"replicaset\.apps/web-[a-z0-9]+", o)]
    assert out[:len(made) + 1] == sorted(made + ["pod/solo"]), out
    assert [o for o in out if o not in made] == [
        "pod/solo", "replicationcontroller/legacy", "daemonset.apps/agent",
        "deployment.apps/web", "replicaset.apps/front", *web_rs, "statefulset.apps/db"], out
    out = cluster.kubectl("-n", ns, "get", "all").stdout
    assert "deployment.apps/web" in out and "NODE SELECTOR" in out, out

    # Seed 003 ends with `kubectl delete all --all`: every one of them goes.
    out = cluster.kubectl("-n", ns, "delete", "all", "--all", "--wait=false").stdout
    for gone in ["pod \"solo\"", "replicationcontroller \"legacy\"", "daemonset.apps \"agent\"",
                 "deployment.apps \"web\"", "replicaset.apps \"front\"",
                 "statefulset.apps \"db\""]:
        assert f"{gone} deleted" in out, out
    wait_until(lambda: cluster.kubectl("-n", ns, "get", "all", "-o", "name").stdout.split() == [],
               what="every workload object gone")


def test_scale_through_kubectl(cluster, ns):
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=to_yaml(
        apps("Deployment", "web"), apps("StatefulSet", "db"), apps("ReplicaSet", "front"),
        rc("legacy"), apps("DaemonSet", "agent")))
    for what in ["deploy/web", "sts/db", "rs/front", "rc/legacy"]:
        out = cluster.kubectl("-n", ns, "scale", what, "--replicas=3").stdout
        assert "scaled" in out, out
        obj = get_json(cluster, ns, what)
        assert obj["spec"]["replicas"] == 3, what
        assert obj["metadata"]["generation"] == 2, what
    cp = cluster.kubectl("-n", ns, "scale", "ds/agent", "--replicas=3", check=False)
    assert cp.returncode != 0

    # The Scale reads the selector as a string (an RC's plain map reads the same way), and
    # its status.replicas is the object's (the RC's once its controller counted 3 pods).
    for what, path in [("deploy/web", f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale"),
                       ("rc/legacy",
                        f"/api/v1/namespaces/{ns}/replicationcontrollers/legacy/scale")]:
        status, _, body = request(cluster, "GET", path)
        assert status == 200, body
        scale = json.loads(body)
        assert (scale["kind"], scale["apiVersion"]) == ("Scale", "autoscaling/v1")
        assert scale["spec"] == {"replicas": 3}
        assert scale["status"]["selector"] in ("app=web", "app=legacy")

        def agrees(what=what, path=path):
            scale = json.loads(request(cluster, "GET", path)[2])
            replicas = get_json(cluster, ns, what).get("status", {}).get("replicas", 0)
            return scale["status"]["replicas"] == replicas
        wait_until(agrees, what=f"{what}: the Scale's status.replicas is the object's")
    wait_until(lambda: get_json(cluster, ns, "rc/legacy")["status"].get("replicas") == 3,
               what="the RC's controller counts 3 pods")


def test_scale_and_status_through_the_python_client(cluster, ns):
    api = kubernetes.client.AppsV1Api(cluster.client)
    core = kubernetes.client.CoreV1Api(cluster.client)
    api.create_namespaced_deployment(ns, apps("Deployment", "web", replicas=2))
    scale = api.read_namespaced_deployment_scale("web", ns)
    assert scale.spec.replicas == 2
    assert scale.status.selector == "app=web"
    scale = api.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 5}})
    assert scale.spec.replicas == 5
    assert api.read_namespaced_deployment("web", ns).spec.replicas == 5
    with pytest.raises(kubernetes.client.ApiException) as err:
        api.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": -1}})
    assert err.value.status == 422

    # The status subresource writes status and keeps the spec. (The Deployment controller
    # rewrites the status from its ReplicaSets right after: only responses are exact.)
    d = api.patch_namespaced_deployment_status(
        "web", ns, {"spec": {"replicas": 9},
                    "status": {"replicas": 5, "readyReplicas": 4, "observedGeneration": 2}})
    assert d.spec.replicas == 5
    assert (d.status.replicas, d.status.ready_replicas) == (5, 4)

    def table_reads_status():
        before = api.read_namespaced_deployment("web", ns)
        out = cluster.kubectl("-n", ns, "get", "deploy", "web").stdout
        after = api.read_namespaced_deployment("web", ns)
        want = f"{before.status.ready_replicas or 0}/{before.spec.replicas}"
        return before.metadata.resource_version == after.metadata.resource_version and \
            rows_by_name(out)["web"]["READY"] == want
    wait_until(table_reads_status, what="READY is readyReplicas/replicas")
    # ...and a main-resource write keeps the status (no pod of it can pull: never 3 ready).
    d = api.patch_namespaced_deployment("web", ns, {"status": {"readyReplicas": 3},
                                                    "metadata": {"labels": {"x": "y"}}})
    assert d.status.ready_replicas != 3
    with pytest.raises(kubernetes.client.ApiException) as err:
        api.patch_namespaced_deployment_status("web", ns, {"status": {"readyReplicas": 9}})
    assert err.value.status == 422
    assert "status.readyReplicas: Invalid value: 9: cannot be greater than status.replicas" \
        in json.loads(err.value.body)["message"]

    # ReplicationControllers through CoreV1Api: defaults, scale and status.
    core.create_namespaced_replication_controller(ns, rc("legacy"))
    got = core.read_namespaced_replication_controller("legacy", ns)
    assert got.spec.selector == {"app": "legacy"} and got.spec.replicas == 1
    core.patch_namespaced_replication_controller_scale("legacy", ns, {"spec": {"replicas": 2}})
    assert core.read_namespaced_replication_controller_scale("legacy", ns).spec.replicas == 2
    got = core.patch_namespaced_replication_controller_status(
        "legacy", ns, {"status": {"replicas": 2, "readyReplicas": 1}})
    assert got.status.ready_replicas == 1 and got.spec.replicas == 2

    # Field selectors on status.replicas, as upstream's ReplicaSet and RC registries offer.
    # (The controller brings status.replicas to spec.replicas: 1 for front, 0 for back.)
    api.create_namespaced_replica_set(ns, apps("ReplicaSet", "front"))
    api.create_namespaced_replica_set(ns, apps("ReplicaSet", "back", replicas=0))
    sel = lambda what, s: names(cluster.kubectl(  # noqa: E731
        "-n", ns, "get", what, "-o", "name", "--field-selector", s).stdout)
    wait_until(lambda: sel("rs", "status.replicas=1") == {"front"}, what="front selected")
    wait_until(lambda: sel("rs", "status.replicas=0") == {"back"}, what="back selected")
    wait_until(lambda: sel("rc", "status.replicas=2") == {"legacy"}, what="legacy selected")
    cp = cluster.kubectl("-n", ns, "get", "rs", "--field-selector", "spec.replicas=1", check=False)
    assert cp.returncode != 0 and "field label not supported: spec.replicas" in cp.stderr


def invalid(fn) -> dict:
    with pytest.raises(kubernetes.client.ApiException) as err:
        fn()
    assert err.value.status == 422, err.value.body
    return json.loads(err.value.body)


def test_validation_answers_422_with_upstreams_causes(cluster, ns):
    api = kubernetes.client.AppsV1Api(cluster.client)
    bad = apps("Deployment", "bad")
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    status = invalid(lambda: api.create_namespaced_deployment(ns, bad))
    assert status["reason"] == "Invalid"
    assert status["details"]["group"] == "apps" and status["details"]["kind"] == "Deployment"
    assert status["message"] == ('Deployment.apps "bad" is invalid: spec.template.metadata.labels: '
                                 'Invalid value: {"app":"other"}: '
                                 '`selector` does not match template `labels`')
    assert status["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "spec.template.metadata.labels",
        "message": 'Invalid value: {"app":"other"}: '
                   '`selector` does not match template `labels`'}]

    # kubectl prints the same for every kind, selector missing and policy wrong.
    no_selector = apps("ReplicaSet", "nosel")
    del no_selector["spec"]["selector"]
    no_selector["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    cp = cluster.kubectl("-n", ns, "create", "-f", "-", input=to_yaml(no_selector), check=False)
    assert cp.returncode != 0
    assert 'The ReplicaSet "nosel" is invalid:' in cp.stderr, cp.stderr
    assert "* spec.selector: Required value" in cp.stderr, cp.stderr
    assert '* spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: ' \
        '"Always"' in cp.stderr, cp.stderr

    zero = apps("Deployment", "zero", strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}})
    status = invalid(lambda: api.create_namespaced_deployment(ns, zero))
    assert [c["field"] for c in status["details"]["causes"]] == \
        ["spec.strategy.rollingUpdate.maxUnavailable"]
    assert status["details"]["causes"][0]["message"] == \
        "Invalid value: 0: may not be 0 when `maxSurge` is 0"
    recreate = apps("Deployment", "rec", strategy={"type": "Recreate",
                                                   "rollingUpdate": {"maxSurge": 1}})
    status = invalid(lambda: api.create_namespaced_deployment(ns, recreate))
    assert status["details"]["causes"][0]["message"] == \
        "Forbidden: may not be specified when strategy `type` is 'Recreate'"

    # apps/v1 selectors are immutable; an RC's may change.
    api.create_namespaced_deployment(ns, apps("Deployment", "web"))
    moved = {"spec": {"selector": {"matchLabels": {"app": "web", "v": "2"}},
                      "template": {"metadata": {"labels": {"app": "web", "v": "2"}}}}}
    status = invalid(lambda: api.patch_namespaced_deployment("web", ns, moved))
    assert status["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "spec.selector",
        "message": 'Invalid value: {"matchLabels":{"app":"web","v":"2"}}: '
                   'field is immutable'}]
    cp = cluster.kubectl("-n", ns, "patch", "deploy", "web", "--type=merge", "-p",
                         json.dumps(moved), check=False)
    assert cp.returncode != 0 and "field is immutable" in cp.stderr, cp.stderr
    core = kubernetes.client.CoreV1Api(cluster.client)
    core.create_namespaced_replication_controller(ns, rc("legacy"))
    core.patch_namespaced_replication_controller(
        "legacy", ns, {"spec": {"selector": {"app": "legacy", "v": "2"},
                                "template": {"metadata": {"labels": {"app": "legacy", "v": "2"}}}}})

    # A StatefulSet takes only the updatable fields.
    api.create_namespaced_stateful_set(ns, apps("StatefulSet", "db", serviceName=""))
    api.patch_namespaced_stateful_set("db", ns, {"spec": {"replicas": 2, "minReadySeconds": 1}})
    status = invalid(lambda: api.patch_namespaced_stateful_set(
        "db", ns, {"spec": {"podManagementPolicy": "Parallel"}}))
    assert status["details"]["causes"] == [{
        "reason": "FieldValueForbidden", "field": "spec",
        "message": "Forbidden: updates to statefulset spec for fields other than 'replicas', "
                   "'ordinals', 'template', 'updateStrategy', "
                   "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"}]


def test_generation_counts_spec_changes(cluster, ns):
    api = kubernetes.client.AppsV1Api(cluster.client)
    api.create_namespaced_daemon_set(ns, apps("DaemonSet", "agent"))
    image = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.28"}]}}}}
    ds = api.patch_namespaced_daemon_set("agent", ns, image)
    assert ds.metadata.generation == 2
    assert ds.metadata.annotations["deprecated.daemonset.template.generation"] == "2"
    ds = api.patch_namespaced_daemon_set("agent", ns, {"metadata": {"labels": {"a": "b"}}})
    assert ds.metadata.generation == 2
    ds = api.patch_namespaced_daemon_set("agent", ns, {"spec": {"minReadySeconds": 3}})
    assert ds.metadata.generation == 3
    assert ds.metadata.annotations["deprecated.daemonset.template.generation"] == "2"


def test_controller_revisions(cluster, ns):
    api = kubernetes.client.AppsV1Api(cluster.client)
    owner = api.create_namespaced_stateful_set(ns, apps("StatefulSet", "db"))
    rev = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
           "metadata": {"name": "db-7f9c", "ownerReferences": [{
               "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
               "uid": owner.metadata.uid, "controller": True}]},
           "revision": 1, "data": {"spec": {"template": {"metadata": {"labels": {"app": "db"}}}}}}
    cluster.kubectl("-n", ns, "create", "-f", "-", input=to_yaml(rev))
    out = cluster.kubectl("-n", ns, "get", "controllerrevisions").stdout
    assert table(out)[0] == ["NAME", "CONTROLLER", "REVISION", "AGE"], out
    row = rows_by_name(out)["db-7f9c"]
    assert (row["CONTROLLER"], row["REVISION"]) == ("statefulset.apps/db", "1"), row
    status = invalid(lambda: api.patch_namespaced_controller_revision(
        "db-7f9c", ns, {"data": {"other": 1}}))
    assert status["details"]["causes"][0]["field"] == "data"
    assert status["details"]["causes"][0]["message"].endswith(": field is immutable")
    # (The Python client refuses to send a revision without data: raw HTTPS does.)
    code, _, body = request(cluster, "POST", f"/apis/apps/v1/namespaces/{ns}/controllerrevisions",
                            json.dumps({"metadata": {"name": "nodata"}, "revision": -1}).encode(),
                            content_type="application/json")
    assert code == 422, body
    status = json.loads(body)
    assert [c["message"] for c in status["details"]["causes"]] == [
        "Required value: data is mandatory",
        "Invalid value: -1: must be greater than or equal to 0"]


def test_protobuf_and_strategic_merge(cluster, ns):
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=to_yaml(apps("Deployment", "web")))
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/web"
    status, ctype, body = request(cluster, "GET", path, accept=f"{PB}, application/json")
    assert status == 200 and ctype == PB, body
    api_version, kind, msg = unwrap(body)
    assert (api_version, kind) == ("apps/v1", "Deployment")
    assert first(first(msg, 1), 1) == b"web"  # metadata.name

    # kubectl apply merges containers by name (the published strategic-merge keys).
    changed = apps("Deployment", "web")
    changed["spec"]["template"]["spec"]["containers"] = [{"name": "app", "image": "nginx:1.28"}]
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=to_yaml(changed))
    patch = '{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox:2"}]}}}}'
    cluster.kubectl("-n", ns, "patch", "deploy", "web", "-p", patch)
    d = get_json(cluster, ns, "deploy", "web")
    images = {c["name"]: c["image"] for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {"app": "nginx:1.28", "side": "busybox:2"}, images
    assert d["metadata"]["generation"] == 3


def test_kubectl_create_deployment(cluster, ns):
    # kubectl sends this body as protobuf; defaults and the table are the same.
    out = cluster.kubectl("-n", ns, "create", "deployment", "hello", "--image=busybox",
                          "--replicas=2", "--port=8080").stdout
    assert "deployment.apps/hello created" in out, out
    d = get_json(cluster, ns, "deploy", "hello")
    assert d["spec"]["selector"] == {"matchLabels": {"app": "hello"}}
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    assert d["spec"]["template"]["spec"]["containers"][0]["ports"] == \
        [{"containerPort": 8080, "protocol": "TCP"}]
    row = rows_by_name(cluster.kubectl("-n", ns, "get", "deploy", "hello", "-o", "wide").stdout)
    assert row["hello"]["SELECTOR"] == "app=hello" and row["hello"]["READY"] == "0/2", row


def test_kubectl_set_and_rollout_pause_write_the_deployment(cluster, ns):
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=to_yaml(apps("Deployment", "web")))
    cluster.kubectl("-n", ns, "set", "image", "deploy/web", "app=nginx:1.28")
    cluster.kubectl("-n", ns, "set", "env", "deploy/web", "-c", "side", "MODE=fast")
    out = cluster.kubectl("-n", ns, "rollout", "pause", "deploy/web").stdout
    assert "deployment.apps/web paused" in out, out
    d = get_json(cluster, ns, "deploy", "web")
    containers = {c["name"]: c for c in d["spec"]["template"]["spec"]["containers"]}
    assert containers["app"]["image"] == "nginx:1.28"
    assert containers["side"]["env"] == [{"name": "MODE", "value": "fast"}]
    assert d["spec"]["paused"] is True
    assert d["metadata"]["generation"] == 4
    out = cluster.kubectl("-n", ns, "rollout", "resume", "deploy/web").stdout
    assert "deployment.apps/web resumed" in out, out
    assert get_json(cluster, ns, "deploy", "web")["metadata"]["generation"] == 5
