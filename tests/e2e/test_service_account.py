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
    if cp.returncode != 0 and "unknown format" in cp.stderr:
        # kubectl 1.37 sends the TokenRequest as protobuf; bodies in protobuf are issue 7.
        pytest.xfail("kubectl sends TokenRequest as protobuf, not decoded yet: " + cp.stderr)
    assert cp.returncode == 0, cp.stderr
    token = cp.stdout.strip()
    claims = claims_of(token)
    assert claims["sub"] == f"system:serviceaccount:{ns}:default"
    assert claims["aud"] == ["https://kubernetes.default.svc.cluster.local", "extra"]
    assert claims["exp"] - claims["iat"] == 1200
    assert api_status(cluster, "/api/v1/namespaces", token) == 200
