"""Services end to end (issue 15), the way seed 003's users reach pods: real pods behind a
Deployment, the EndpointSlice controller, the node's nftables proxy and the node's DNS,
driven from a client pod with busybox `wget` and `nslookup` and from the host.

A Service's ClusterIP, its short name, `name.ns` and its FQDN all answer; both backends get
traffic; an unready backend gets none until it is ready; a deleted backend leaves the slice;
an empty Service refuses at once; a named `targetPort` and a port mapping; NodePort from the
host on the node's address; headless Services resolve to pod IPs and StatefulSet pod names;
ExternalName is a CNAME; SRV and PTR; the API through `https://kubernetes.default.svc` from a
pod with its own token; `kubectl describe svc` and `port-forward svc/...`."""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest

import node as node_support
from helpers import to_yaml, wait_until

TIMEOUT = 90
# Deleted before the pods at the end of each test (conftest.py `pod_ns`).
OWNERS = ("deploy,sts,svc", "background")
# Serves its own pod name on 8080 (a named container port), so a client sees who answered.
SERVE = ("mkdir -p /www && echo $HOSTNAME > /www/index.html && "
         "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait")


def get_json(n, *args: str) -> dict:
    return json.loads(n.kubectl("get", *args, "-o", "json").stdout)


def web_deployment(n, name: str, replicas: int, probe: bool = False) -> dict:
    container = {"name": "web", "image": n.images.busybox, "command": ["sh", "-c", SERVE],
                 "ports": [{"name": "http", "containerPort": 8080}]}
    if probe:
        container["readinessProbe"] = {"exec": {"command": ["cat", "/tmp/ready"]},
                                       "periodSeconds": 1}
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [container],
                                           "terminationGracePeriodSeconds": 2}}}}


def service(name: str, selector: dict | None, ports: list[dict], **spec) -> dict:
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": ports, **spec}}
    if selector is not None:
        body["spec"]["selector"] = selector
    return body


def apply(n, ns: str, *objects: dict) -> None:
    n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(*objects))


def client_pod(n, ns: str, name: str = "client", image: str | None = None) -> str:
    apply(n, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                  "spec": {"containers": [{"name": "c", "image": image or n.images.busybox,
                                           "command": ["sh", "-c",
                                                       "trap 'exit 0' TERM; sleep 3600 & wait"]}],
                           "terminationGracePeriodSeconds": 1}})
    n.kubectl("wait", "-n", ns, f"pod/{name}", "--for=condition=Ready", f"--timeout={TIMEOUT}s",
              timeout=TIMEOUT + 10)
    return name


def in_pod(n, ns: str, pod: str, script: str, check: bool = False, timeout: float = 30):
    return n.kubectl("exec", "-n", ns, pod, "--", "sh", "-c", script, check=check,
                     timeout=timeout)


def fetch(n, ns: str, pod: str, url: str) -> str | None:
    """One bounded GET from the pod; the body, or None when it failed."""
    out = in_pod(n, ns, pod, f"timeout 5 wget -qO- {url}")
    return out.stdout.strip() if out.returncode == 0 else None


def ready_addresses(n, ns: str, svc: str) -> list[str]:
    slices = get_json(n, "endpointslices", "-n", ns, "-l",
                      f"kubernetes.io/service-name={svc}")["items"]
    return sorted(a for s in slices for e in s.get("endpoints") or []
                  if (e.get("conditions") or {}).get("ready") for a in e["addresses"])


def pod_ips(n, ns: str, selector: str) -> list[str]:
    items = get_json(n, "pods", "-n", ns, "-l", selector)["items"]
    return sorted(p["status"]["podIP"] for p in items
                  if p.get("status", {}).get("podIP") and not p["metadata"].get("deletionTimestamp"))


def rollout(n, ns: str, name: str, replicas: int) -> None:
    n.kubectl("rollout", "status", "-n", ns, f"deploy/{name}", f"--timeout={TIMEOUT}s",
              timeout=TIMEOUT + 10)
    wait_until(lambda: len(ready_addresses(n, ns, name)) == replicas, timeout=30,
               what=f"{replicas} ready endpoints for {name}")


def test_cluster_ip_and_names_reach_both_backends(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    apply(n, ns, web_deployment(n, "web", 2),
          service("web", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": "http"}]))
    client = client_pod(n, ns)
    rollout(n, ns, "web", 2)
    svc = get_json(n, "svc", "web", "-n", ns)
    cluster_ip = svc["spec"]["clusterIP"]
    backends = {p["metadata"]["name"]
                for p in get_json(n, "pods", "-n", ns, "-l", "app=web")["items"]}
    # The ClusterIP, the short name (search path), name.ns and the FQDN all answer.
    for target in (cluster_ip, "web", f"web.{ns}", f"web.{ns}.svc", f"web.{ns}.svc.cluster.local"):
        assert fetch(n, ns, client, f"http://{target}/") in backends, target
    # Random balancing reaches both backends.
    seen: set[str] = set()
    for _ in range(40):
        seen.add(fetch(n, ns, client, f"http://{cluster_ip}/") or "")
        if seen >= backends:
            break
    assert seen >= backends, f"only {seen} of {backends} answered"
    # describe shows the endpoints (pod IP and the resolved target port).
    described = n.kubectl("describe", "svc", "web", "-n", ns).stdout
    line = next(l for l in described.splitlines() if l.startswith("Endpoints:"))
    for ip in pod_ips(n, ns, "app=web"):
        assert f"{ip}:8080" in line, described


def test_unready_backend_gets_no_traffic_until_ready(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    apply(n, ns, web_deployment(n, "gate", 1, probe=True),
          service("gate", {"app": "gate"}, [{"port": 80, "targetPort": 8080}]))
    client = client_pod(n, ns)
    wait_until(lambda: pod_ips(n, ns, "app=gate"), timeout=TIMEOUT, what="a gate pod with an IP")
    pod = get_json(n, "pods", "-n", ns, "-l", "app=gate")["items"][0]["metadata"]["name"]
    wait_until(lambda: get_json(n, "endpointslices", "-n", ns, "-l",
                                "kubernetes.io/service-name=gate")["items"][0].get("endpoints"),
               timeout=30, what="the unready endpoint in the slice")
    assert ready_addresses(n, ns, "gate") == []
    assert fetch(n, ns, client, "http://gate/") is None
    in_pod(n, ns, pod, "touch /tmp/ready", check=True)
    wait_until(lambda: fetch(n, ns, client, "http://gate/") == pod, timeout=30,
               what="traffic once the backend is ready")


def test_deleted_backend_leaves_the_slice(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    apply(n, ns, web_deployment(n, "gone", 2),
          service("gone", {"app": "gone"}, [{"port": 80, "targetPort": 8080}]))
    rollout(n, ns, "gone", 2)
    victim = get_json(n, "pods", "-n", ns, "-l", "app=gone")["items"][0]
    ip = victim["status"]["podIP"]
    n.kubectl("delete", "pod", "-n", ns, victim["metadata"]["name"], "--wait=false")
    wait_until(lambda: ip not in ready_addresses(n, ns, "gone"), timeout=30,
               what="the deleted pod's address to stop being ready")
    wait_until(lambda: all(ip not in e["addresses"]
                           for s in get_json(n, "endpointslices", "-n", ns)["items"]
                           for e in s.get("endpoints") or []),
               timeout=60, what="the deleted pod to leave the slice")


def test_empty_service_refuses_at_once(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    apply(n, ns, service("empty", {"app": "nobody"}, [{"port": 80, "targetPort": 8080}]))
    client = client_pod(n, ns)
    ip = get_json(n, "svc", "empty", "-n", ns)["spec"]["clusterIP"]
    out = in_pod(n, ns, client, f"time -p timeout 5 wget -qO- http://{ip}/ 2>&1; echo rc=$?")
    text = out.stdout + out.stderr
    assert "rc=0" not in text, text
    real = float(re.search(r"real (\d+\.\d+)", text).group(1))
    assert real < 1.0, f"the empty Service took {real}s to refuse:\n{text}"


def test_nodeport_from_the_host(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    apply(n, ns, web_deployment(n, "np", 1),
          service("np", {"app": "np"}, [{"port": 80, "targetPort": 8080}], type="NodePort"))
    rollout(n, ns, "np", 1)
    port = get_json(n, "svc", "np", "-n", ns)["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    pod = get_json(n, "pods", "-n", ns, "-l", "app=np")["items"][0]["metadata"]["name"]
    url = f"http://{n.node.node_ip}:{port}/"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode().strip() == pod
        except OSError:
            return False
    wait_until(answers, timeout=30, what=f"{url} from the host")


def test_headless_service_and_statefulset_pod_names(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    labels = {"app": "db"}
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
           "spec": {"serviceName": "db", "replicas": 2, "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels},
                                 "spec": {"containers": [{"name": "web", "image": n.images.busybox,
                                                          "command": ["sh", "-c", SERVE]}],
                                          "terminationGracePeriodSeconds": 1}}}}
    apply(n, ns, service("db", labels, [{"name": "http", "port": 8080}], clusterIP="None"), sts)
    client = client_pod(n, ns)
    n.kubectl("rollout", "status", "-n", ns, "sts/db", f"--timeout={TIMEOUT}s",
              timeout=TIMEOUT + 10)
    wait_until(lambda: len(ready_addresses(n, ns, "db")) == 2, timeout=30,
               what="two ready endpoints")
    ips = pod_ips(n, ns, "app=db")

    def resolves(name: str, want: list[str]) -> bool:
        out = in_pod(n, ns, client, f"nslookup {name}").stdout
        return sorted(set(re.findall(r"Address: (\d+\.\d+\.\d+\.\d+)", out)) - {"10.43.0.10"}) == want
    wait_until(lambda: resolves(f"db.{ns}.svc.cluster.local", ips), timeout=30,
               what="the headless name to resolve to both pod IPs")
    db0 = get_json(n, "pod", "db-0", "-n", ns)["status"]["podIP"]
    assert resolves(f"db-0.db.{ns}.svc.cluster.local", [db0])
    assert fetch(n, ns, client, "http://db-0.db:8080/") == "db-0"


def test_srv_ptr_and_external_name(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    apply(n, ns, service("named", {"app": "nobody"}, [{"name": "http", "port": 80}]),
          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
           "spec": {"type": "ExternalName", "externalName": "db.example.e2e.test"}})
    client = client_pod(n, ns)
    fqdn = f"named.{ns}.svc.cluster.local"
    ip = get_json(n, "svc", "named", "-n", ns)["spec"]["clusterIP"]
    srv = in_pod(n, ns, client, f"nslookup -type=srv _http._tcp.{fqdn}").stdout
    assert re.search(rf"service = 0 100 80 {re.escape(fqdn)}", srv), srv
    ptr = in_pod(n, ns, client, f"nslookup {ip}").stdout
    assert f"name = {fqdn}" in ptr, ptr
    cname = in_pod(n, ns, client, f"nslookup -type=cname ext.{ns}.svc.cluster.local").stdout
    assert "canonical name = db.example.e2e.test" in cname, cname
    # A name nobody has: NXDOMAIN, answered at once from the cluster zone.
    start = time.monotonic()
    missing = in_pod(n, ns, client, f"nslookup nothing-here.{ns}.svc.cluster.local")
    assert missing.returncode != 0
    assert "NXDOMAIN" in missing.stdout + missing.stderr
    assert time.monotonic() - start < 5


def test_api_through_the_kubernetes_service(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    client = client_pod(n, ns, "tls", image=n.images.tls_client)
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    script = (f"printf 'GET /api HTTP/1.0\\r\\nHost: kubernetes.default.svc\\r\\n"
              f"Authorization: Bearer %s\\r\\n\\r\\n' \"$(cat {sa}/token)\" | "
              f"timeout 10 openssl s_client -quiet -CAfile {sa}/ca.crt -verify_return_error "
              f"-verify_hostname kubernetes.default.svc -servername kubernetes.default.svc "
              f"-connect kubernetes.default.svc:443 2>/dev/null")
    out = in_pod(n, ns, client, script, check=True).stdout
    assert '"kind": "APIVersions"' in out or '"kind":"APIVersions"' in out, out
    env = in_pod(n, ns, client, "env", check=True).stdout
    assert "KUBERNETES_SERVICE_HOST=10.43.0.1\n" in env, env
    assert "KUBERNETES_SERVICE_PORT=443\n" in env, env


def test_port_forward_to_a_service(addressed_node, pod_ns):
    n, ns = addressed_node, pod_ns
    apply(n, ns, web_deployment(n, "pf", 1),
          service("pf", {"app": "pf"}, [{"port": 80, "targetPort": "http"}]))
    rollout(n, ns, "pf", 1)
    pod = get_json(n, "pods", "-n", ns, "-l", "app=pf")["items"][0]["metadata"]["name"]
    pf = n.kubectl_watch("port-forward", "-n", ns, "svc/pf", ":80")
    try:
        line = pf.expect(lambda l: "Forwarding from 127.0.0.1:" in l, timeout=30)
        local = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10) as r:
            assert r.read().decode().strip() == pod
    finally:
        pf.stop()
