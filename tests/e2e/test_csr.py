"""certificates.k8s.io/v1 CertificateSigningRequests (issue 16): the kind as kubectl 1.37
sees it (`get csr`, `describe csr`, `certificate approve|deny`), upstream's validation
(422 with field causes), the requestor the server records, and kube-controller-manager's
signing controller issuing certificates from the cluster CA. Keys and requests are made
with `openssl`, certificates checked with `openssl verify`. API-only, no node needed.
"""

from __future__ import annotations

import base64
import calendar
import json
import re
import subprocess
import time
from pathlib import Path

import kubernetes
import pytest

from helpers import rows_by_name, table, to_yaml, wait_until

CLIENT = "kubernetes.io/kube-apiserver-client"


def openssl(*args: str, input: str | None = None) -> str:
    cp = subprocess.run(["openssl", *args], input=input, capture_output=True, text=True,
                        timeout=60)
    assert cp.returncode == 0, f"openssl {' '.join(args)}: {cp.stderr}"
    return cp.stdout


def make_request(workdir: Path, name: str, subject: str) -> str:
    """A new EC key and a PKCS#10 request for `subject` (`/CN=x/O=y`), PEM."""
    key = workdir / f"{name}.key"
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    return openssl("req", "-new", "-key", str(key), "-subj", subject)


def csr_manifest(name: str, request: str, signer: str = CLIENT,
                 usages: list[str] | None = None, expiration: int | None = None) -> dict:
    spec = {
        "request": base64.b64encode(request.encode()).decode(),
        "signerName": signer,
        "usages": usages if usages is not None else ["digital signature", "client auth"],
    }
    if expiration is not None:
        spec["expirationSeconds"] = expiration
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name}, "spec": spec}


def api(cluster) -> kubernetes.client.CertificatesV1Api:
    return kubernetes.client.CertificatesV1Api(cluster.client)


def get_csr(cluster, name: str) -> dict:
    return json.loads(cluster.kubectl("get", "csr", name, "-o", "json").stdout)


def conditions(csr: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (csr.get("status") or {}).get("conditions") or []}


@pytest.fixture
def workdir(tmp_path) -> Path:
    return tmp_path


def test_discovery_and_explain(cluster):
    out = cluster.kubectl("api-resources", "--api-group", "certificates.k8s.io").stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    assert ["certificatesigningrequests", "csr", "certificates.k8s.io/v1", "false",
            "CertificateSigningRequest"] in rows, out
    out = cluster.kubectl("explain", "csr.spec.signerName").stdout
    assert re.search(r"^KIND:\s+CertificateSigningRequest$", out, re.M), out
    assert re.search(r"^FIELD:\s+signerName <string>", out, re.M), out


def test_create_records_the_requestor_and_prints_as_kubectl_does(cluster, workdir):
    req = make_request(workdir, "alice", "/CN=alice/O=devs")
    body = csr_manifest("alice-req", req, expiration=3600)
    # Whatever the client claims, the server records who asked; no request starts approved.
    body["spec"]["username"] = "mallory"
    body["spec"]["groups"] = ["system:masters"]
    body["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    cluster.kubectl("create", "-f", "-", input=to_yaml(body))
    csr = get_csr(cluster, "alice-req")
    assert csr["spec"]["username"] == "system:admin", csr
    assert csr["spec"]["groups"] == ["system:masters", "system:authenticated"], csr
    assert not conditions(csr), csr

    out = cluster.kubectl("get", "csr").stdout
    header, _ = table(out)
    assert header == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION",
                      "CONDITION"], out
    row = rows_by_name(out)["alice-req"]
    assert row["SIGNERNAME"] == CLIENT, out
    assert row["REQUESTOR"] == "system:admin", out
    assert row["REQUESTEDDURATION"] == "60m", out
    assert row["CONDITION"] == "Pending", out

    got = cluster.kubectl("get", "csr", "--field-selector", f"spec.signerName={CLIENT}",
                          "-o", "name").stdout.split()
    assert "certificatesigningrequest.certificates.k8s.io/alice-req" in got
    none = cluster.kubectl("get", "csr", "--field-selector", "spec.signerName=example.com/x",
                           "-o", "name").stdout.split()
    assert "certificatesigningrequest.certificates.k8s.io/alice-req" not in none

    out = cluster.kubectl("describe", "csr", "alice-req").stdout
    assert re.search(r"^Requesting User:\s+system:admin$", out, re.M), out
    assert re.search(r"^Signer:\s+kubernetes.io/kube-apiserver-client$", out, re.M), out
    assert re.search(r"^Status:\s+Pending$", out, re.M), out
    assert re.search(r"^\s+Common Name:\s+alice$", out, re.M), out
    assert re.search(r"^\s+Organization:\s+devs$", out, re.M), out
    cluster.kubectl("delete", "csr", "alice-req")


def test_deny_and_approve_are_final(cluster, workdir):
    req = make_request(workdir, "bob", "/CN=bob")
    cluster.kubectl("create", "-f", "-", input=to_yaml(csr_manifest("bob-req", req)))
    out = cluster.kubectl("certificate", "deny", "bob-req").stdout
    assert "certificatesigningrequest.certificates.k8s.io/bob-req denied" in out, out
    denied = conditions(get_csr(cluster, "bob-req"))["Denied"]
    assert denied["reason"] == "KubectlDeny" and denied["status"] == "True", denied
    assert denied.get("lastUpdateTime") and denied.get("lastTransitionTime"), denied
    assert rows_by_name(cluster.kubectl("get", "csr", "bob-req").stdout)["bob-req"][
        "CONDITION"] == "Denied"
    # Approving a denied request: kubectl refuses on its own (upstream's wording).
    cp = cluster.kubectl("certificate", "approve", "bob-req", check=False)
    assert cp.returncode != 0, cp.stdout
    assert "is already Denied" in cp.stderr, cp.stderr

    # The API refuses it too: Approved and Denied are exclusive, and Denied stays.
    csr = api(cluster).read_certificate_signing_request_approval("bob-req")
    assert csr.status.conditions[0].type == "Denied", csr
    csr.status.conditions.append(kubernetes.client.V1CertificateSigningRequestCondition(
        type="Approved", status="True", reason="Sneaky"))
    with pytest.raises(kubernetes.client.ApiException) as e:
        api(cluster).replace_certificate_signing_request_approval("bob-req", csr)
    assert e.value.status == 422, e.value.body
    causes = json.loads(e.value.body)["details"]["causes"]
    assert {"reason": "FieldValueInvalid", "field": "status.conditions[1].type",
            "message": 'Invalid value: "Approved": Approved and Denied conditions are '
                       'mutually exclusive'} in causes, causes

    # The main resource and status cannot touch approval conditions.
    csr = api(cluster).read_certificate_signing_request("bob-req")
    csr.status.conditions = []
    with pytest.raises(kubernetes.client.ApiException) as e:
        api(cluster).replace_certificate_signing_request_status("bob-req", csr)
    assert e.value.status == 422, e.value.body
    causes = json.loads(e.value.body)["details"]["causes"]
    assert {"reason": "FieldValueForbidden", "field": "status.conditions",
            "message": 'Forbidden: updates may not remove a condition of type "Denied"'} \
        in causes, causes
    cluster.kubectl("delete", "csr", "bob-req")


def test_invalid_requests_are_422_with_upstream_causes(cluster, workdir):
    req = make_request(workdir, "carol", "/CN=carol")
    cases = [
        (csr_manifest("bad-pem", "not a request"),
         {"reason": "FieldValueInvalid", "field": "spec.request",
          "message": 'Invalid value: "bm90IGEgcmVxdWVzdA==": PEM block type must be '
                     'CERTIFICATE REQUEST'}),
        (csr_manifest("bad-usage", req, usages=["client auth", "flying"]),
         {"reason": "FieldValueNotSupported", "field": "spec.usages[1]"}),
        (csr_manifest("no-usages", req, usages=[]),
         {"reason": "FieldValueRequired", "field": "spec.usages",
          "message": "Required value: usages must be provided"}),
        (csr_manifest("bad-signer", req, signer="example.com"),
         {"reason": "FieldValueInvalid", "field": "spec.signerName",
          "message": "Invalid value: \"example.com\": must be a fully qualified domain and "
                     "path of the form 'example.com/signer-name'"}),
        (csr_manifest("short", req, expiration=599),
         {"reason": "FieldValueInvalid", "field": "spec.expirationSeconds",
          "message": "Invalid value: 599: may not specify a duration less than 600 seconds "
                     "(10 minutes)"}),
    ]
    for body, cause in cases:
        with pytest.raises(kubernetes.client.ApiException) as e:
            api(cluster).create_certificate_signing_request(body)
        assert e.value.status == 422, (body["metadata"]["name"], e.value.body)
        status = json.loads(e.value.body)
        assert status["reason"] == "Invalid", status
        assert status["message"].startswith(
            f'CertificateSigningRequest.certificates.k8s.io "{body["metadata"]["name"]}" '
            "is invalid: "), status
        got = status["details"]["causes"]
        assert any(all(c.get(k) == v for k, v in cause.items()) for c in got), (cause, got)


def test_spec_is_immutable(cluster, workdir):
    req = make_request(workdir, "dave", "/CN=dave")
    cluster.kubectl("create", "-f", "-", input=to_yaml(csr_manifest("dave-req", req)))
    # A patch of the spec is ignored (upstream's PrepareForUpdate keeps the stored spec);
    # labels still change.
    cluster.kubectl("patch", "csr", "dave-req", "--type", "merge", "-p",
                    json.dumps({"metadata": {"labels": {"a": "b"}},
                                "spec": {"signerName": "example.com/other"}}))
    csr = get_csr(cluster, "dave-req")
    assert csr["spec"]["signerName"] == CLIENT, csr
    assert csr["metadata"]["labels"] == {"a": "b"}, csr
    cluster.kubectl("delete", "csr", "dave-req")


def issued_certificate(cluster, name: str, timeout: float = 30.0) -> str:
    """The PEM certificate the signer put in the request's status (polled)."""
    def cert():
        status = get_csr(cluster, name).get("status") or {}
        return status.get("certificate")
    return base64.b64decode(wait_until(cert, timeout=timeout, what=f"{name} issued")).decode()


def cert_text(pem: str) -> str:
    return openssl("x509", "-noout", "-text", "-nameopt", "RFC2253", input=pem)


def cert_dates(pem: str) -> tuple[int, int]:
    """notBefore and notAfter as Unix seconds."""
    out = openssl("x509", "-noout", "-startdate", "-enddate", "-dateopt", "iso_8601", input=pem)
    got = dict(line.split("=", 1) for line in out.splitlines())
    parse = lambda s: calendar.timegm(time.strptime(s.strip(), "%Y-%m-%d %H:%M:%SZ"))  # noqa: E731
    return parse(got["notBefore"]), parse(got["notAfter"])


def verify(cluster, pem: str, workdir: Path) -> None:
    cert = workdir / "issued.crt"
    cert.write_text(pem)
    ca = cluster.server.data_dir / "pki" / "ca.crt"
    out = openssl("verify", "-CAfile", str(ca), "-purpose", "any", str(cert))
    assert out.strip().endswith(": OK"), out


def test_approved_client_request_is_signed_by_the_cluster_ca(cluster, workdir):
    req = make_request(workdir, "erin", "/CN=erin/O=devs/O=ops")
    cluster.kubectl("create", "-f", "-", input=to_yaml(csr_manifest("erin-req", req,
                                                                    expiration=3600)))
    # Nothing is issued before approval.
    assert not (get_csr(cluster, "erin-req").get("status") or {}).get("certificate")
    out = cluster.kubectl("certificate", "approve", "erin-req").stdout
    assert "certificatesigningrequest.certificates.k8s.io/erin-req approved" in out, out
    pem = issued_certificate(cluster, "erin-req")
    verify(cluster, pem, workdir)
    text = cert_text(pem)
    # Both groups, in one multi-valued RDN as Go writes them, and the CN.
    assert re.search(r"Subject: CN=erin,O=devs\+O=ops|Subject: CN=erin,O=ops\+O=devs", text), text
    assert "TLS Web Client Authentication" in text, text
    assert "CA:FALSE" in text, text
    not_before, not_after = cert_dates(pem)
    # Upstream's policy: backdated 5 minutes, ends one hour from signing.
    assert not_after - not_before == 3600 + 300, (not_before, not_after)
    assert abs(not_after - (time.time() + 3600)) < 120, not_after

    row = rows_by_name(cluster.kubectl("get", "csr", "erin-req").stdout)["erin-req"]
    assert row["CONDITION"] == "Approved,Issued", row
    approved = conditions(get_csr(cluster, "erin-req"))["Approved"]
    assert approved["reason"] == "KubectlApprove", approved
    assert approved["message"] == "This CSR was approved by kubectl certificate approve.", approved

    # The certificate cannot be replaced once issued.
    csr = api(cluster).read_certificate_signing_request("erin-req")
    csr.status.certificate = base64.b64encode(pem.encode() + pem.encode()).decode()
    with pytest.raises(kubernetes.client.ApiException) as e:
        api(cluster).replace_certificate_signing_request_status("erin-req", csr)
    assert e.value.status == 422, e.value.body
    assert "updates may not modify existing certificate content" in e.value.body
    cluster.kubectl("delete", "csr", "erin-req")


def test_default_lifetime_is_the_signing_duration(cluster, workdir):
    req = make_request(workdir, "frank", "/CN=frank")
    cluster.kubectl("create", "-f", "-", input=to_yaml(csr_manifest("frank-req", req)))
    cluster.kubectl("certificate", "approve", "frank-req")
    pem = issued_certificate(cluster, "frank-req")
    verify(cluster, pem, workdir)
    not_before, not_after = cert_dates(pem)
    # --cluster-signing-duration's default, 8760h, backdated at both ends.
    assert not_after - not_before == 8760 * 3600, (not_before, not_after)
    assert rows_by_name(cluster.kubectl("get", "csr", "frank-req").stdout)["frank-req"][
        "REQUESTEDDURATION"] == "<none>"
    cluster.kubectl("delete", "csr", "frank-req")


def test_signer_refuses_what_its_signer_may_not_issue(cluster, workdir):
    req = make_request(workdir, "gina", "/CN=gina")
    body = csr_manifest("gina-req", req, usages=["client auth", "server auth"])
    cluster.kubectl("create", "-f", "-", input=to_yaml(body))
    cluster.kubectl("certificate", "approve", "gina-req")
    failed = wait_until(lambda: conditions(get_csr(cluster, "gina-req")).get("Failed"),
                        what="gina-req failed")
    assert failed["reason"] == "SignerValidationFailure", failed
    assert failed["message"] == "invalid usage for client certificate: server auth", failed
    assert not get_csr(cluster, "gina-req")["status"].get("certificate")
    row = rows_by_name(cluster.kubectl("get", "csr", "gina-req").stdout)["gina-req"]
    assert row["CONDITION"] == "Approved,Failed", row

    # A kubelet-serving request must come from a node's key with node names.
    req = make_request(workdir, "serving", "/CN=alice/O=devs")
    cluster.kubectl("create", "-f", "-", input=to_yaml(csr_manifest(
        "serving-req", req, signer="kubernetes.io/kubelet-serving",
        usages=["digital signature", "server auth"])))
    cluster.kubectl("certificate", "approve", "serving-req")
    failed = wait_until(lambda: conditions(get_csr(cluster, "serving-req")).get("Failed"),
                        what="serving-req failed")
    assert failed["message"] == "subject organization is not system:nodes", failed
    cluster.kubectl("delete", "csr", "gina-req", "serving-req")


def test_node_client_request_is_auto_approved_and_issued(cluster, workdir):
    """A kubelet client request: upstream's approver asks a SubjectAccessReview, which any
    system:masters user passes (peapod: the groups of ARCHITECTURE.md §10) — so the admin's
    request is approved without `kubectl certificate approve`, then signed."""
    kubelet = "kubernetes.io/kube-apiserver-client-kubelet"
    # Not a node's request (wrong organization): left pending for a human. Created first,
    # so by the time the node's request below is approved the approver has seen it too.
    req = make_request(workdir, "notnode", "/O=devs/CN=system:node:worker-2")
    cluster.kubectl("create", "-f", "-", input=to_yaml(csr_manifest(
        "notnode-req", req, signer=kubelet, usages=["digital signature", "client auth"])))
    req = make_request(workdir, "node", "/O=system:nodes/CN=system:node:worker-1")
    cluster.kubectl("create", "-f", "-", input=to_yaml(csr_manifest(
        "node-req", req, signer=kubelet, usages=["digital signature", "client auth"],
        expiration=86400)))
    pem = issued_certificate(cluster, "node-req")
    verify(cluster, pem, workdir)
    assert "Subject: CN=system:node:worker-1,O=system:nodes" in cert_text(pem)
    approved = conditions(get_csr(cluster, "node-req"))["Approved"]
    assert approved["reason"] == "AutoApproved", approved
    assert approved["message"] == \
        "Auto approving kubelet client certificate after SubjectAccessReview.", approved
    not_before, not_after = cert_dates(pem)
    assert not_after - not_before == 86400, (not_before, not_after)
    assert not conditions(get_csr(cluster, "notnode-req")), get_csr(cluster, "notnode-req")
    cluster.kubectl("delete", "csr", "node-req", "notnode-req")
