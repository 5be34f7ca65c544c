"""The real kubectl 1.37 against `peapod server`, on SQLite and on etcd.

Scenarios follow the seed articles (shared/seeds): creating the pods they show, reading them
back in every output format, labelling, describing, watching and deleting them. No node
exists yet, so every pod stays Pending.
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import urllib.error
import urllib.request

import kubernetes
import pytest
import yaml

import harness
from helpers import names, pod_manifest, rows_by_name, table, to_yaml, wait_until


def get_json(cluster, ns, *what) -> dict:
    return json.loads(cluster.kubectl("get", *what, "-n", ns, "-o", "json").stdout)


def create_pods(cluster, ns, *pods: dict) -> None:
    cluster.kubectl("create", "-n", ns, "-f", "-", input=to_yaml(*pods))


# --- discovery, explain, version, health ------------------------------------------------

API_RESOURCES = [
    # NAME, SHORTNAMES, APIVERSION, NAMESPACED, KIND
    ("pods", "po", "v1", "true", "Pod"),
    ("namespaces", "ns", "v1", "false", "Namespace"),
    ("nodes", "no", "v1", "false", "Node"),
    ("events", "ev", "v1", "true", "Event"),
    ("configmaps", "cm", "v1", "true", "ConfigMap"),
    ("secrets", "", "v1", "true", "Secret"),
    ("serviceaccounts", "sa", "v1", "true", "ServiceAccount"),
    ("leases", "", "coordination.k8s.io/v1", "true", "Lease"),
    ("priorityclasses", "pc", "scheduling.k8s.io/v1", "false", "PriorityClass"),
]


def test_api_resources(cluster):
    out = cluster.kubectl("api-resources").stdout
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"], out
    rows = set()
    for line in lines[1:]:
        cols = line.split()
        if len(cols) == 4:  # no short names
            cols.insert(1, "")
        rows.add(tuple(cols))
    for expected in API_RESOURCES:
        assert expected in rows, f"{expected} missing from kubectl api-resources:\n{out}"


def test_explain_pod_kind(cluster):
    out = cluster.kubectl("explain", "pod.kind").stdout
    assert re.search(r"^KIND:\s+Pod$", out, re.M), out
    assert re.search(r"^VERSION:\s+v1$", out, re.M), out
    assert re.search(r"^FIELD:\s+kind <string>$", out, re.M), out
    assert "Kind is a string value representing the REST resource" in out, out


def test_explain_pod_spec_containers(cluster):
    out = cluster.kubectl("explain", "pod.spec.containers").stdout
    assert re.search(r"^KIND:\s+Pod$", out, re.M), out
    assert re.search(r"^FIELD:\s+containers <\[\]Container>$", out, re.M), out
    assert re.search(r"^FIELDS:$", out, re.M), out
    assert re.search(r"^\s+name\s+<string> -required-$", out, re.M), out
    assert re.search(r"^\s+image\s+<string>$", out, re.M), out
    assert re.search(r"^\s+ports\s+<\[\]ContainerPort>$", out, re.M), out


def test_version_shows_server(cluster):
    out = cluster.kubectl("version").stdout
    assert re.search(r"^Client Version: v1\.37\.", out, re.M), out
    assert re.search(r"^Server Version: v1\.\d+\.\d+", out, re.M), out
    info = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert info["major"] == "1" and info["gitVersion"].startswith("v1."), info


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/livez"])
def test_health_endpoints(cluster, path):
    assert cluster.kubectl("get", "--raw", path).stdout.strip() == "ok"


def test_readyz_verbose_lists_its_checks(cluster):
    out = cluster.kubectl("get", "--raw", "/readyz?verbose").stdout
    assert "[+]etcd ok" in out and "[+]ping ok" in out, out
    assert out.strip().endswith("readyz check passed"), out
    assert cluster.kubectl("get", "--raw", "/readyz/etcd").stdout.strip() == "ok"


@pytest.mark.parametrize("token", [None, "not-the-admin-token"])
def test_request_without_valid_token_is_401(cluster, token):
    info = harness.KubeconfigInfo(cluster.kubeconfig)
    req = urllib.request.Request(info.server + "/api/v1/namespaces/default/pods")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, context=info.ssl_context(), timeout=10)
    assert err.value.code == 401
    status = json.loads(err.value.read())
    assert status["kind"] == "Status" and status["apiVersion"] == "v1", status
    assert status["status"] == "Failure" and status["code"] == 401, status
    assert status["reason"] == "Unauthorized", status


def test_server_certificate_is_verified_by_kubeconfig_ca(cluster):
    """The kubeconfig's CA signs the serving certificate for the address it names."""
    info = harness.KubeconfigInfo(cluster.kubeconfig)
    req = urllib.request.Request(info.server + "/version",
                                 headers={"Authorization": f"Bearer {info.token}"})
    with urllib.request.urlopen(req, context=info.ssl_context(), timeout=10) as r:
        assert json.loads(r.read())["major"] == "1"


# --- create / apply ---------------------------------------------------------------------


def test_create_seed_pods(cluster, ns, testdata):
    for f, name in [("alice-pod.yaml", "alice-pod"), ("nginx-pod.yaml", "nginx-pod"),
                    ("disktype-ssd-pod.yaml", "ssd-pod")]:
        out = cluster.kubectl("create", "-n", ns, "-f", str(testdata / f)).stdout
        assert out.strip() == f"pod/{name} created"
    alice = get_json(cluster, ns, "pod", "alice-pod")
    assert alice["spec"]["containers"][0]["ports"][0] == {"containerPort": 8080, "protocol": "TCP"}
    assert alice["metadata"]["labels"] == {"run": "assassing"}
    ssd = get_json(cluster, ns, "pod", "ssd-pod")
    assert ssd["spec"]["nodeSelector"] == {"disktype": "ssd"}
    nginx = get_json(cluster, ns, "pod", "nginx-pod")
    assert nginx["metadata"]["creationTimestamp"], "the server sets creationTimestamp"
    listed = names(cluster.kubectl("get", "pods", "-n", ns, "-o", "name").stdout)
    assert listed == {"alice-pod", "nginx-pod", "ssd-pod"}


def test_apply_then_apply_changed_manifest_patches(cluster, ns, testdata):
    out = cluster.kubectl("apply", "-n", ns, "-f", str(testdata / "web-server-pod.yaml")).stdout
    assert out.strip() == "pod/web-server-pod created"
    before = get_json(cluster, ns, "pod", "web-server-pod")
    assert before["metadata"]["labels"] == {"app": "web-server", "environment": "production"}
    assert before["metadata"]["annotations"]["description"] == "This pod runs the web server"
    assert "kubectl.kubernetes.io/last-applied-configuration" in before["metadata"]["annotations"]

    out = cluster.kubectl("apply", "-n", ns, "-f", str(testdata / "web-server-pod-v2.yaml")).stdout
    assert out.strip() == "pod/web-server-pod configured"
    after = get_json(cluster, ns, "pod", "web-server-pod")
    assert after["metadata"]["labels"] == {"app": "web-server", "environment": "staging",
                                           "tier": "frontend"}
    annotations = after["metadata"]["annotations"]
    assert annotations["description"] == "This pod runs the web server (staging)"
    applied = json.loads(annotations["kubectl.kubernetes.io/last-applied-configuration"])
    assert applied["metadata"]["labels"]["tier"] == "frontend"
    assert after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]
    assert after["metadata"]["uid"] == before["metadata"]["uid"], "patched, not recreated"

    out = cluster.kubectl("apply", "-n", ns, "-f", str(testdata / "web-server-pod-v2.yaml")).stdout
    assert out.strip() == "pod/web-server-pod unchanged"


def test_create_twice_is_already_exists(cluster, ns, testdata):
    path = str(testdata / "alice-pod.yaml")
    cluster.kubectl("create", "-n", ns, "-f", path)
    cp = cluster.kubectl("create", "-n", ns, "-f", path, check=False)
    assert cp.returncode != 0
    assert (f'Error from server (AlreadyExists): error when creating "{path}": '
            f'pods "alice-pod" already exists') in cp.stderr, cp.stderr


def test_malformed_yaml_is_a_kubectl_error(cluster, ns, testdata):
    cp = cluster.kubectl("create", "-n", ns, "-f", str(testdata / "malformed.yaml"), check=False)
    assert cp.returncode != 0
    assert "error parsing" in cp.stderr and "malformed.yaml" in cp.stderr, cp.stderr
    assert cluster.kubectl("get", "pods", "-n", ns, "-o", "name").stdout == ""


def test_unknown_field_is_rejected_naming_it(cluster, ns, testdata):
    cp = cluster.kubectl("create", "-n", ns, "-f", str(testdata / "unknown-field.yaml"),
                         check=False)
    assert cp.returncode != 0
    assert 'unknown field "spec.containers[0].imagePullPolice"' in cp.stderr, cp.stderr
    assert cluster.kubectl("get", "pods", "-n", ns, "-o", "name").stdout == ""


def test_invalid_name_is_rejected_naming_metadata_name(cluster, ns, testdata):
    cp = cluster.kubectl("create", "-n", ns, "-f", str(testdata / "bad-name.yaml"), check=False)
    assert cp.returncode != 0
    # kubectl prints an Invalid status as the server's message, without "Error from server".
    assert 'The Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"' \
        in cp.stderr, cp.stderr
    assert cluster.kubectl("get", "pods", "-n", ns, "-o", "name").stdout == ""


def test_create_in_missing_namespace_is_not_found(cluster, testdata):
    missing = f"missing-{secrets.token_hex(3)}"
    path = str(testdata / "alice-pod.yaml")
    cp = cluster.kubectl("create", "-n", missing, "-f", path, check=False)
    assert cp.returncode != 0
    assert (f'Error from server (NotFound): error when creating "{path}": '
            f'namespaces "{missing}" not found') in cp.stderr, cp.stderr


def test_get_missing_pod_is_not_found(cluster, ns):
    cp = cluster.kubectl("get", "pod", "nope", "-n", ns, check=False)
    assert cp.returncode != 0
    assert 'Error from server (NotFound): pods "nope" not found' in cp.stderr, cp.stderr


def test_run_and_patch(cluster, ns):
    """Seed 004 creates its web server with `kubectl run`; `kubectl patch` edits it."""
    out = cluster.kubectl("run", "web-server-pod", "-n", ns, "--image=busybox:1.36",
                          "--restart=Never", "--port=80",
                          "--labels=app=web-server,environment=production",
                          "--annotations=description=This pod runs the web server").stdout
    assert out.strip() == "pod/web-server-pod created"
    pod = get_json(cluster, ns, "pod", "web-server-pod")
    assert pod["metadata"]["labels"] == {"app": "web-server", "environment": "production"}
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["containers"][0]["ports"][0]["containerPort"] == 80

    for kind, patch in [("strategic", '{"metadata":{"labels":{"patched":"smp"}}}'),
                        ("merge", '{"metadata":{"labels":{"environment":null}}}'),
                        ("json", '[{"op":"add","path":"/metadata/labels/jp","value":"1"}]')]:
        out = cluster.kubectl("patch", "pod", "web-server-pod", "-n", ns, "--type", kind,
                              "-p", patch).stdout
        assert out.strip() == "pod/web-server-pod patched", kind
    assert get_json(cluster, ns, "pod", "web-server-pod")["metadata"]["labels"] == \
        {"app": "web-server", "patched": "smp", "jp": "1"}


# --- get in every format, watch ---------------------------------------------------------


def test_get_pod_table_yaml_json_wide(cluster, ns, testdata):
    cp = cluster.kubectl("get", "pods", "-n", ns)
    assert cp.stdout == "" and f"No resources found in {ns} namespace." in cp.stderr, cp
    cluster.kubectl("create", "-n", ns, "-f", str(testdata / "alice-pod.yaml"))

    out = cluster.kubectl("get", "po", "alice-pod", "-n", ns).stdout
    header, rows = table(out)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], out
    assert rows[0][:4] == ["alice-pod", "0/1", "Pending", "0"], out
    assert re.fullmatch(r"\d+s", rows[0][4]), out

    doc = yaml.safe_load(cluster.kubectl("get", "pod", "alice-pod", "-n", ns, "-o", "yaml").stdout)
    as_json = get_json(cluster, ns, "pod", "alice-pod")
    for obj in (doc, as_json):
        assert obj["apiVersion"] == "v1" and obj["kind"] == "Pod"
        meta = obj["metadata"]
        assert meta["name"] == "alice-pod" and meta["namespace"] == ns
        assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
        assert obj["spec"]["containers"][0]["ports"][0]["containerPort"] == 8080
        assert obj["status"]["phase"] == "Pending"
    assert doc["metadata"]["uid"] == as_json["metadata"]["uid"]

    out = cluster.kubectl("get", "pod", "alice-pod", "-n", ns, "-o", "wide").stdout
    header, rows = table(out)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                      "NOMINATED NODE", "READINESS GATES"], out
    row = dict(zip(header, rows[0]))
    assert (row["NAME"], row["READY"], row["STATUS"], row["RESTARTS"]) == \
        ("alice-pod", "0/1", "Pending", "0"), out
    assert (row["IP"], row["NODE"], row["NOMINATED NODE"], row["READINESS GATES"]) == \
        ("<none>",) * 4, out


def test_pod_defaults_are_filled_in(cluster, ns, testdata):
    cluster.kubectl("create", "-n", ns, "-f", str(testdata / "alice-pod.yaml"))
    cluster.kubectl("create", "-n", ns, "-f", str(testdata / "web-server-pod.yaml"))
    alice = get_json(cluster, ns, "pod", "alice-pod")
    spec = alice["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["containers"][0]["imagePullPolicy"] == "Always"  # busybox = :latest
    assert spec["containers"][0]["terminationMessagePath"] == "/dev/termination-log"
    web = get_json(cluster, ns, "pod", "web-server-pod")
    assert web["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"  # busybox:1.36
    assert web["spec"]["containers"][0]["ports"][0]["protocol"] == "TCP"


def test_pods_stay_pending_without_a_node(cluster, ns, testdata):
    cluster.kubectl("create", "-n", ns, "-f", str(testdata / "alice-pod.yaml"))
    cp = cluster.kubectl("wait", "-n", ns, "pod/alice-pod", "--for=jsonpath={.status.phase}=Running",
                         "--timeout=3s", check=False)
    assert cp.returncode != 0 and "timed out" in cp.stderr, cp
    pod = get_json(cluster, ns, "pod", "alice-pod")
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")
    assert rows_by_name(cluster.kubectl("get", "pods", "-n", ns).stdout)["alice-pod"]["STATUS"] \
        == "Pending"


def test_get_watch_sees_label_change(cluster, ns, testdata):
    cluster.kubectl("create", "-n", ns, "-f", str(testdata / "alice-pod.yaml"))
    watch = cluster.kubectl_watch("get", "pods", "-n", ns, "-w", "--output-watch-events",
                                  "--show-labels")
    try:
        first = watch.expect(lambda line: "alice-pod" in line)
        assert re.match(r"ADDED\s+alice-pod\s+0/1\s+Pending\s+0\s", first), first
        cluster.kubectl("label", "pod", "alice-pod", "-n", ns, "watched=yes")
        changed = watch.expect(lambda line: "watched=yes" in line)
        assert re.match(r"MODIFIED\s+alice-pod\s+0/1\s+Pending\s", changed), changed
    finally:
        watch.stop()


# --- label, annotate, describe ----------------------------------------------------------


def test_label_overwrite_and_remove(cluster, ns, testdata):
    cluster.kubectl("create", "-n", ns, "-f", str(testdata / "alice-pod.yaml"))
    labels = lambda: get_json(cluster, ns, "pod", "alice-pod")["metadata"]["labels"]  # noqa: E731

    assert cluster.kubectl("label", "-n", ns, "pod", "alice-pod", "env=dev").stdout.strip() \
        == "pod/alice-pod labeled"
    assert labels() == {"run": "assassing", "env": "dev"}

    cp = cluster.kubectl("label", "-n", ns, "pod", "alice-pod", "env=prod", check=False)
    assert cp.returncode != 0
    assert "'env' already has a value (dev), and --overwrite is false" in cp.stderr, cp.stderr
    assert labels()["env"] == "dev"

    assert cluster.kubectl("label", "-n", ns, "pod", "alice-pod", "env=prod", "--overwrite") \
        .stdout.strip() == "pod/alice-pod labeled"
    assert labels() == {"run": "assassing", "env": "prod"}

    assert cluster.kubectl("label", "-n", ns, "pod", "alice-pod", "env-").stdout.strip() \
        == "pod/alice-pod unlabeled"
    assert labels() == {"run": "assassing"}


def test_annotate_default_container(cluster, ns, testdata):
    cluster.kubectl("create", "-n", ns, "-f", str(testdata / "alice-pod.yaml"))
    out = cluster.kubectl("annotate", "-n", ns, "pod", "alice-pod",
                          "kubectl.kubernetes.io/default-container=assassing").stdout
    assert out.strip() == "pod/alice-pod annotated"
    cluster.kubectl("annotate", "-n", ns, "pod", "alice-pod", "owner=alice")
    annotations = get_json(cluster, ns, "pod", "alice-pod")["metadata"]["annotations"]
    assert annotations == {"kubectl.kubernetes.io/default-container": "assassing",
                           "owner": "alice"}
    cluster.kubectl("annotate", "-n", ns, "pod", "alice-pod", "owner-")
    annotations = get_json(cluster, ns, "pod", "alice-pod")["metadata"]["annotations"]
    assert annotations == {"kubectl.kubernetes.io/default-container": "assassing"}


def test_describe_pod_lists_its_events(cluster, ns, testdata):
    cluster.kubectl("create", "-n", ns, "-f", str(testdata / "web-server-pod.yaml"))
    pod = get_json(cluster, ns, "pod", "web-server-pod")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    kubernetes.client.CoreV1Api(cluster.client).create_namespaced_event(ns, {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web-server-pod.e2e"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "web-server-pod",
                           "namespace": ns, "uid": pod["metadata"]["uid"]},
        "reason": "PeapodE2E",
        "message": "hello from the e2e suite",
        "type": "Normal",
        "source": {"component": "e2e-suite"},
        "firstTimestamp": now.isoformat(),
        "lastTimestamp": now.isoformat(),
        "count": 1,
    })
    # An event about another pod must not be listed.
    kubernetes.client.CoreV1Api(cluster.client).create_namespaced_event(ns, {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "other.e2e"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "other", "namespace": ns},
        "reason": "NotThisOne", "message": "about another pod", "type": "Warning",
        "firstTimestamp": now.isoformat(), "lastTimestamp": now.isoformat(), "count": 1,
    })
    out = cluster.kubectl("describe", "pod", "web-server-pod", "-n", ns).stdout
    assert re.search(r"^Name:\s+web-server-pod$", out, re.M), out
    assert re.search(rf"^Namespace:\s+{ns}$", out, re.M), out
    assert re.search(r"^Labels:\s+app=web-server$", out, re.M), out
    assert re.search(r"^\s+environment=production$", out, re.M), out
    assert re.search(r"^Annotations:\s+description: This pod runs the web server$", out, re.M), out
    assert re.search(r"^Status:\s+Pending$", out, re.M), out
    events = out[out.index("\nEvents:"):]
    assert re.search(r"^\s+Type\s+Reason\s+Age\s+From\s+Message$", events, re.M), events
    assert re.search(r"^\s+Normal\s+PeapodE2E\s+\S+\s+e2e-suite\s+hello from the e2e suite$",
                     events, re.M), events
    assert "NotThisOne" not in events, events


# --- delete -----------------------------------------------------------------------------


def test_delete_pods_by_name(cluster, ns):
    create_pods(cluster, ns, pod_manifest("a"), pod_manifest("b"), pod_manifest("c"))
    out = cluster.kubectl("delete", "pod", "a", "b", "-n", ns).stdout
    assert 'pod "a" deleted' in out and 'pod "b" deleted' in out, out
    assert names(cluster.kubectl("get", "pods", "-n", ns, "-o", "name").stdout) == {"c"}


def test_delete_pods_by_label(cluster, ns):
    create_pods(cluster, ns, pod_manifest("x1", {"run": "x"}), pod_manifest("x2", {"run": "x"}),
                pod_manifest("y1", {"run": "y"}))
    out = cluster.kubectl("delete", "pod", "-l", "run=x", "-n", ns).stdout
    assert 'pod "x1" deleted' in out and 'pod "x2" deleted' in out, out
    assert "y1" not in out
    assert names(cluster.kubectl("get", "pods", "-n", ns, "-o", "name").stdout) == {"y1"}


def test_delete_all_pods_keeps_namespace(cluster, ns):
    create_pods(cluster, ns, *(pod_manifest(f"p{i}") for i in range(4)))
    out = cluster.kubectl("delete", "pod", "--all", "-n", ns).stdout
    assert all(f'pod "p{i}" deleted' in out for i in range(4)), out
    cp = cluster.kubectl("get", "pods", "-n", ns)
    assert f"No resources found in {ns} namespace." in cp.stderr, cp
    assert cluster.kubectl("get", "namespace", ns, "-o", "name").stdout.strip() \
        == f"namespace/{ns}"


def test_delete_from_file(cluster, ns, testdata):
    path = str(testdata / "alice-pod.yaml")
    cluster.kubectl("create", "-n", ns, "-f", path)
    out = cluster.kubectl("delete", "-n", ns, "-f", path).stdout
    assert 'pod "alice-pod" deleted' in out, out
    cp = cluster.kubectl("get", "pod", "alice-pod", "-n", ns, check=False)
    assert 'pods "alice-pod" not found' in cp.stderr, cp


def test_force_delete(cluster, ns):
    create_pods(cluster, ns, pod_manifest("forced"))
    cp = cluster.kubectl("delete", "pod", "forced", "-n", ns, "--grace-period=0", "--force")
    assert 'pod "forced" force deleted' in cp.stdout, cp
    assert "Immediate deletion does not wait for confirmation" in cp.stderr, cp
    cp = cluster.kubectl("get", "pod", "forced", "-n", ns, check=False)
    assert 'pods "forced" not found' in cp.stderr, cp


# --- namespaces -------------------------------------------------------------------------


def test_apply_namespace_then_deleting_it_removes_its_pods(cluster, testdata):
    out = cluster.kubectl("apply", "-f", str(testdata / "namespace.yaml")).stdout
    assert out.strip() == "namespace/seed-demo created"
    ns = json.loads(cluster.kubectl("get", "namespace", "seed-demo", "-o", "json").stdout)
    assert ns["status"]["phase"] == "Active" and ns["metadata"]["labels"]["purpose"] == "e2e"
    create_pods(cluster, "seed-demo", pod_manifest("doomed-1"), pod_manifest("doomed-2"))

    out = cluster.kubectl("delete", "namespace", "seed-demo", "--timeout=60s").stdout
    assert 'namespace "seed-demo" deleted' in out, out
    core = kubernetes.client.CoreV1Api(cluster.client)
    wait_until(lambda: not core.list_pod_for_all_namespaces(
        field_selector="metadata.namespace=seed-demo").items, what="pods of seed-demo gone")
    cp = cluster.kubectl("get", "namespace", "seed-demo", check=False)
    assert 'namespaces "seed-demo" not found' in cp.stderr, cp

    # Re-created under the same name, the namespace starts empty.
    cluster.kubectl("apply", "-f", str(testdata / "namespace.yaml"))
    cp = cluster.kubectl("get", "pods", "-n", "seed-demo")
    assert "No resources found in seed-demo namespace." in cp.stderr, cp
    cluster.kubectl("delete", "namespace", "seed-demo", "--timeout=60s")


# --- selectors --------------------------------------------------------------------------


def test_label_and_field_selectors(cluster, ns):
    create_pods(cluster, ns, pod_manifest("pa", {"app": "a"}), pod_manifest("pb", {"app": "b"}),
                pod_manifest("pc", {"app": "c"}), pod_manifest("none"))
    get = lambda *sel: names(cluster.kubectl("get", "pods", "-n", ns, "-o", "name", *sel).stdout)  # noqa: E731
    assert get("--selector", "app in (a,b)") == {"pa", "pb"}
    assert get("-l", "app notin (a,b)") == {"pc", "none"}
    assert get("-l", "app") == {"pa", "pb", "pc"}
    assert get("-l", "!app") == {"none"}
    assert get("-l", "app!=a,app") == {"pb", "pc"}
    assert get("--field-selector", "status.phase=Pending") == {"pa", "pb", "pc", "none"}
    assert get("--field-selector", "status.phase=Running") == set()
    assert get("--field-selector", "metadata.name=pb") == {"pb"}
    assert get("--field-selector", "status.phase=Pending,metadata.name!=pa", "-l", "app") \
        == {"pb", "pc"}
