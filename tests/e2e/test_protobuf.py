"""The Kubernetes protobuf wire format (issue 7): kubectl 1.37's generators and every
client-go program send built-in kinds as `application/vnd.kubernetes.protobuf` and prefer
protobuf responses. API-only: no node needed.

The tests speak protobuf themselves through a minimal wire reader/writer below (the venv
has no protobuf package), with field numbers from upstream's generated.proto.
"""

from __future__ import annotations

import json
import ssl
import struct
import urllib.error
import urllib.request

import pytest

import harness

PB = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"


# --- a minimal protobuf writer and reader ------------------------------------------------

def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field_bytes(tag: int, data: bytes) -> bytes:
    return varint(tag << 3 | 2) + varint(len(data)) + data


def field_str(tag: int, s: str) -> bytes:
    return field_bytes(tag, s.encode())


def field_varint(tag: int, n: int) -> bytes:
    return varint(tag << 3) + varint(n)


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = field_str(1, api_version) + field_str(2, kind)
    return MAGIC + field_bytes(1, type_meta) + field_bytes(2, raw) + field_str(3, "") + field_str(4, "")


def read_varint(b: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def fields(b: bytes) -> list[tuple[int, object]]:
    """All (tag, value) of one message: ints for varints, bytes for length-delimited."""
    out, i = [], 0
    while i < len(b):
        key, i = read_varint(b, i)
        tag, wire = key >> 3, key & 7
        if wire == 0:
            v, i = read_varint(b, i)
        elif wire == 2:
            n, i = read_varint(b, i)
            v, i = b[i:i + n], i + n
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise AssertionError(f"wire type {wire}")
        out.append((tag, v))
    return out


def first(b: bytes, tag: int):
    return next((v for t, v in fields(b) if t == tag), None)


def unwrap(body: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, raw message) of an enveloped object."""
    assert body[:4] == MAGIC, body[:16]
    body = body[4:]
    type_meta = first(body, 1)
    return first(type_meta, 1).decode(), first(type_meta, 2).decode(), first(body, 2)


# --- raw HTTPS ------------------------------------------------------------------------

def request(cluster, method: str, path: str, body: bytes | None = None,
            content_type: str | None = None, accept: str = "application/json"):
    info = harness.KubeconfigInfo(cluster.kubeconfig)
    req = urllib.request.Request(info.server.rstrip("/") + path, data=body, method=method)
    req.add_header("Authorization", f"Bearer {info.token}")
    req.add_header("Accept", accept)
    if content_type:
        req.add_header("Content-Type", content_type)
    ctx: ssl.SSLContext = info.ssl_context()
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def get_json(cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def strip_identity(obj: dict) -> dict:
    """An object without what differs between two creations (name, uid, times, rv)."""
    obj = json.loads(json.dumps(obj))
    meta = obj.get("metadata", {})
    for k in ("name", "uid", "resourceVersion", "creationTimestamp", "managedFields"):
        meta.pop(k, None)
    return obj


# --- kubectl's generators -------------------------------------------------------------

def sent_protobuf(cp) -> bool:
    return f"Content-Type: {PB}" in cp.stderr


def test_kubectl_create_namespace_sends_protobuf(cluster):
    cp = cluster.kubectl("create", "namespace", "pb-ns", "-v=8")
    assert sent_protobuf(cp), cp.stderr[-2000:]
    ns = get_json(cluster, "get", "namespace", "pb-ns")
    assert ns["metadata"]["name"] == "pb-ns"
    assert ns["status"]["phase"] == "Active"
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    # Same as a namespace created through JSON.
    cluster.kubectl("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "json-ns"}}))
    other = get_json(cluster, "get", "namespace", "json-ns")
    a, b = strip_identity(ns), strip_identity(other)
    a["metadata"]["labels"].pop("kubernetes.io/metadata.name")
    b["metadata"]["labels"].pop("kubernetes.io/metadata.name")
    assert a == b
    cluster.kubectl("delete", "namespace", "pb-ns", "json-ns", "--wait=false")


def test_kubectl_create_configmap_secret_serviceaccount(cluster, ns, tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_text("listen 80;\nname=\u00e9t\u00e9\n")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)))
    cp = cluster.kubectl("-n", ns, "create", "configmap", "cm1", "--from-literal=a=b",
                         "--from-literal=empty=", f"--from-file={conf}", f"--from-file={blob}",
                         "-v=8")
    assert sent_protobuf(cp), cp.stderr[-2000:]
    cp = cluster.kubectl("-n", ns, "create", "secret", "generic", "s1", "--from-literal=password=s3cr3t",
                         f"--from-file={blob}", "-v=8")
    assert sent_protobuf(cp)
    cp = cluster.kubectl("-n", ns, "create", "serviceaccount", "sa1", "-v=8")
    assert sent_protobuf(cp)

    cm = get_json(cluster, "-n", ns, "get", "configmap", "cm1")
    assert cm["data"] == {"a": "b", "empty": "", "app.conf": conf.read_text()}
    import base64
    assert base64.b64decode(cm["binaryData"]["blob.bin"]) == bytes(range(256))
    secret = get_json(cluster, "-n", ns, "get", "secret", "s1")
    assert secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["password"]) == b"s3cr3t"
    assert base64.b64decode(secret["data"]["blob.bin"]) == bytes(range(256))
    sa = get_json(cluster, "-n", ns, "get", "serviceaccount", "sa1")
    assert sa["metadata"]["name"] == "sa1"

    # The same objects created through JSON read back identical.
    for obj in (cm, secret, sa):
        twin = strip_identity(obj)
        twin["metadata"]["name"] = obj["metadata"]["name"] + "-json"
        cluster.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(twin))
        back = get_json(cluster, "-n", ns, "get", obj["kind"].lower(), twin["metadata"]["name"])
        assert strip_identity(back) == strip_identity(obj)

    out = cluster.kubectl("-n", ns, "get", "ns,cm,secret,sa").stdout
    for name in (ns, "cm1", "cm1-json", "s1", "s1-json", "sa1", "sa1-json"):
        assert name in out, out
    desc = cluster.kubectl("-n", ns, "describe", "configmap", "cm1").stdout
    assert "listen 80;" in desc and "BinaryData" in desc
    desc = cluster.kubectl("-n", ns, "describe", "secret", "s1").stdout
    assert "password:  6 bytes" in desc
    cluster.kubectl("-n", ns, "describe", "serviceaccount", "sa1")
    cluster.kubectl("describe", "namespace", ns)


# --- protobuf bodies and responses ---------------------------------------------------

def pod_pb(name: str) -> bytes:
    """A pod as client-go encodes it: every non-pointer field written, zero or not."""
    meta = field_str(1, name) + field_str(2, "") + field_str(3, "") + field_varint(7, 0) \
        + field_bytes(8, b"") + field_bytes(11, field_str(1, "app") + field_str(2, "pb"))
    container = field_str(1, "c") + field_str(2, "busybox") + field_str(3, "sleep") \
        + field_str(3, "3600") + field_str(5, "") \
        + field_bytes(6, field_str(1, "http") + field_varint(2, 0) + field_varint(3, 8080)
                      + field_str(4, "TCP")) \
        + field_bytes(8, field_bytes(1, field_str(1, "cpu") + field_bytes(2, field_str(1, "100m")))) \
        + field_bytes(11, field_bytes(1, field_bytes(3, field_bytes(1, field_varint(1, 1)
                                                                    + field_varint(2, 0)
                                                                    + field_str(3, "http"))))
                      + field_varint(4, 1)) \
        + field_varint(16, 0) + field_varint(17, 0) + field_varint(18, 0)
    spec = field_bytes(2, container) + field_str(3, "") + field_varint(4, 0) \
        + field_varint(11, 0) + field_varint(12, 0) + field_varint(13, 0) + field_varint(21, 0)
    return envelope("v1", "Pod", field_bytes(1, meta) + field_bytes(2, spec) + field_bytes(3, b""))


POD_JSON = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"labels": {"app": "pb"}},
    "spec": {
        "containers": [{
            "name": "c", "image": "busybox", "command": ["sleep", "3600"],
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "100m"}},
            "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1},
        }],
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": False,
    },
}


def test_pod_created_with_protobuf_equals_one_created_with_json(cluster, ns):
    code, ctype, body = request(cluster, "POST", f"/api/v1/namespaces/{ns}/pods",
                                pod_pb("pod-pb"), PB)
    assert code == 201, body[:500]
    assert ctype == "application/json"  # asked for JSON
    created = json.loads(body)
    doc = dict(POD_JSON, metadata=dict(POD_JSON["metadata"], name="pod-json"))
    code, _, body = request(cluster, "POST", f"/api/v1/namespaces/{ns}/pods",
                            json.dumps(doc).encode(), "application/json")
    assert code == 201, body[:500]
    via_pb = get_json(cluster, "-n", ns, "get", "pod", "pod-pb")
    via_json = get_json(cluster, "-n", ns, "get", "pod", "pod-json")
    assert created["metadata"]["name"] == "pod-pb"
    # Status carries the scheduler's timestamps; the phase is what must agree.
    assert via_pb.pop("status")["phase"] == via_json.pop("status")["phase"]
    assert strip_identity(via_pb) == strip_identity(via_json)
    # Explicit zeros of pointer fields survived; Go's zeros of plain fields did not.
    assert via_pb["spec"]["terminationGracePeriodSeconds"] == 0
    assert via_pb["spec"]["automountServiceAccountToken"] is False
    assert "hostNetwork" not in via_pb["spec"]
    assert "hostPort" not in via_pb["spec"]["containers"][0]["ports"][0]


def test_get_list_and_status_in_protobuf(cluster, ns):
    cluster.kubectl("-n", ns, "create", "configmap", "cfg", "--from-literal=k=v")
    accept = f"{PB}, application/json"
    code, ctype, body = request(cluster, "GET", f"/api/v1/namespaces/{ns}/configmaps/cfg",
                                accept=accept)
    assert code == 200 and ctype == PB
    api_version, kind, raw = unwrap(body)
    assert (api_version, kind) == ("v1", "ConfigMap")
    meta = first(raw, 1)
    assert first(meta, 1) == b"cfg" and first(meta, 3) == ns.encode()
    entry = first(raw, 2)
    assert (first(entry, 1), first(entry, 2)) == (b"k", b"v")

    code, ctype, body = request(cluster, "GET", f"/api/v1/namespaces/{ns}/configmaps",
                                accept=accept)
    assert code == 200 and ctype == PB
    api_version, kind, raw = unwrap(body)
    assert kind == "ConfigMapList"
    items = [v for t, v in fields(raw) if t == 2]
    # Every namespace also holds the root CA's ConfigMap (kube-root-ca.crt).
    names = sorted(first(first(item, 1), 1) for item in items)
    assert names == [b"cfg", b"kube-root-ca.crt"], names
    assert first(first(raw, 1), 2)  # list metadata.resourceVersion

    code, ctype, body = request(cluster, "GET", f"/api/v1/namespaces/{ns}/configmaps/nope",
                                accept=accept)
    assert code == 404 and ctype == PB
    _, kind, raw = unwrap(body)
    assert kind == "Status"
    assert first(raw, 4) == b"NotFound" and first(raw, 6) == 404

    # Tables stay JSON whatever else the client lists.
    code, ctype, body = request(
        cluster, "GET", f"/api/v1/namespaces/{ns}/configmaps",
        accept=f"application/json;as=Table;v=v1;g=meta.k8s.io, {PB}")
    assert code == 200 and ctype.startswith("application/json")
    assert json.loads(body)["kind"] == "Table"


def test_watch_in_protobuf(cluster, ns):
    cluster.kubectl("-n", ns, "create", "configmap", "w1", "--from-literal=k=v")
    info = harness.KubeconfigInfo(cluster.kubeconfig)
    req = urllib.request.Request(
        info.server.rstrip("/") + f"/api/v1/namespaces/{ns}/configmaps?watch=1&timeoutSeconds=5"
        "&fieldSelector=metadata.name%3Dw1")
    req.add_header("Authorization", f"Bearer {info.token}")
    req.add_header("Accept", f"{PB}, application/json")
    with urllib.request.urlopen(req, context=info.ssl_context(), timeout=30) as resp:
        assert resp.headers["Content-Type"] == f"{PB};stream=watch"
        cluster.kubectl("-n", ns, "delete", "configmap", "w1")
        events = []
        while len(events) < 2:
            header = resp.read(4)
            assert len(header) == 4, events
            (n,) = struct.unpack(">I", header)
            frame = resp.read(n)
            # A bare WatchEvent; the object inside it carries the envelope.
            event_type = first(frame, 1).decode()
            _, kind, raw = unwrap(first(first(frame, 2), 1))
            events.append((event_type, kind, first(first(raw, 1), 1).decode()))
    assert events == [("ADDED", "ConfigMap", "w1"), ("DELETED", "ConfigMap", "w1")]


@pytest.mark.parametrize("body", [
    b"k8s\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    b"k8s\x00",
    b"not protobuf at all",
    MAGIC + b"\x0a\x0c\x0a\x02v1\x12\x06Gadget\x12\x00",
    MAGIC + b"\x12\x05\x0a\x03\x0a\x01",
])
def test_garbage_protobuf_is_a_400_and_the_server_keeps_serving(cluster, ns, body):
    code, ctype, resp = request(cluster, "POST", f"/api/v1/namespaces/{ns}/configmaps", body, PB)
    assert code == 400, resp[:300]
    status = json.loads(resp)
    assert status["kind"] == "Status" and status["reason"] == "BadRequest"
    assert PB in status["message"]
    code, _, _ = request(cluster, "GET", f"/api/v1/namespaces/{ns}/configmaps")
    assert code == 200


def test_kind_mismatch_in_protobuf_is_a_400(cluster, ns):
    body = envelope("v1", "Secret", field_bytes(1, field_str(1, "x")))
    code, _, resp = request(cluster, "POST", f"/api/v1/namespaces/{ns}/configmaps", body, PB)
    assert code == 400
    assert "kind" in json.loads(resp)["message"]


def test_python_client_still_uses_json(cluster, ns, core):
    core.create_namespaced_config_map(ns, {"metadata": {"name": "py"}, "data": {"a": "1"}})
    assert core.read_namespaced_config_map("py", ns).data == {"a": "1"}
