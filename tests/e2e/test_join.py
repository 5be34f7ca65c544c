"""Nodes join with the server's token alone (issue 16's start contract): `DIR/node-token`,
`GET /cacerts`, bootstrap-token authentication and what a bootstrap user may do, the agent's
client certificate through the CSR API (kubelet TLS bootstrap) reused across restarts, a
wrong CA pin refused, and servers sharing one etcd sharing the cluster PKI, with an agent
that keeps its node Ready through the loss of one server."""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import harness
import node as node_support
from conftest import Cluster


def _get(url: str, token: str | None = None, ctx: ssl.SSLContext | None = None):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if ctx is None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _node_ready(c: Cluster, name: str) -> bool:
    out = c.kubectl("get", "node", name, "-o", "json", check=False)
    if out.returncode != 0:
        return False
    conds = json.loads(out.stdout)["status"].get("conditions", [])
    return any(x["type"] == "Ready" and x["status"] == "True" for x in conds)


def _cert_field(pem_file: Path, *args: str) -> str:
    return subprocess.run(["openssl", "x509", "-noout", *args, "-nameopt", "RFC2253"],
                          input=pem_file.read_bytes(), capture_output=True, check=True
                          ).stdout.decode().strip()


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("join")
    services = node_support.ServiceRange()
    server = harness.Peapod(workdir / "server", extra_args=["--service-cidr", services.cidr])
    (workdir / "server").mkdir()
    server.start()
    c = Cluster(server, workdir)
    c.services = services
    try:
        yield c
    finally:
        c.close()
        server.stop()


def test_node_token_pins_the_ca_served_at_cacerts(control_plane):
    c = control_plane
    data = c.server.data_dir
    token_file = data / "node-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token.startswith("K10") and "::" in token
    pin, creds = token[3:].split("::", 1)
    token_id, secret = creds.split(".")
    assert len(token_id) == 6 and len(secret) == 16
    status, body = _get(f"https://127.0.0.1:{c.server.port}/cacerts")
    assert status == 200
    assert body == (data / "pki" / "ca.crt").read_bytes()
    import hashlib
    assert hashlib.sha256(body).hexdigest() == pin
    # Stored as upstream stores bootstrap tokens.
    out = c.kubectl("get", "secret", "-n", "kube-system", f"bootstrap-token-{token_id}",
                    "-o", "json")
    s = json.loads(out.stdout)
    assert s["type"] == "bootstrap.kubernetes.io/token"
    import base64
    d = {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
    assert d["token-id"] == token_id and d["token-secret"] == secret
    assert d["usage-bootstrap-authentication"] == "true"
    assert d["auth-extra-groups"] == "system:bootstrappers:peapod:default-node-token"


def test_bootstrap_token_user_is_limited(control_plane):
    c = control_plane
    base = f"https://127.0.0.1:{c.server.port}"
    creds = (c.server.data_dir / "node-token").read_text().strip().split("::", 1)[1]
    token_id = creds.split(".")[0]
    status, body = _get(f"{base}/api/v1/namespaces/default/pods", "abcdef.0123456789abcdef")
    assert status == 401, body
    status, body = _get(f"{base}/api/v1/namespaces/default/pods", creds)
    assert status == 403, body
    st = json.loads(body)
    assert st["reason"] == "Forbidden"
    assert st["message"] == (
        f'pods is forbidden: User "system:bootstrap:{token_id}" cannot list resource "pods" '
        f'in API group "" in the namespace "default"')
    status, _ = _get(f"{base}/api", creds)
    assert status == 200
    status, body = _get(f"{base}/apis/certificates.k8s.io/v1/certificatesigningrequests", creds)
    assert status == 200, body


def test_agent_joins_with_the_token_alone(control_plane, tmp_path):
    c = control_plane
    agent = node_support.Agent(tmp_path, c.server, services=c.services)
    try:
        agent.start()
        _wait(lambda: _node_ready(c, agent.name), 60, f"node {agent.name} Ready")
        # Its CSR, approved and issued, as kubectl shows it.
        out = c.kubectl("get", "csr").stdout
        line = next(l for l in out.splitlines() if f"system:bootstrap:" in l or agent.name in l)
        assert "kubernetes.io/kube-apiserver-client-kubelet" in line
        assert "Approved,Issued" in line
        pem = agent.data_dir / "pki" / "kubelet-client-current.pem"
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
        subject = _cert_field(pem, "-subject")
        assert f"CN=system:node:{agent.name}" in subject and "O=system:nodes" in subject
        ca = c.server.data_dir / "pki" / "ca.crt"
        subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(pem)], check=True,
                       capture_output=True)
        first = pem.read_bytes()

        # A restart without the token reuses the certificate.
        agent.stop()
        agent.token_file = None
        agent.start()
        _wait(lambda: _node_ready(c, agent.name), 60, f"node {agent.name} Ready again")
        assert pem.read_bytes() == first
    finally:
        agent.stop()
        c.kubectl("delete", "node", agent.name, check=False)


def test_wrong_ca_pin_is_refused(control_plane, tmp_path):
    c = control_plane
    token = (c.server.data_dir / "node-token").read_text().strip()
    bad = tmp_path / "bad-token"
    bad.write_text("K10" + "0" * 64 + "::" + token.split("::", 1)[1] + "\n")
    agent = node_support.Agent(tmp_path, c.server, services=c.services)
    agent.token_file = bad
    try:
        proc = harness.spawn(agent.argv(), agent.log, stdout=agent.stdout)
        rc = proc.wait(timeout=60)
        assert rc != 0
        log = agent.log.read_text()
        assert "the join token pins" in log and "0" * 64 in log, log[-2000:]
        assert not (agent.data_dir / "pki" / "kubelet-client-current.pem").exists()
    finally:
        agent.stop()


def test_legacy_bearer_token_and_ca_file_still_work(control_plane, tmp_path):
    c = control_plane
    pki = c.server.data_dir / "pki"
    agent = node_support.Agent(tmp_path, c.server, services=c.services)
    agent.token_file = pki / "admin.token"
    agent.extra_args = ["--ca-file", str(pki / "ca.crt")]
    try:
        agent.start()
        _wait(lambda: _node_ready(c, agent.name), 60, f"node {agent.name} Ready")
    finally:
        agent.stop()
        c.kubectl("delete", "node", agent.name, check=False)


def test_servers_on_one_etcd_share_the_pki_and_agents_fail_over(etcd, tmp_path, test_images):
    services = node_support.ServiceRange()
    args = ["--service-cidr", services.cidr, "--no-scheduler"]
    a = harness.Peapod(tmp_path / "a", backend="etcd", etcd=etcd, extra_args=args)
    b = harness.Peapod(tmp_path / "b", backend="etcd", etcd=etcd, extra_args=args)
    b.etcd_prefix = a.etcd_prefix
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    agent = node_support.Agent(tmp_path, a, services=services, servers=[a, b])
    ca = cb = None
    try:
        a.start()
        b.start()  # a fresh data dir: nothing copied
        for f in ("ca.crt", "ca.key", "sa.key", "admin.token"):
            assert (a.data_dir / "pki" / f).read_bytes() == (b.data_dir / "pki" / f).read_bytes(), f
        assert (a.data_dir / "node-token").read_text() == (b.data_dir / "node-token").read_text()
        ca = Cluster(a, tmp_path / "a")
        # The first server's kubeconfig works against the second.
        cfg = (a.data_dir / "kubeconfig.yaml").read_text().replace(
            f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}")
        other = tmp_path / "kubeconfig-b.yaml"
        other.write_text(cfg)
        env = {**os.environ, "KUBECONFIG": str(other)}
        subprocess.run([str(harness.kubectl_bin()), "get", "ns", "kube-system"], env=env,
                       check=True, capture_output=True)

        agent.start()
        _wait(lambda: _node_ready(ca, agent.name), 60, "node Ready")
        a.kill()
        cb = Cluster(b, tmp_path / "b")
        ns = "default"
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "after-failover", "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": test_images.busybox,
                                     "command": ["sleep", "3600"]}],
                     "terminationGracePeriodSeconds": 1},
        }
        cb.kubectl("apply", "-f", "-", input=json.dumps(pod))
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": "after-failover", "namespace": ns},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": agent.name}}
        cb.kubectl("create", "--raw",
                   f"/api/v1/namespaces/{ns}/pods/after-failover/binding", "-f", "-",
                   input=json.dumps(binding))

        def running():
            out = cb.kubectl("get", "pod", "after-failover", "-n", ns, "-o",
                             "jsonpath={.status.phase}", check=False).stdout
            return out == "Running" and out
        _wait(running, 90, "the pod to run on the node after the first server died")
        assert _node_ready(cb, agent.name)
        cb.kubectl("delete", "pod", "after-failover", "-n", ns, "--grace-period=1",
                   "--wait=true", timeout=60)
    finally:
        for cl in (ca, cb):
            if cl is not None:
                cl.close()
        agent.stop()
        a.stop()
        b.stop()


def test_client_certificate_rotates_without_a_restart(tmp_path):
    """A short signing duration (and upstream's 5-minute backdating) puts the agent's
    certificate past its rotation deadline at once: the agent renews it through a CSR of its
    own (authenticated by the current certificate), and after the first certificate has
    expired and every connection was cut (the server restarted), the agent still works: its
    new connections present the new certificate, without an agent restart."""
    services = node_support.ServiceRange()
    server = harness.Peapod(tmp_path / "server", extra_args=[
        "--service-cidr", services.cidr, "--cluster-signing-duration", "40s"])
    (tmp_path / "server").mkdir()
    agent = node_support.Agent(tmp_path, server, services=services)
    c = None
    try:
        server.start()
        c = Cluster(server, tmp_path)
        agent.start()
        pem = agent.data_dir / "pki" / "kubelet-client-current.pem"
        first = pem.read_bytes()
        first_end = _cert_field(pem, "-enddate")

        def renewed_by_the_node():
            out = json.loads(c.kubectl("get", "csr", "-o", "json").stdout)["items"]
            return [x for x in out
                    if x["spec"]["username"] == f"system:node:{agent.name}"
                    and x.get("status", {}).get("certificate")]
        _wait(renewed_by_the_node, 60, "a CSR of the node itself, issued")
        _wait(lambda: pem.read_bytes() != first, 30, "the stored certificate replaced")
        assert agent.proc.poll() is None
        # Wait out the first certificate, then cut every connection.
        time.sleep(45)
        assert _cert_field(pem, "-enddate") != first_end
        server.stop()
        server.start()
        c.close()
        _wait(lambda: _node_ready(c, agent.name), 60, "node Ready after the restart")

        def renew_time():
            return c.kubectl("get", "lease", agent.name, "-n", "kube-node-lease", "-o",
                             "jsonpath={.spec.renewTime}", check=False).stdout
        before = renew_time()
        _wait(lambda: renew_time() != before, 30, "the node lease renewed")
        assert agent.proc.poll() is None
    finally:
        if c is not None:
            c.close()
        agent.stop()
        server.stop()
