"""Services in the API server (issue 15): the Service, Endpoints, EndpointSlice, ServiceCIDR
and IPAddress kinds, ClusterIP and node-port allocation with upstream's errors, the system
Services (`default/kubernetes` with its endpoints, `kube-system/kube-dns`), release on delete
and allocation across a restart. Driven by the real kubectl 1.37 and the Python client; no
pods run (exposed pods stay Pending on a server without nodes).
"""

from __future__ import annotations

import json

import kubernetes
import pytest

import harness
from helpers import names, rows_by_name, table, to_yaml, wait_until


def svc(name: str, **spec) -> dict:
    spec.setdefault("ports", [{"port": 80}])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def get_json(cluster, *args) -> dict:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def failure(cluster, *args, input: str | None = None) -> str:
    cp = cluster.kubectl(*args, input=input, check=False)
    assert cp.returncode != 0, cp.stdout
    return cp.stderr


def test_create_service_kinds_and_columns(cluster, ns):
    k = lambda *a, **kw: cluster.kubectl("-n", ns, *a, **kw)  # noqa: E731
    k("create", "service", "clusterip", "web", "--tcp=80:8080")
    k("create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30080")
    k("create", "service", "clusterip", "hl", "--clusterip=None")
    k("create", "service", "externalname", "en", "--external-name=example.com")
    out = k("get", "svc").stdout
    assert table(out)[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], out
    rows = rows_by_name(out)
    assert rows["web"]["TYPE"] == "ClusterIP" and rows["web"]["PORT(S)"] == "80/TCP", out
    assert rows["web"]["CLUSTER-IP"].startswith("10.43."), out
    assert rows["web"]["EXTERNAL-IP"] == "<none>", out
    assert rows["np"]["TYPE"] == "NodePort" and rows["np"]["PORT(S)"] == "80:30080/TCP", out
    assert rows["hl"]["CLUSTER-IP"] == "None" and rows["hl"]["PORT(S)"] == "<none>", out
    assert rows["en"]["TYPE"] == "ExternalName", out
    assert rows["en"]["CLUSTER-IP"] == "<none>" and rows["en"]["EXTERNAL-IP"] == "example.com", out
    wide = k("get", "svc", "-o", "wide").stdout
    assert table(wide)[0][-1] == "SELECTOR", wide
    assert rows_by_name(wide)["web"]["SELECTOR"] == "app=web", wide

    web = get_json(cluster, "-n", ns, "get", "svc", "web")
    spec = web["spec"]
    # Upstream's defaults and what the allocator fills in.
    assert spec["clusterIPs"] == [spec["clusterIP"]], spec
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack", spec
    assert spec["sessionAffinity"] == "None" and spec["internalTrafficPolicy"] == "Cluster", spec
    assert spec["ports"][0]["protocol"] == "TCP" and spec["ports"][0]["targetPort"] == 8080, spec
    assert web["status"] == {"loadBalancer": {}}, web
    assert get_json(cluster, "-n", ns, "get", "svc", "np")["spec"]["externalTrafficPolicy"] == "Cluster"
    hl = get_json(cluster, "-n", ns, "get", "svc", "hl")["spec"]
    assert hl["clusterIPs"] == ["None"], hl

    # Each allocated ClusterIP is an IPAddress pointing at its Service.
    out = cluster.kubectl("get", "ipaddresses").stdout
    assert table(out)[0] == ["NAME", "PARENTREF", "AGE"], out
    assert rows_by_name(out)[spec["clusterIP"]]["PARENTREF"] == f"services/{ns}/web", out
    ip = get_json(cluster, "get", "ipaddress", spec["clusterIP"])
    assert ip["metadata"]["labels"] == {"ipaddress.kubernetes.io/ip-family": "IPv4",
                                        "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"}, ip

    # Upstream's field selectors.
    sel = lambda s: names(k("get", "svc", "-o", "name", "--field-selector", s).stdout)  # noqa: E731
    assert sel("spec.type=NodePort") == {"np"}
    assert sel(f"spec.clusterIP={spec['clusterIP']}") == {"web"}
    cp = cluster.kubectl("-n", ns, "get", "svc", "--field-selector", "spec.ports=x", check=False)
    assert cp.returncode != 0 and "field label not supported: spec.ports" in cp.stderr, cp.stderr


def test_api_resources_and_short_names(cluster):
    out = cluster.kubectl("api-resources").stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    for row in (["services", "svc", "v1", "true", "Service"],
                ["endpoints", "ep", "v1", "true", "Endpoints"],
                ["endpointslices", "discovery.k8s.io/v1", "true", "EndpointSlice"],
                ["servicecidrs", "networking.k8s.io/v1", "false", "ServiceCIDR"],
                ["ipaddresses", "ip", "networking.k8s.io/v1", "false", "IPAddress"]):
        assert row in rows, (row, out)
    out = cluster.kubectl("explain", "service.spec.clusterIP").stdout
    assert "FIELD: clusterIP <string>" in out, out


def test_expose_deployment_and_pod(cluster, ns):
    k = lambda *a, **kw: cluster.kubectl("-n", ns, *a, **kw)  # noqa: E731
    k("create", "deployment", "dep", "--image=nginx", "--port=80")
    k("expose", "deployment", "dep", "--port=8080", "--target-port=80")
    k("run", "p1", "--image=nginx", "--port=80", "--labels=app=p1")
    k("expose", "pod", "p1", "--port=80", "--type=NodePort")
    rows = rows_by_name(k("get", "svc", "-o", "wide").stdout)
    assert rows["dep"]["PORT(S)"] == "8080/TCP" and rows["dep"]["SELECTOR"] == "app=dep", rows
    assert rows["p1"]["TYPE"] == "NodePort" and rows["p1"]["SELECTOR"] == "app=p1", rows
    port = rows["p1"]["PORT(S)"]
    node_port = int(port.split(":")[1].split("/")[0])
    assert 30000 <= node_port <= 32767, port
    # `delete all --all` includes services.
    out = k("delete", "all", "--all").stdout
    assert 'service "dep" deleted' in out and 'service "p1" deleted' in out, out
    assert k("get", "svc", "-o", "name").stdout.strip() == ""


def test_kubernetes_and_kube_dns_services(cluster):
    kube = get_json(cluster, "-n", "default", "get", "svc", "kubernetes")
    assert kube["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}, kube
    spec = kube["spec"]
    assert spec["clusterIP"] == "10.43.0.1" and spec["type"] == "ClusterIP", spec
    assert "selector" not in spec, spec
    assert spec["ports"] == [{"name": "https", "port": 443, "protocol": "TCP",
                              "targetPort": cluster.server.port}], spec
    dns = get_json(cluster, "-n", "kube-system", "get", "svc", "kube-dns")
    assert dns["metadata"]["labels"]["k8s-app"] == "kube-dns", dns
    spec = dns["spec"]
    assert spec["clusterIP"] == "10.43.0.10" and "selector" not in spec, spec
    assert spec["internalTrafficPolicy"] == "Local", spec
    assert [(p["name"], p["port"], p["protocol"]) for p in spec["ports"]] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")], spec
    rows = rows_by_name(cluster.kubectl("-n", "kube-system", "get", "svc").stdout)
    assert rows["kube-dns"]["PORT(S)"] == "53/UDP,53/TCP", rows

    # Its Endpoints and EndpointSlice exist, labelled as upstream's reconciler writes them
    # (a server listening on loopback only advertises no address).
    ep = get_json(cluster, "-n", "default", "get", "endpoints", "kubernetes")
    assert ep["metadata"]["labels"] == {"endpointslice.kubernetes.io/skip-mirror": "true"}, ep
    es = get_json(cluster, "-n", "default", "get", "endpointslice", "kubernetes")
    assert es["metadata"]["labels"] == {"kubernetes.io/service-name": "kubernetes"}, es
    assert es["addressType"] == "IPv4", es

    cidr = get_json(cluster, "get", "servicecidr", "kubernetes")
    assert cidr["spec"]["cidrs"] == ["10.43.0.0/16"], cidr
    assert [(c["type"], c["status"]) for c in cidr["status"]["conditions"]] == [("Ready", "True")], cidr
    assert rows_by_name(cluster.kubectl("get", "servicecidrs").stdout)["kubernetes"]["CIDRS"] == "10.43.0.0/16"

    # Deleted, it comes back with its address, as kube-apiserver recreates it.
    cluster.kubectl("-n", "default", "delete", "svc", "kubernetes")
    back = wait_until(lambda: cluster.kubectl("-n", "default", "get", "svc", "kubernetes",
                                              "-o", "jsonpath={.spec.clusterIP}", check=False).stdout,
                      timeout=15, what="kubernetes service recreated")
    assert back == "10.43.0.1"


def test_allocation_errors(cluster, ns):
    core = kubernetes.client.CoreV1Api(cluster.client)
    with pytest.raises(kubernetes.client.ApiException) as e:
        core.create_namespaced_service(ns, svc("out", clusterIP="10.1.1.1"))
    assert e.value.status == 422
    body = json.loads(e.value.body)
    assert body["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "spec.clusterIPs",
        "message": 'Invalid value: ["10.1.1.1"]: failed to allocate IP 10.1.1.1: '
                   "the provided network does not match the current range"}], body
    # The network and broadcast addresses are in the range but not allocatable.
    err = failure(cluster, "-n", ns, "create", "-f", "-", input=to_yaml(svc("net", clusterIP="10.43.255.255")))
    assert ("spec.clusterIPs: Invalid value: [\"10.43.255.255\"]: failed to allocate IP 10.43.255.255: "
            "the provided IP (10.43.255.255) is not in the valid range. The range of valid IPs is 10.43.0.0/16") in err, err

    cluster.kubectl("-n", ns, "create", "-f", "-", input=to_yaml(svc("first", clusterIP="10.43.0.5")))
    err = failure(cluster, "-n", ns, "create", "-f", "-", input=to_yaml(svc("second", clusterIP="10.43.0.5")))
    assert ('The Service "second" is invalid: spec.clusterIPs: Invalid value: ["10.43.0.5"]: '
            "failed to allocate IP 10.43.0.5: provided IP is already allocated") in err, err

    cluster.kubectl("-n", ns, "create", "service", "nodeport", "np1", "--tcp=80", "--node-port=30081")
    err = failure(cluster, "-n", ns, "create", "service", "nodeport", "np2", "--tcp=80", "--node-port=30081")
    assert "spec.ports[0].nodePort: Invalid value: 30081: provided port is already allocated" in err, err
    err = failure(cluster, "-n", ns, "create", "service", "nodeport", "np3", "--tcp=80", "--node-port=8080")
    assert ("spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. "
            "The range of valid ports is 30000-32767") in err, err

    err = failure(cluster, "-n", ns, "create", "-f", "-",
                  input=to_yaml(svc("badname", type="ExternalName", externalName="Not_A_Name", ports=[])))
    assert 'spec.externalName: Invalid value: "Not_A_Name": a lowercase RFC 1123 subdomain' in err, err
    err = failure(cluster, "-n", ns, "create", "-f", "-",
                  input=to_yaml(svc("enip", type="ExternalName", externalName="example.com",
                                    clusterIP="10.43.0.77")))
    assert "spec.clusterIPs: Forbidden: may not be set for ExternalName services" in err, err
    err = failure(cluster, "-n", ns, "create", "-f", "-", input=to_yaml(svc("noports", ports=[])))
    assert "spec.ports: Required value" in err, err
    err = failure(cluster, "-n", ns, "create", "-f", "-",
                  input=to_yaml(svc("twoports", ports=[{"port": 80}, {"port": 81}])))
    assert "spec.ports[0].name: Required value" in err, err
    # A refused create leaves nothing allocated behind.
    assert "10.43.0.77" not in cluster.kubectl("get", "ipaddresses", "-o", "name").stdout


def test_type_changes(cluster, ns):
    k = lambda *a, **kw: cluster.kubectl("-n", ns, *a, **kw)  # noqa: E731
    k("create", "service", "nodeport", "t", "--tcp=80", "--node-port=30082")
    ip = k("get", "svc", "t", "-o", "jsonpath={.spec.clusterIP}").stdout
    # The ClusterIP may not change.
    cp = k("patch", "svc", "t", "-p", '{"spec":{"clusterIP":"10.43.0.99"}}', check=False)
    assert cp.returncode != 0 and "may not change once set" in cp.stderr, cp.stderr
    # NodePort to ClusterIP: the node port is dropped and released, the address kept.
    k("patch", "svc", "t", "-p", '{"spec":{"type":"ClusterIP"}}')
    t = get_json(cluster, "-n", ns, "get", "svc", "t")["spec"]
    assert "nodePort" not in t["ports"][0] and t["clusterIP"] == ip, t
    assert "externalTrafficPolicy" not in t, t
    k("create", "service", "nodeport", "reuse", "--tcp=80", "--node-port=30082")
    # To ExternalName: the address goes back.
    k("patch", "svc", "t", "-p", '{"spec":{"type":"ExternalName","externalName":"db.example.com"}}')
    t = get_json(cluster, "-n", ns, "get", "svc", "t")["spec"]
    assert "clusterIP" not in t and "ipFamilies" not in t, t
    wait_until(lambda: ip not in cluster.kubectl("get", "ipaddresses", "-o", "name").stdout,
               what="the ClusterIP released")
    # And back: a new address is allocated.
    k("patch", "svc", "t", "--type=merge", "-p", '{"spec":{"type":"ClusterIP","externalName":null}}')
    t = get_json(cluster, "-n", ns, "get", "svc", "t")["spec"]
    assert t["clusterIP"].startswith("10.43.") and t["ipFamilyPolicy"] == "SingleStack", t


def test_release_on_delete(cluster, ns):
    k = lambda *a, **kw: cluster.kubectl("-n", ns, *a, **kw)  # noqa: E731
    k("create", "-f", "-", input=to_yaml(svc("rel", clusterIP="10.43.0.50", type="NodePort",
                                              ports=[{"port": 80, "nodePort": 30083}])))
    core = kubernetes.client.CoreV1Api(cluster.client)
    resp = core.delete_namespaced_service("rel", ns, _preload_content=False)
    deleted = json.loads(resp.data)
    # Upstream's service storage answers DELETE with the object.
    assert deleted["kind"] == "Service" and deleted["spec"]["clusterIP"] == "10.43.0.50", deleted
    k("create", "-f", "-", input=to_yaml(svc("rel2", clusterIP="10.43.0.50", type="NodePort",
                                              ports=[{"port": 80, "nodePort": 30083}])))
    assert "10.43.0.50" in k("get", "svc", "rel2").stdout


def test_python_client(cluster, ns):
    core = kubernetes.client.CoreV1Api(cluster.client)
    created = core.create_namespaced_service(ns, svc("py", selector={"app": "py"}))
    assert created.spec.cluster_ip.startswith("10.43.")
    assert created.spec.ports[0].target_port == 80
    patched = core.patch_namespaced_service("py", ns, {"metadata": {"labels": {"x": "y"}},
                                                       "spec": {"type": "NodePort"}})
    assert patched.metadata.labels == {"x": "y"}
    assert patched.spec.cluster_ip == created.spec.cluster_ip
    assert 30000 <= patched.spec.ports[0].node_port <= 32767
    listed = core.list_namespaced_service(ns, field_selector="spec.type=NodePort")
    assert [s.metadata.name for s in listed.items] == ["py"]
    core.delete_namespaced_service("py", ns)
    assert [s.metadata.name for s in core.list_namespaced_service(ns).items] == []


def test_endpoints_and_slices_written_by_hand(cluster, ns):
    ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ext"},
          "subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 5)],
                       "ports": [{"port": 80}]}]}
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": "ext-1", "labels": {"kubernetes.io/service-name": "ext"}},
              "addressType": "IPv4", "ports": [{"name": "http", "port": 80}],
              "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]}
    cluster.kubectl("-n", ns, "create", "-f", "-", input=to_yaml(ep, slice_))
    out = cluster.kubectl("-n", ns, "get", "ep").stdout
    assert table(out)[0] == ["NAME", "ENDPOINTS", "AGE"], out
    assert rows_by_name(out)["ext"]["ENDPOINTS"] == "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more...", out
    out = cluster.kubectl("-n", ns, "get", "endpointslices").stdout
    assert table(out)[0] == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], out
    row = rows_by_name(out)["ext-1"]
    assert (row["ADDRESSTYPE"], row["PORTS"], row["ENDPOINTS"]) == ("IPv4", "80", "10.0.0.1,10.0.0.2"), out
    got = get_json(cluster, "-n", ns, "get", "endpointslice", "ext-1")
    assert got["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}], got
    bad = dict(ep, metadata={"name": "bad"}, subsets=[{"addresses": [{"ip": "127.0.0.1"}]}])
    err = failure(cluster, "-n", ns, "create", "-f", "-", input=to_yaml(bad))
    assert ('subsets[0].addresses[0].ip: Invalid value: "127.0.0.1": '
            "may not be in the loopback range (127.0.0.0/8, ::1/128)") in err, err
    bad_slice = dict(slice_, metadata={"name": "bad"}, endpoints=[{"addresses": ["fd00::1"]}])
    err = failure(cluster, "-n", ns, "create", "-f", "-", input=to_yaml(bad_slice))
    assert 'endpoints[0].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address' in err, err
    # Deleting a Service deletes its Endpoints, as upstream's service storage does.
    cluster.kubectl("-n", ns, "create", "service", "clusterip", "ext", "--tcp=80")
    cluster.kubectl("-n", ns, "delete", "svc", "ext")
    assert "ext" not in names(cluster.kubectl("-n", ns, "get", "ep", "-o", "name").stdout)


def test_advertised_api_servers_are_the_kubernetes_endpoints(tmp_path):
    """A server with --advertise-address lists it (on its port) in the `kubernetes`
    Endpoints and EndpointSlice; the serving certificate names the kubernetes ClusterIP."""
    server = harness.Peapod(tmp_path, extra_args=["--advertise-address", "10.255.254.1",
                                                  "--service-cidr", "10.96.0.0/12",
                                                  "--service-node-port-range", "31000-31010"])
    try:
        server.start()
        from conftest import Cluster
        c = Cluster(server, tmp_path)
        ep = get_json(c, "-n", "default", "get", "endpoints", "kubernetes")
        assert ep["subsets"] == [{"addresses": [{"ip": "10.255.254.1"}],
                                  "ports": [{"name": "https", "port": server.port, "protocol": "TCP"}]}], ep
        es = get_json(c, "-n", "default", "get", "endpointslice", "kubernetes")
        assert [e["addresses"] for e in es["endpoints"]] == [["10.255.254.1"]], es
        assert es["endpoints"][0]["conditions"] == {"ready": True}, es
        assert get_json(c, "-n", "default", "get", "svc", "kubernetes")["spec"]["clusterIP"] == "10.96.0.1"
        assert get_json(c, "-n", "kube-system", "get", "svc", "kube-dns")["spec"]["clusterIP"] == "10.96.0.10"
        err = failure(c, "create", "service", "nodeport", "x", "--tcp=80", "--node-port=30080")
        assert "The range of valid ports is 31000-31010" in err, err
        import ssl
        import subprocess
        pem = ssl.get_server_certificate(("127.0.0.1", server.port))
        text = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=pem,
                              capture_output=True, text=True).stdout
        for want in ("IP Address:10.96.0.1", "DNS:kubernetes.default.svc.cluster.local"):
            assert want in text, text
        c.close()
    finally:
        server.stop()


def test_python_client_service_apis_case(cluster):
    """The official Python client's `test_client.py::test_service_apis`: create, read, a
    strategic merge adding a second port by number, delete. (Its manifest's stray
    `resourceversion` key is left out: this client version refuses it before sending.)"""
    core = kubernetes.client.CoreV1Api(cluster.client)
    name = "frontend-" + __import__("secrets").token_hex(4)
    manifest = {"apiVersion": "v1", "kind": "Service",
                "metadata": {"labels": {"name": name}, "name": name},
                "spec": {"ports": [{"name": "port", "port": 80, "protocol": "TCP", "targetPort": 80}],
                         "selector": {"name": name}}}
    resp = core.create_namespaced_service(body=manifest, namespace="default")
    assert resp.metadata.name == name and resp.status
    resp = core.read_namespaced_service(name=name, namespace="default")
    assert resp.metadata.name == name and resp.status
    manifest["spec"]["ports"] = [{"name": "new", "port": 8080, "protocol": "TCP", "targetPort": 8080}]
    resp = core.patch_namespaced_service(body=manifest, name=name, namespace="default")
    assert len(resp.spec.ports) == 2 and resp.status
    core.delete_namespaced_service(name=name, namespace="default")


class _ListeningAt(harness.Peapod):
    """A server listening on another loopback address (several servers, one port)."""

    def __init__(self, *args, host: str, port: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.host = host
        if port is not None:
            self.port = port

    def argv(self) -> list[str]:
        return [a.replace(f"127.0.0.1:{self.port}", f"{self.host}:{self.port}") for a in super().argv()]


def test_servers_sharing_etcd_converge_on_the_kubernetes_endpoints(etcd, tmp_path):
    """Two API servers on one etcd: the `kubernetes` Endpoints list both advertise
    addresses; a server that stops takes itself out; they never hand out one ClusterIP or
    node port twice."""
    from conftest import Cluster
    a = _ListeningAt(tmp_path / "a", backend="etcd", etcd=etcd, host="127.0.0.1",
                     extra_args=["--advertise-address", "10.255.253.1"])
    b = _ListeningAt(tmp_path / "b", backend="etcd", etcd=etcd, host="127.0.0.2", port=a.port,
                     extra_args=["--advertise-address", "10.255.253.2"])
    b.etcd_prefix = a.etcd_prefix
    ca = cb = None
    try:
        a.start()
        b.start()
        ca, cb = Cluster(a, tmp_path / "a"), Cluster(b, tmp_path / "b")

        def endpoint_ips(c):
            ep = get_json(c, "-n", "default", "get", "endpoints", "kubernetes")
            return sorted(x["ip"] for s in ep.get("subsets", []) for x in s["addresses"])

        wait_until(lambda: endpoint_ips(ca) == ["10.255.253.1", "10.255.253.2"], timeout=30,
                   what="both servers in the kubernetes endpoints")
        es = get_json(cb, "-n", "default", "get", "endpointslice", "kubernetes")
        assert sorted(e["addresses"][0] for e in es["endpoints"]) == ["10.255.253.1", "10.255.253.2"], es
        # Creates through both servers at once never collide.
        ns = "converge"
        ca.kubectl("create", "namespace", ns)
        procs = []
        for i in range(6):
            c = ca if i % 2 else cb
            procs.append(c.kubectl_watch("-n", ns, "create", "service", "nodeport", f"s{i}", "--tcp=80"))
        for p in procs:
            p.proc.wait(timeout=60)
            p.stop()
        specs = [get_json(ca, "-n", ns, "get", "svc", f"s{i}")["spec"] for i in range(6)]
        assert len({s["clusterIP"] for s in specs}) == 6, specs
        assert len({s["ports"][0]["nodePort"] for s in specs}) == 6, specs
        b.stop()
        wait_until(lambda: endpoint_ips(ca) == ["10.255.253.1"], timeout=15,
                   what="the stopped server out of the endpoints")
    finally:
        for c in (ca, cb):
            if c is not None:
                c.close()
        b.stop()
        a.stop()


def test_zz_allocations_survive_a_restart(cluster, ns):
    """Last in the module: restarts the module's server."""
    k = lambda *a, **kw: cluster.kubectl("-n", ns, *a, **kw)  # noqa: E731
    k("create", "service", "nodeport", "keep", "--tcp=80")
    before = get_json(cluster, "-n", ns, "get", "svc", "keep")["spec"]
    cluster.server.stop()
    cluster.server.start()
    cluster.close()
    after = get_json(cluster, "-n", ns, "get", "svc", "keep")["spec"]
    assert after["clusterIP"] == before["clusterIP"], after
    err = failure(cluster, "-n", ns, "create", "-f", "-", input=to_yaml(svc("other", clusterIP=before["clusterIP"])))
    assert "provided IP is already allocated" in err, err
    port = before["ports"][0]["nodePort"]
    err = failure(cluster, "-n", ns, "create", "service", "nodeport", "other", "--tcp=80", f"--node-port={port}")
    assert "provided port is already allocated" in err, err
    # New allocations after the restart never collide with the old ones.
    for i in range(5):
        k("create", "service", "nodeport", f"n{i}", "--tcp=80")
    specs = [get_json(cluster, "-n", ns, "get", "svc", f"n{i}")["spec"] for i in range(5)] + [before]
    assert len({s["clusterIP"] for s in specs}) == 6
    assert len({s["ports"][0]["nodePort"] for s in specs}) == 6
