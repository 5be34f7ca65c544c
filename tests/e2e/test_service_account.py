"""Service accounts (issue 6): every namespace's `default` ServiceAccount (re-created after a
deletion) and `kube-root-ca.crt` ConfigMap; TokenRequest (`serviceaccounts/{name}/token`)
through kubectl and the Python client, with upstream's claims and errors; the API accepting
the tokens it signed while the account and the bound pod exist, and refusing forged,
foreign-audience and stale ones with 401."""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.request

import kubernetes
import pytest

import harness
from helpers import wait_until


def found(read):
    """`read()`, or None while it answers 404 (for wait_until)."""
    def attempt():
        try:
            return read()
        except kubernetes.client.ApiException as e:
            if e.status == 404:
                return None
            raise
    return attempt


def claims_of(token: str) -> dict:
    """The JWT payload, decoded without verification (the test reads what it was given)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def api_status(cluster, path: str, token: str) -> int:
    """The HTTP status of GET `path` with `token` as the bearer credential."""
    info = harness.KubeconfigInfo(cluster.kubeconfig)
    req = urllib.request.Request(info.server + path,
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, context=info.ssl_context(), timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        body = json.loads(e.read() or b"{}")
        if e.code == 401:
            assert body.get("reason") == "Unauthorized", body
        return e.code


def request_token(core, ns: str, name: str, **spec) -> kubernetes.client.AuthenticationV1TokenRequest:
    return core.create_namespaced_service_account_token(
        name, ns, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": spec})


def server_ca(cluster) -> str:
    return harness.KubeconfigInfo(cluster.kubeconfig).ca_pem


def test_every_namespace_has_a_default_service_account(cluster, core, ns):
    for system in ("default", "kube-system", "kube-public", "kube-node-lease", ns):
        wait_until(found(lambda: core.read_namespaced_service_account("default", system)),
                   what=f"default service account in {system}")
    first = core.read_namespaced_service_account("default", ns)
    out = cluster.kubectl("get", "serviceaccounts", "-n", ns).stdout
    assert "default" in out
    # Deleted, it comes back (a new object).
    cluster.kubectl("delete", "serviceaccount", "default", "-n", ns)

    def recreated():
        sa = core.read_namespaced_service_account("default", ns)
        return sa.metadata.uid != first.metadata.uid
    wait_until(found(recreated), what="default service account re-created")


def test_every_namespace_has_the_root_ca_config_map(cluster, core, ns):
    ca = server_ca(cluster)
    cm = wait_until(found(lambda: core.read_namespaced_config_map("kube-root-ca.crt", ns)),
                    what="kube-root-ca.crt")
    assert cm.data == {"ca.crt": ca}
    # The publisher owns the data: a change is put back, a deletion undone.
    cluster.kubectl("patch", "configmap", "kube-root-ca.crt", "-n", ns, "--type=merge",
                    "-p", '{"data":{"ca.crt":"tampered"}}')
    wait_until(lambda: core.read_namespaced_config_map("kube-root-ca.crt", ns).data
               == {"ca.crt": ca}, what="ca.crt restored")
    cluster.kubectl("delete", "configmap", "kube-root-ca.crt", "-n", ns)
    wait_until(found(lambda: core.read_namespaced_config_map("kube-root-ca.crt", ns).data
                     == {"ca.crt": ca}), what="kube-root-ca.crt re-created")


def test_token_request_claims_and_authentication(cluster, core, ns):
    sa = wait_until(found(lambda: core.read_namespaced_service_account("default", ns)),
                    what="default service account")
    before = int(time.time())
    tr = request_token(core, ns, "default")
    token = tr.status.token
    claims = claims_of(token)
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert claims["sub"] == f"system:serviceaccount:{ns}:default"
    assert claims["kubernetes.io"] == {
        "namespace": ns, "serviceaccount": {"name": "default", "uid": sa.metadata.uid}}
    assert before - 5 <= claims["iat"] <= time.time() + 5
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["jti"]
    assert int(tr.status.expiration_timestamp.timestamp()) == claims["exp"]
    assert tr.spec.expiration_seconds == 3600

    # The token authenticates like any credential (there is no RBAC yet).
    assert api_status(cluster, f"/api/v1/namespaces/{ns}/pods", token) == 200
    # A forged token (payload changed under the same signature) does not.
    head, _, sig = token.split(".")
    forged_claims = dict(claims, sub="system:serviceaccount:kube-system:default")
    forged = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
    assert api_status(cluster, "/api/v1/pods", f"{head}.{forged}.{sig}") == 401
    assert api_status(cluster, "/api/v1/pods", "garbage") == 401
    # Another audience is not the API's.
    other = request_token(core, ns, "default", audiences=["vault"]).status.token
    assert claims_of(other)["aud"] == ["vault"]
    assert api_status(cluster, "/api/v1/pods", other) == 401


def test_token_request_errors_are_upstreams(cluster, core, ns):
    wait_until(found(lambda: core.read_namespaced_service_account("default", ns)),
               what="default service account")
    with pytest.raises(kubernetes.client.ApiException) as e:
        request_token(core, ns, "nobody")
    assert e.value.status == 404
    assert json.loads(e.value.body)["message"] == 'serviceaccounts "nobody" not found'
    with pytest.raises(kubernetes.client.ApiException) as e:
        request_token(core, ns, "default", expirationSeconds=599)
    assert e.value.status == 422
    assert "may not specify a duration less than 10 minutes" in json.loads(e.value.body)["message"]
    with pytest.raises(kubernetes.client.ApiException) as e:
        request_token(core, ns, "default", boundObjectRef={
            "apiVersion": "v1", "kind": "ConfigMap", "name": "kube-root-ca.crt"})
    assert e.value.status == 400
    assert "cannot bind token to object of type" in json.loads(e.value.body)["message"]
    with pytest.raises(kubernetes.client.ApiException) as e:
        request_token(core, ns, "default", boundObjectRef={
            "apiVersion": "v1", "kind": "Pod", "name": "absent"})
    assert e.value.status == 404


def test_token_stops_working_with_its_account_or_bound_secret(cluster, core, ns):
    core.create_namespaced_service_account(ns, {"metadata": {"name": "robot"}})
    core.create_namespaced_secret(ns, {"metadata": {"name": "anchor"},
                                       "stringData": {"k": "v"}})
    secret = core.read_namespaced_secret("anchor", ns)
    bound = request_token(core, ns, "robot", boundObjectRef={
        "apiVersion": "v1", "kind": "Secret", "name": "anchor",
        "uid": secret.metadata.uid}).status.token
    assert claims_of(bound)["kubernetes.io"]["secret"] == {
        "name": "anchor", "uid": secret.metadata.uid}
    plain = request_token(core, ns, "robot", expirationSeconds=600).status.token
    assert claims_of(plain)["exp"] - claims_of(plain)["iat"] == 600
    assert api_status(cluster, "/api", bound) == 200
    assert api_status(cluster, "/api", plain) == 200
    core.delete_namespaced_secret("anchor", ns)
    assert api_status(cluster, "/api", bound) == 401
    assert api_status(cluster, "/api", plain) == 200
    # Same name, new uid: the old tokens are still refused.
    core.delete_namespaced_service_account("robot", ns)
    core.create_namespaced_service_account(ns, {"metadata": {"name": "robot"}})
    assert api_status(cluster, "/api", plain) == 401


def test_kubectl_create_token(cluster, ns, core):
    wait_until(found(lambda: core.read_namespaced_service_account("default", ns)),
               what="default service account")
    cp = cluster.kubectl("create", "token", "default", "-n", ns, "--duration=20m",
                         "--audience=https://kubernetes.default.svc.cluster.local",
                         "--audience=extra", check=False)
    # kubectl 1.37 sends the TokenRequest as protobuf.
    assert cp.returncode == 0, cp.stderr
    token = cp.stdout.strip()
    claims = claims_of(token)
    assert claims["sub"] == f"system:serviceaccount:{ns}:default"
    assert claims["aud"] == ["https://kubernetes.default.svc.cluster.local", "extra"]
    assert claims["exp"] - claims["iat"] == 1200
    assert api_status(cluster, "/api/v1/namespaces", token) == 200


# --- pods: admission, the token volume, and calling the API from inside ---------------

from helpers import to_yaml  # noqa: E402
from test_node_pods import get_pod, pod, wait_ready  # noqa: E402

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def exec_sh(n, ns: str, name: str, script: str, check: bool = True):
    return n.kubectl("exec", name, "-n", ns, "--", "sh", "-c", script, check=check)


def test_a_pod_reads_its_token_and_calls_the_api(crun_node, pod_ns):
    n = crun_node
    core = kubernetes.client.CoreV1Api(n.client)
    wait_until(found(lambda: core.read_namespaced_config_map("kube-root-ca.crt", pod_ns)),
               what="kube-root-ca.crt")
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("caller", n.images.busybox, ["sleep", "3600"])))
    p = wait_ready(n, pod_ns, "caller", timeout=90)

    # Admission: the default account and the projected volume, mounted read-only.
    spec = p["spec"]
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    [vol] = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(vol["name"]) == len("kube-api-access-") + 5
    assert vol["projected"] == {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt",
                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}
    assert {"name": vol["name"], "mountPath": MOUNT, "readOnly": True} in \
        spec["containers"][0]["volumeMounts"]
    assert "kube-api-access-" in n.kubectl("get", "pod", "caller", "-n", pod_ns,
                                           "-o", "yaml").stdout

    # The files, as the kubelet writes them.
    assert exec_sh(n, pod_ns, "caller", f"cat {MOUNT}/namespace").stdout == pod_ns
    assert exec_sh(n, pod_ns, "caller", f"cat {MOUNT}/ca.crt").stdout == server_ca(n)
    token = exec_sh(n, pod_ns, "caller", f"cat {MOUNT}/token").stdout
    claims = claims_of(token)
    assert claims["kubernetes.io"]["pod"] == {"name": "caller", "uid": p["metadata"]["uid"]}
    assert claims["kubernetes.io"]["node"]["name"] == p["spec"]["nodeName"]
    assert claims["exp"] - claims["iat"] == 3607
    assert exec_sh(n, pod_ns, "caller", f"touch {MOUNT}/x", check=False).returncode != 0

    # The API's address: the kubernetes Service, as the kubelet injects it.
    env = dict(line.split("=", 1) for line in
               exec_sh(n, pod_ns, "caller", "env").stdout.splitlines() if "=" in line)
    host, port = env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]
    svc = json.loads(n.kubectl("get", "svc", "kubernetes", "-n", "default",
                               "-o", "json").stdout)
    assert host == svc["spec"]["clusterIP"]  # 10.43.0.1 with the default --service-cidr
    assert port == "443"
    assert env["KUBERNETES_PORT"] == f"tcp://{host}:{port}"

    # Behind it, the API server's advertise address (the bridge's gateway), and the server's
    # certificate is valid for that address under the pod's ca.crt. (Straight to the
    # endpoint: other test clusters on this machine program the same ClusterIP.)
    ep = json.loads(n.kubectl("get", "endpoints", "kubernetes", "-n", "default",
                              "-o", "json").stdout)["subsets"][0]
    api_ip, api_port = ep["addresses"][0]["ip"], ep["ports"][0]["port"]
    assert api_ip == n.node.pod_cidr.rsplit(".", 1)[0] + ".1"
    assert api_port == harness.KubeconfigInfo(n.kubeconfig).host_port()[1]
    ctx = ssl.create_default_context(cadata=server_ca(n))
    with ssl.create_connection((api_ip, api_port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=api_ip) as tls:
        assert tls.version()

    # From inside the pod, through the Service: TLS verified against the mounted ca.crt for
    # the ClusterIP (in the server's certificate, as upstream), the mounted token as the
    # bearer credential.
    def call(token_file: str) -> tuple[int, str]:
        script = (
            "printf 'GET /api/v1/namespaces/%s/pods/%s HTTP/1.1\\r\\nHost: %s\\r\\n"
            "Authorization: Bearer %s\\r\\nConnection: close\\r\\n\\r\\n' "
            f"\"$(cat {MOUNT}/namespace)\" \"$HOSTNAME\" \"$KUBERNETES_SERVICE_HOST\" "
            f"\"$(cat {token_file})\" | openssl s_client -quiet "
            "-connect $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT "
            f"-CAfile {MOUNT}/ca.crt -verify_return_error -verify_ip $KUBERNETES_SERVICE_HOST")
        out = exec_sh(n, pod_ns, "tls", script, check=False)
        # kubectl's text output has its CRLFs folded to LF.
        head, _, body = out.stdout.partition("\n\n")
        assert head.startswith("HTTP/1.1 "), out.stdout + out.stderr
        assert "chunked" not in head.lower(), head
        return int(head.split()[1]), body

    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("tls", n.images.tls_client, ["sleep", "3600"])))
    tls_pod = wait_ready(n, pod_ns, "tls", timeout=90)
    status, body = call(f"{MOUNT}/token")
    assert status == 200, body
    assert json.loads(body)["metadata"]["uid"] == tls_pod["metadata"]["uid"]
    # A forged token (the signature reversed) is refused.
    head, payload, sig = token.split(".")
    exec_sh(n, pod_ns, "tls", f"printf %s '{head}.{payload}.{sig[::-1]}' > /tmp/forged")
    status, body = call("/tmp/forged")
    assert status == 401 and json.loads(body)["reason"] == "Unauthorized", body

    # Once the pod is gone, its token no longer authenticates.
    assert api_status(n, "/api", token) == 200
    n.kubectl("delete", "pod", "caller", "-n", pod_ns, "--grace-period=1", "--wait=true",
              timeout=60)
    assert api_status(n, "/api", token) == 401


def test_automount_false_on_the_pod_or_the_account(crun_node, pod_ns):
    n = crun_node
    core = kubernetes.client.CoreV1Api(n.client)
    core.create_namespaced_service_account(pod_ns, {
        "metadata": {"name": "quiet"}, "automountServiceAccountToken": False})
    off = pod("pod-off", n.images.busybox, ["sleep", "3600"],
              automountServiceAccountToken=False)
    via_sa = pod("sa-off", n.images.busybox, ["sleep", "3600"], serviceAccountName="quiet")
    # The pod's own setting wins over the account's.
    back_on = pod("pod-on", n.images.busybox, ["sleep", "3600"], serviceAccountName="quiet",
                  automountServiceAccountToken=True)
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(off, via_sa, back_on))
    for name in ("pod-off", "sa-off"):
        spec = wait_ready(n, pod_ns, name, timeout=90)["spec"]
        assert not any(v["name"].startswith("kube-api-access-")
                       for v in spec.get("volumes", []))
        assert not spec["containers"][0].get("volumeMounts")
        assert exec_sh(n, pod_ns, name, f"ls {MOUNT}", check=False).returncode != 0
    spec = wait_ready(n, pod_ns, "pod-on", timeout=90)["spec"]
    assert spec["serviceAccountName"] == "quiet"
    assert any(v["name"].startswith("kube-api-access-") for v in spec["volumes"])
    claims = claims_of(exec_sh(n, pod_ns, "pod-on", f"cat {MOUNT}/token").stdout)
    assert claims["sub"] == f"system:serviceaccount:{pod_ns}:quiet"


def test_a_pod_naming_a_missing_account_is_refused(crun_node, pod_ns):
    n = crun_node
    p = pod("lost", n.images.busybox, ["sleep", "3600"], serviceAccountName="ghost")
    cp = n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p), check=False)
    assert cp.returncode != 0
    assert (f'pods "lost" is forbidden: error looking up service account {pod_ns}/ghost: '
            f'serviceaccount "ghost" not found') in cp.stderr
    core = kubernetes.client.CoreV1Api(n.client)
    with pytest.raises(kubernetes.client.ApiException) as e:
        core.create_namespaced_pod(pod_ns, p)
    assert e.value.status == 403
    assert json.loads(e.value.body)["reason"] == "Forbidden"
