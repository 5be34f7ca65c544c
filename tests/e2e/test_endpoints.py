"""The EndpointSlice and Endpoints controllers (issue 15) on real pods, read through the real
kubectl 1.37: a Service's slices and Endpoints list the pods it selects with their readiness,
serving and terminating conditions, the ports they serve (a named `targetPort` resolved per
pod), their node and pod; `publishNotReadyAddresses`; the headless label and StatefulSet-style
hostnames; an empty Service keeps a placeholder slice; manual edits are put right; deleting
the Service deletes its slices and Endpoints; `kubectl get ep`, `get endpointslices` and
`describe svc` show them."""

from __future__ import annotations

import json

from helpers import rows_by_name, to_yaml, wait_until

TIMEOUT = 90
# Deleted before the pods at the end of each test (conftest.py `pod_ns`).
OWNERS = ("deploy,svc", "background")
SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
HEADLESS = "service.kubernetes.io/headless"
# Ready while /tmp/ready exists; ends at once on SIGTERM.
SERVE = "trap 'exit 0' TERM; sleep 3600 & wait"


def get_json(n, *args: str) -> dict:
    return json.loads(n.kubectl("get", *args, "-o", "json").stdout)


def apply(n, ns: str, *objects: dict) -> None:
    n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(*objects))


def service(name: str, selector: dict | None, ports: list[dict] | None, **spec) -> dict:
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"tier": "web"}},
            "spec": {**spec}}
    if ports is not None:
        body["spec"]["ports"] = ports
    if selector is not None:
        body["spec"]["selector"] = selector
    return body


def container(n, port: int = 8080, ready_at_start: bool = True, script: str = SERVE) -> dict:
    start = "touch /tmp/ready; " if ready_at_start else ""
    return {"name": "app", "image": n.images.busybox, "command": ["sh", "-c", start + script],
            "ports": [{"name": "http", "containerPort": port}],
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}}


def pod(n, name: str, labels: dict, port: int = 8080, ready_at_start: bool = True,
        script: str = SERVE, grace: int = 1, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [container(n, port, ready_at_start, script)],
                     "terminationGracePeriodSeconds": grace, **spec}}


def deployment(n, name: str, replicas: int) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [container(n)],
                                           "terminationGracePeriodSeconds": 1}}}}


def slices(n, ns: str, svc: str) -> list[dict]:
    return get_json(n, "endpointslices", "-n", ns, "-l", f"{SERVICE_NAME}={svc}")["items"]


def endpoints(n, ns: str, svc: str) -> list[tuple[str, dict, dict]]:
    """Every endpoint of the Service's slices: (address, conditions, endpoint)."""
    return sorted(((a, e.get("conditions") or {}, e) for s in slices(n, ns, svc)
                   for e in s.get("endpoints") or [] for a in e["addresses"]),
                  key=lambda t: t[0])


def conditions(n, ns: str, svc: str) -> dict[str, tuple]:
    """Address → (ready, serving, terminating)."""
    return {a: (c.get("ready"), c.get("serving"), c.get("terminating"))
            for a, c, _ in endpoints(n, ns, svc)}


def ep_object(n, ns: str, name: str) -> dict | None:
    out = n.kubectl("get", "endpoints", name, "-n", ns, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def ep_addresses(n, ns: str, name: str) -> tuple[list[str], list[str]]:
    """(ready, not ready) addresses of the Endpoints object."""
    ep = ep_object(n, ns, name) or {}
    ready, unready = [], []
    for s in ep.get("subsets") or []:
        ready += [a["ip"] for a in s.get("addresses") or []]
        unready += [a["ip"] for a in s.get("notReadyAddresses") or []]
    return sorted(ready), sorted(unready)


def pod_ip(n, ns: str, name: str) -> str:
    wait_until(lambda: get_json(n, "pod", name, "-n", ns).get("status", {}).get("podIP"),
               timeout=TIMEOUT, what=f"{name} to get an IP")
    return get_json(n, "pod", name, "-n", ns)["status"]["podIP"]


def wait_ready(n, ns: str, *names: str) -> None:
    for name in names:
        n.kubectl("wait", "-n", ns, f"pod/{name}", "--for=condition=Ready",
                  f"--timeout={TIMEOUT}s", timeout=TIMEOUT + 10)


def test_slices_and_endpoints_list_a_deployments_pods(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    apply(n, ns, deployment(n, "web", 2),
          service("web", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": "http"}]))
    n.kubectl("rollout", "status", "-n", ns, "deploy/web", f"--timeout={TIMEOUT}s",
              timeout=TIMEOUT + 10)
    pods = {p["metadata"]["name"]: p for p in get_json(n, "pods", "-n", ns, "-l", "app=web")["items"]}
    ips = sorted(p["status"]["podIP"] for p in pods.values())
    wait_until(lambda: sorted(a for a, c in conditions(n, ns, "web").items()
                              if c == (True, True, False)) == ips,
               timeout=30, what="both pods ready in the slice")
    svc = get_json(n, "svc", "web", "-n", ns)
    [s] = slices(n, ns, "web")
    assert s["metadata"]["name"].startswith("web-")
    assert s["metadata"]["generateName"] == "web-"
    assert s["addressType"] == "IPv4"
    assert s["metadata"]["labels"] == {SERVICE_NAME: "web", "tier": "web",
                                       MANAGED_BY: "endpointslice-controller.k8s.io"}
    [owner] = s["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"],
            owner["blockOwnerDeletion"]) == ("Service", "web", svc["metadata"]["uid"], True, True)
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    for _, _, e in endpoints(n, ns, "web"):
        target = e["targetRef"]
        p = pods[target["name"]]
        assert (target["kind"], target["namespace"], target["uid"]) == \
            ("Pod", ns, p["metadata"]["uid"])
        assert e["addresses"] == [p["status"]["podIP"]]
        assert e["nodeName"] == p["spec"]["nodeName"]

    # The core/v1 Endpoints: one subset, both addresses ready, the resolved port.
    wait_until(lambda: ep_addresses(n, ns, "web") == (ips, []), timeout=30,
               what="both pods in the Endpoints")
    ep = ep_object(n, ns, "web")
    assert ep["metadata"]["labels"] == {"tier": "web",
                                        "endpoints.kubernetes.io/managed-by": "endpoint-controller"}
    [subset] = ep["subsets"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert {a["targetRef"]["name"] for a in subset["addresses"]} == set(pods)

    # What kubectl shows.
    rows = rows_by_name(n.kubectl("get", "ep", "-n", ns).stdout)
    assert sorted(rows["web"]["ENDPOINTS"].split(",")) == sorted(f"{ip}:8080" for ip in ips)
    rows = rows_by_name(n.kubectl("get", "endpointslices", "-n", ns).stdout)
    row = rows[s["metadata"]["name"]]
    assert (row["ADDRESSTYPE"], row["PORTS"]) == ("IPv4", "8080")
    assert sorted(row["ENDPOINTS"].split(",")) == ips
    described = n.kubectl("describe", "svc", "web", "-n", ns).stdout
    line = next(l for l in described.splitlines() if l.startswith("Endpoints:"))
    for ip in ips:
        assert f"{ip}:8080" in line, described

    # Deleting the Service deletes its slices (owner reference) and its Endpoints.
    n.kubectl("delete", "svc", "web", "-n", ns)
    wait_until(lambda: not slices(n, ns, "web") and ep_object(n, ns, "web") is None,
               timeout=30, what="the slices and Endpoints of the deleted Service to go")


def test_a_named_target_port_is_resolved_per_pod(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    labels = {"app": "multi"}
    apply(n, ns, pod(n, "a", labels, port=8080), pod(n, "b", labels, port=9090),
          service("multi", labels, [{"name": "http", "port": 80, "targetPort": "http"}]))
    wait_ready(n, ns, "a", "b")
    a, b = pod_ip(n, ns, "a"), pod_ip(n, ns, "b")

    def by_port() -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for s in slices(n, ns, "multi"):
            for port in s.get("ports") or []:
                out.setdefault(port["port"], []).extend(
                    x for e in s.get("endpoints") or [] for x in e["addresses"])
        return out
    wait_until(lambda: by_port() == {8080: [a], 9090: [b]}, timeout=30,
               what="one slice per resolved port")
    ep = ep_object(n, ns, "multi")
    got = sorted((s["ports"][0]["port"], [x["ip"] for x in s["addresses"]]) for s in ep["subsets"])
    assert got == [(8080, [a]), (9090, [b])]


def test_unready_terminating_and_published_not_ready(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    labels = {"app": "gate"}
    # `slow` ignores SIGTERM, so it stays terminating for its grace period.
    apply(n, ns, pod(n, "ok", labels), pod(n, "late", labels, ready_at_start=False),
          pod(n, "slow", labels, script="trap '' TERM; sleep 3600", grace=60),
          service("gate", labels, [{"port": 80, "targetPort": 8080}]),
          service("all", labels, [{"port": 80, "targetPort": 8080}],
                  publishNotReadyAddresses=True))
    wait_ready(n, ns, "ok", "slow")
    ok, late, slow = pod_ip(n, ns, "ok"), pod_ip(n, ns, "late"), pod_ip(n, ns, "slow")
    wait_until(lambda: conditions(n, ns, "gate") == {ok: (True, True, False),
                                                    late: (False, False, False),
                                                    slow: (True, True, False)},
               timeout=30, what="the unready pod listed not ready")
    wait_until(lambda: ep_addresses(n, ns, "gate") == (sorted([ok, slow]), [late]), timeout=30,
               what="the unready pod in notReadyAddresses")
    # publishNotReadyAddresses: every pod ready.
    wait_until(lambda: conditions(n, ns, "all") == {ok: (True, True, False),
                                                   late: (True, False, False),
                                                   slow: (True, True, False)},
               timeout=30, what="all pods ready with publishNotReadyAddresses")
    wait_until(lambda: ep_addresses(n, ns, "all") == (sorted([ok, late, slow]), []), timeout=30,
               what="all pods in the Endpoints' addresses")

    # The late pod becomes ready.
    n.kubectl("exec", "-n", ns, "late", "--", "touch", "/tmp/ready")
    wait_until(lambda: conditions(n, ns, "gate").get(late) == (True, True, False), timeout=30,
               what="the late pod to become ready")

    # A deleted pod stays as a terminating endpoint (not ready; serving while its Ready
    # condition holds) until it is gone; publishNotReadyAddresses keeps it ready.
    n.kubectl("delete", "pod", "slow", "-n", ns, "--wait=false")
    wait_until(lambda: (conditions(n, ns, "gate").get(slow) or (None,) * 3)[::2] == (False, True),
               timeout=30, what="the deleted pod terminating and not ready")
    assert conditions(n, ns, "all")[slow][::2] == (True, True)
    wait_until(lambda: slow not in ep_addresses(n, ns, "gate")[0], timeout=30,
               what="the terminating pod to leave the Endpoints")
    assert slow in ep_addresses(n, ns, "all")[0]
    n.kubectl("delete", "pod", "slow", "-n", ns, "--grace-period=0", "--force")
    wait_until(lambda: slow not in conditions(n, ns, "gate") and slow not in conditions(n, ns, "all"),
               timeout=30, what="the deleted pod to leave the slices")


def test_headless_hostnames_placeholder_and_repair(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    labels = {"app": "db"}
    apply(n, ns, pod(n, "db-0", labels, hostname="db-0", subdomain="db"),
          service("db", labels, [{"name": "http", "port": 8080}], clusterIP="None"),
          service("empty", {"app": "nobody"}, [{"port": 80, "targetPort": 8080}]),
          service("manual", None, [{"port": 80}]))
    wait_ready(n, ns, "db-0")
    ip = pod_ip(n, ns, "db-0")
    wait_until(lambda: [a for a, _, _ in endpoints(n, ns, "db")] == [ip], timeout=30,
               what="the headless Service's slice")
    [s] = slices(n, ns, "db")
    assert s["metadata"]["labels"][HEADLESS] == ""
    assert s["endpoints"][0]["hostname"] == "db-0"
    wait_until(lambda: ep_addresses(n, ns, "db") == ([ip], []), timeout=30,
               what="the headless Service's Endpoints")
    ep = ep_object(n, ns, "db")
    assert ep["metadata"]["labels"][HEADLESS] == ""
    assert ep["subsets"][0]["addresses"][0]["hostname"] == "db-0"

    # A Service selecting nothing keeps one empty placeholder slice and an empty Endpoints.
    wait_until(lambda: len(slices(n, ns, "empty")) == 1, timeout=30, what="a placeholder slice")
    [placeholder] = slices(n, ns, "empty")
    assert not placeholder.get("endpoints") and not placeholder.get("ports")
    wait_until(lambda: ep_object(n, ns, "empty") is not None, timeout=30, what="empty Endpoints")
    assert not ep_object(n, ns, "empty").get("subsets")

    # Manual edits are put right: a deleted slice comes back, edited Endpoints are restored.
    n.kubectl("delete", "endpointslice", placeholder["metadata"]["name"], "-n", ns)
    wait_until(lambda: [x["metadata"]["name"] for x in slices(n, ns, "empty")] not in
               ([], [placeholder["metadata"]["name"]]), timeout=30, what="a new placeholder")
    n.kubectl("patch", "endpoints", "db", "-n", ns, "--type=merge", "-p",
              json.dumps({"subsets": [{"addresses": [{"ip": "10.99.0.1"}],
                                        "ports": [{"port": 1}]}]}))
    wait_until(lambda: ep_addresses(n, ns, "db") == ([ip], []), timeout=30,
               what="the edited Endpoints restored")

    # A Service without a selector gets neither slices nor Endpoints from the controllers,
    # and Endpoints a user writes for it are left alone.
    assert slices(n, ns, "manual") == []
    assert ep_object(n, ns, "manual") is None
    apply(n, ns, {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual"},
                  "subsets": [{"addresses": [{"ip": "192.0.2.7"}], "ports": [{"port": 80}]}]})
    n.kubectl("label", "svc", "manual", "-n", ns, "touched=yes")
    n.kubectl("delete", "svc", "db", "-n", ns)
    wait_until(lambda: ep_object(n, ns, "db") is None, timeout=30, what="db's Endpoints to go")
    assert ep_addresses(n, ns, "manual") == (["192.0.2.7"], [])
    assert slices(n, ns, "manual") == []
