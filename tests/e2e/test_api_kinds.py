"""One module per kind (issue 13): a kind added through the recipe of ARCHITECTURE.md §7
(core/v1 PodTemplate) is everywhere a served kind must be — discovery, explain, tables,
protobuf, field selectors, strategic merge — and bad input every kind refuses alike.
Driven by the real kubectl 1.37 and raw HTTPS; API-only, no node needed.
"""

from __future__ import annotations

import json
import re

from helpers import names, rows_by_name, table, to_yaml
from test_protobuf import PB, envelope, field_bytes, field_str, fields, first, request, unwrap


def template(name: str, image: str = "nginx:1.27", labels: dict | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": name},
        "template": {
            "metadata": {"labels": labels or {"app": name}},
            "spec": {"containers": [
                {"name": "app", "image": image},
                {"name": "sidecar", "image": "busybox"},
            ]},
        },
    }


def test_pod_templates_in_api_resources_and_explain(cluster):
    out = cluster.kubectl("api-resources").stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    assert ["podtemplates", "v1", "true", "PodTemplate"] in rows, out

    out = cluster.kubectl("explain", "podtemplate.template.spec").stdout
    assert re.search(r"^KIND:\s+PodTemplate$", out, re.M), out
    assert re.search(r"^VERSION:\s+v1$", out, re.M), out
    assert re.search(r"^FIELD:\s+spec <PodSpec>$", out, re.M), out
    assert re.search(r"^\s+containers\s+<\[\]Container> -required-$", out, re.M), out


def test_pod_templates_get_wide_and_field_selectors(cluster, ns):
    cluster.kubectl("-n", ns, "create", "-f", "-",
                    input=to_yaml(template("web", labels={"tier": "fe", "app": "web"}), template("db")))
    out = cluster.kubectl("-n", ns, "get", "podtemplates").stdout
    header, _ = table(out)
    assert header == ["NAME", "CONTAINERS", "IMAGES", "POD LABELS"], out
    rows = rows_by_name(out)
    assert rows["web"] == {"NAME": "web", "CONTAINERS": "app,sidecar",
                           "IMAGES": "nginx:1.27,busybox", "POD LABELS": "app=web,tier=fe"}, out
    # Upstream has no wide-only columns for pod templates.
    wide = cluster.kubectl("-n", ns, "get", "podtemplates", "-o", "wide").stdout
    assert table(wide)[0] == header, wide

    get = lambda *sel: names(cluster.kubectl("-n", ns, "get", "podtemplates", "-o", "name", *sel).stdout)  # noqa: E731
    assert get() == {"web", "db"}
    assert get("--field-selector", "metadata.name=db") == {"db"}
    assert get("--field-selector", "metadata.name!=db") == {"web"}
    cp = cluster.kubectl("-n", ns, "get", "podtemplates", "--field-selector", "spec.x=y", check=False)
    assert cp.returncode != 0
    assert '"spec.x" is not a known field selector: only "metadata.name", "metadata.namespace"' \
        in cp.stderr, cp.stderr

    # Defaults of the pod spec and the generation were applied by the kind's strategy.
    obj = json.loads(cluster.kubectl("-n", ns, "get", "podtemplate", "web", "-o", "json").stdout)
    assert obj["metadata"]["generation"] == 1
    assert obj["template"]["spec"]["restartPolicy"] == "Always"
    assert obj["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"

    # kubectl apply builds a strategic merge patch from the published merge keys; the
    # server merges containers by name: the sidecar stays, the image changes.
    changed = template("web", image="nginx:1.28", labels={"tier": "fe", "app": "web"})
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=to_yaml(changed))
    obj = json.loads(cluster.kubectl("-n", ns, "get", "podtemplate", "web", "-o", "json").stdout)
    containers = obj["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "sidecar"]
    assert containers[0]["image"] == "nginx:1.28"
    assert obj["metadata"]["generation"] == 2
    patch = '{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:2"}]}}}'
    cluster.kubectl("-n", ns, "patch", "podtemplate", "web", "-p", patch)
    obj = json.loads(cluster.kubectl("-n", ns, "get", "podtemplate", "web", "-o", "json").stdout)
    assert [c["image"] for c in obj["template"]["spec"]["containers"]] == ["nginx:1.28", "busybox:2"]

    out = cluster.kubectl("-n", ns, "delete", "podtemplate", "web", "db").stdout
    assert 'podtemplate "web" deleted' in out, out
    assert get() == set()


def test_pod_templates_in_protobuf(cluster, ns):
    # PodTemplate{metadata=1, template=2}, PodTemplateSpec{metadata=1, spec=2},
    # PodSpec{containers=2}, Container{name=1, image=2}, ObjectMeta{name=1, labels=11}.
    container = field_str(1, "app") + field_str(2, "nginx")
    label = field_str(1, "app") + field_str(2, "pb")
    spec = field_bytes(1, field_bytes(11, label)) + field_bytes(2, field_bytes(2, container))
    raw = field_bytes(1, field_str(1, "pb")) + field_bytes(2, spec)
    path = f"/api/v1/namespaces/{ns}/podtemplates"
    status, ctype, body = request(cluster, "POST", path, envelope("v1", "PodTemplate", raw),
                                  content_type=PB, accept=PB)
    assert status == 201, body
    assert ctype == PB
    api_version, kind, msg = unwrap(body)
    assert (api_version, kind) == ("v1", "PodTemplate")
    assert first(first(msg, 1), 1) == b"pb"

    status, ctype, body = request(cluster, "GET", path, accept=f"{PB}, application/json")
    assert status == 200 and ctype == PB, body
    api_version, kind, msg = unwrap(body)
    assert kind == "PodTemplateList"
    items = [v for t, v in fields(msg) if t == 2]
    assert [first(first(i, 1), 1) for i in items] == [b"pb"]

    # kubectl reads it back the same through JSON.
    obj = json.loads(cluster.kubectl("-n", ns, "get", "podtemplate", "pb", "-o", "json").stdout)
    assert obj["template"]["metadata"]["labels"] == {"app": "pb"}
    assert obj["template"]["spec"]["containers"][0]["image"] == "nginx"
    assert obj["template"]["spec"]["containers"][0]["terminationMessagePolicy"] == "File"


# --- bad input every kind refuses (issue 13, 7(a)-(d)) ------------------------------------

def send(cluster, method: str, path: str, body, content_type: str = "application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, _, out = request(cluster, method, path, data, content_type=content_type)
    return status, json.loads(out)


def test_core_events_get_metadata_validation(cluster, ns):
    path = f"/api/v1/namespaces/{ns}/events"
    about = {"kind": "Pod", "name": "p", "namespace": ns}
    status, out = send(cluster, "POST", path, {"metadata": {}, "involvedObject": about})
    assert status == 422, out
    assert out["message"] == \
        'Event "" is invalid: metadata.name: Required value: name or generateName is required'
    status, out = send(cluster, "POST", path, {"metadata": {"name": "e1", "labels": {"a": "b c"}},
                                              "involvedObject": about})
    assert status == 422, out
    status, out = send(cluster, "POST", path, {"metadata": {"name": "e2", "annotations": {"a": "x" * 300 * 1024}},
                                              "involvedObject": about})
    assert status == 422, out
    assert "Too long: may not be more than 262144 bytes" in out["message"]
    # Nothing was stored: a well-formed event with a name is the only one.
    status, out = send(cluster, "POST", path, {"metadata": {"name": "e3"}, "involvedObject": about})
    assert status == 201, out
    status, _, body = request(cluster, "GET", path)
    assert [e["metadata"]["name"] for e in json.loads(body)["items"]] == ["e3"]


def test_replacing_or_patching_cannot_lose_or_move_an_object(cluster, ns):
    path = f"/api/v1/namespaces/{ns}/configmaps"
    status, out = send(cluster, "POST", path, {"metadata": {"name": "w1"}, "data": {"k": "v"}})
    assert status == 201, out
    status, out = send(cluster, "PUT", f"{path}/w1", {})
    assert status == 400, out
    assert out["message"] == \
        "the name of the object (w1 based on URL) was undeterminable: name must be provided"
    status, out = send(cluster, "PUT", f"{path}/w1", {"metadata": {"name": "w1", "namespace": "default"}})
    assert status == 400, out
    assert out["message"] == \
        "the namespace of the provided object does not match the namespace sent on the request"
    status, out = send(cluster, "PATCH", f"{path}/w1",
                       [{"op": "replace", "path": "/metadata/namespace", "value": "default"}],
                       content_type="application/json-patch+json")
    assert status == 400, out
    assert out["message"] == \
        f"the namespace of the object (default) does not match the namespace on the request ({ns})"
    status, _, body = request(cluster, "GET", f"{path}/w1")
    assert json.loads(body)["data"] == {"k": "v"}


def test_duplicate_fields_follow_field_validation(cluster, ns):
    path = f"/api/v1/namespaces/{ns}/configmaps"
    body = b'{"metadata":{"name":"dup"},"data":{"a":"1","a":"2"}}'
    status, out = send(cluster, "POST", f"{path}?fieldValidation=Strict", body)
    assert status == 400, out
    assert out["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: '
                              'strict decoding error: duplicate field "data.a"')
    # Warn, the default, keeps the last value (and says so in a Warning header).
    status, out = send(cluster, "POST", path, body)
    assert status == 201, out
    assert out["data"] == {"a": "2"}
