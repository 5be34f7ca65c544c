"""The ReplicaSet and ReplicationController controllers (issue 14) on real pods: pods named
`<owner>-<5 random chars>` and controlled by their replica set, replaced when deleted, added
and removed by `kubectl scale`, orphans adopted and relabelled pods released, upstream's
events, ready/available counts with `minReadySeconds`, terminating pods not counted, and a
template the API refuses surfaces as `FailedCreate` events and the `ReplicaFailure`
condition until it can be created."""

from __future__ import annotations

import json
import re

import kubernetes

from helpers import rows_by_name, to_yaml, wait_until

# Upstream's generated-name suffix: 5 characters of its vowel-free alphabet.
SUFFIX = "[bcdfghjklmnpqrstvwxz2456789]{5}"
TIMEOUT = 60


# Deleted before the pods at the end of each test (conftest.py `pod_ns`).
OWNERS = ("rs,rc", "orphan")


def container(n, stoppable: bool = True) -> dict:
    """busybox sleeping; `stoppable` ones exit at SIGTERM, the others wait out their grace
    period (a shell as PID 1 without a trap ignores SIGTERM)."""
    script = "trap 'exit 0' TERM; sleep 3600 & wait" if stoppable else "sleep 3600 & wait"
    return {"name": "app", "image": n.images.busybox, "command": ["sh", "-c", script]}


def replica_set(n, name: str, replicas: int, labels: dict[str, str], **spec) -> dict:
    pod_spec = spec.pop("pod_spec", {})
    stoppable = spec.pop("stoppable", True)
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [container(n, stoppable)],
                                       "terminationGracePeriodSeconds": 30, **pod_spec}},
                 **spec},
    }


def get_json(n, *args: str) -> dict:
    return json.loads(n.kubectl("get", *args, "-o", "json").stdout)


def pods(n, ns: str, selector: str) -> list[dict]:
    return get_json(n, "pods", "-n", ns, "-l", selector)["items"]


def active(items: list[dict]) -> list[dict]:
    """Pods that count toward replicas: not being deleted, not finished."""
    return [p for p in items if not p["metadata"].get("deletionTimestamp")
            and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]


def ready(p: dict) -> bool:
    conds = {c["type"]: c["status"] for c in p.get("status", {}).get("conditions", [])}
    return conds.get("Ready") == "True"


def wait_ready_pods(n, ns: str, selector: str, count: int) -> list[dict]:
    def check():
        now = active(pods(n, ns, selector))
        return now if len(now) == count and all(ready(p) for p in now) else None
    return wait_until(check, timeout=TIMEOUT, interval=0.3,
                      what=f"{count} ready pods with {selector}")


def rs_status(n, ns: str, kind: str, name: str) -> dict:
    return get_json(n, kind, name, "-n", ns).get("status", {})


def events(n, ns: str, name: str) -> list[tuple[str, str, str]]:
    items = get_json(n, "events", "-n", ns,
                     "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["type"], e["reason"], e["message"]) for e in items]


def test_a_replica_set_runs_replaces_and_scales_its_pods(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    n.kubectl("apply", "-n", ns, "-f", "-",
              input=to_yaml(replica_set(n, "web", 2, {"app": "web"})))
    rs = get_json(n, "rs", "web", "-n", ns)

    first = wait_ready_pods(n, ns, "app=web", 2)
    for p in first:
        assert re.fullmatch(f"web-{SUFFIX}", p["metadata"]["name"]), p["metadata"]["name"]
        assert p["metadata"]["ownerReferences"] == [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
            "uid": rs["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    wait_until(lambda: rs_status(n, ns, "rs", "web").get("availableReplicas") == 2,
               timeout=TIMEOUT, what="2 available replicas")
    status = rs_status(n, ns, "rs", "web")
    assert (status["replicas"], status["readyReplicas"], status["fullyLabeledReplicas"],
            status["observedGeneration"]) == (2, 2, 2, rs["metadata"]["generation"])
    row = rows_by_name(n.kubectl("get", "rs", "web", "-n", ns).stdout)["web"]
    assert (row["DESIRED"], row["CURRENT"], row["READY"]) == ("2", "2", "2")

    # A deleted pod is replaced by a new one.
    victim = first[0]["metadata"]["name"]
    n.kubectl("delete", "pod", victim, "-n", ns, "--wait=false")
    replaced = wait_ready_pods(n, ns, "app=web", 2)
    assert victim not in {p["metadata"]["name"] for p in replaced}

    # Scale up, then down.
    n.kubectl("scale", "rs", "web", "-n", ns, "--replicas=4")
    wait_ready_pods(n, ns, "app=web", 4)
    wait_until(lambda: rows_by_name(n.kubectl("get", "rs", "web", "-n", ns).stdout)["web"]
               ["READY"] == "4", timeout=TIMEOUT, what="READY 4 in kubectl get rs")
    n.kubectl("scale", "rs", "web", "-n", ns, "--replicas=1")
    left = wait_until(lambda: len(active(pods(n, ns, "app=web"))) == 1 and
                      active(pods(n, ns, "app=web")), timeout=TIMEOUT, what="1 pod left")
    wait_until(lambda: rs_status(n, ns, "rs", "web").get("replicas") == 1,
               timeout=TIMEOUT, what="status.replicas 1")

    # Events are written asynchronously: wait for the last of them.
    def messages(reason):
        return {m for t, r, m in events(n, ns, "web") if r == reason}
    wait_until(lambda: len(messages("SuccessfulDelete")) >= 3, timeout=TIMEOUT,
               what="3 SuccessfulDelete events")
    created, deleted = messages("SuccessfulCreate"), messages("SuccessfulDelete")
    assert f"Created pod: {left[0]['metadata']['name']}" in created
    assert len(created) == 5, created  # 2, 1 replacement, 2 for the scale-up
    assert len(deleted) == 3, deleted
    assert all(re.fullmatch(f"Deleted pod: web-{SUFFIX}", m) for m in deleted), deleted


def test_terminating_pods_are_replaced_and_counted_apart(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    n.kubectl("apply", "-n", ns, "-f", "-",
              input=to_yaml(replica_set(n, "slow", 2, {"app": "slow"}, stoppable=False)))
    first = wait_ready_pods(n, ns, "app=slow", 2)
    # The pod ignores SIGTERM, so it stays terminating for its 30 s grace period; the
    # replica set does not wait for it.
    n.kubectl("delete", "pod", first[0]["metadata"]["name"], "-n", ns, "--wait=false")
    wait_ready_pods(n, ns, "app=slow", 2)

    def counted():
        s = rs_status(n, ns, "rs", "slow")
        return s if (s.get("replicas"), s.get("terminatingReplicas")) == (2, 1) else None
    wait_until(counted, timeout=TIMEOUT, what="replicas 2, terminatingReplicas 1")
    # Done with it: not worth its 30 s of grace at teardown.
    n.kubectl("delete", "pod", first[0]["metadata"]["name"], "-n", ns, "--grace-period=0",
              "--force", "--wait=true")


def test_min_ready_seconds_delays_availability(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    n.kubectl("apply", "-n", ns, "-f", "-",
              input=to_yaml(replica_set(n, "patient", 2, {"app": "patient"},
                                        minReadySeconds=8)))
    wait_until(lambda: rs_status(n, ns, "rs", "patient").get("readyReplicas") == 2,
               timeout=TIMEOUT, what="2 ready replicas")
    # Ready is not yet available: 8 s have not passed since the pods became ready.
    assert rs_status(n, ns, "rs", "patient").get("availableReplicas", 0) < 2
    # Nothing about the pods changes after that; the controller looks again by itself.
    wait_until(lambda: rs_status(n, ns, "rs", "patient").get("availableReplicas") == 2,
               timeout=30, what="2 available replicas")


def test_orphans_are_adopted_and_relabelled_pods_released(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    orphan = {"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "stray", "labels": {"app": "adopt"}},
              "spec": {"containers": [container(n)], "terminationGracePeriodSeconds": 30}}
    n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(orphan))
    n.kubectl("apply", "-n", ns, "-f", "-",
              input=to_yaml(replica_set(n, "adopter", 2, {"app": "adopt"})))
    uid = get_json(n, "rs", "adopter", "-n", ns)["metadata"]["uid"]

    def owner(name):
        refs = get_json(n, "pod", name, "-n", ns)["metadata"].get("ownerReferences", [])
        return [(r["kind"], r["name"], r["uid"], r.get("controller")) for r in refs]
    wait_until(lambda: owner("stray") == [("ReplicaSet", "adopter", uid, True)],
               timeout=TIMEOUT, what="the orphan adopted")
    # It counts: one more pod is made, not two.
    two = wait_ready_pods(n, ns, "app=adopt", 2)
    assert "stray" in {p["metadata"]["name"] for p in two}
    assert len(two) == 2

    # Relabelled out of the selector: released and replaced.
    n.kubectl("label", "pod", "stray", "-n", ns, "app=gone", "--overwrite")
    wait_until(lambda: owner("stray") == [], timeout=TIMEOUT, what="the pod released")
    again = wait_ready_pods(n, ns, "app=adopt", 2)
    assert "stray" not in {p["metadata"]["name"] for p in again}
    creates = wait_until(lambda: [m for _, r, m in events(n, ns, "adopter")
                                  if r == "SuccessfulCreate"] or None,
                         timeout=TIMEOUT, what="SuccessfulCreate events")
    assert {m.removeprefix("Created pod: ") for m in creates} == \
        {p["metadata"]["name"] for p in [*two, *again]} - {"stray"}


def test_a_refused_template_surfaces_as_failed_create(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    # The API refuses pods whose service account does not exist (yet).
    n.kubectl("apply", "-n", ns, "-f", "-",
              input=to_yaml(replica_set(n, "doomed", 1, {"app": "doomed"},
                                        pod_spec={"serviceAccountName": "builder"})))
    refusal = (f'pods "doomed-" is forbidden: error looking up service account {ns}/builder: '
               'serviceaccount "builder" not found')

    def failure():
        for c in rs_status(n, ns, "rs", "doomed").get("conditions", []):
            if c["type"] == "ReplicaFailure":
                return c
        return None
    cond = wait_until(failure, timeout=TIMEOUT, what="the ReplicaFailure condition")
    assert (cond["status"], cond["reason"]) == ("True", "FailedCreate")
    assert cond["message"] == refusal, cond
    warned = wait_until(lambda: [m for t, r, m in events(n, ns, "doomed")
                                 if (t, r) == ("Warning", "FailedCreate")],
                        timeout=TIMEOUT, what="a FailedCreate event")
    assert warned[0] == f"Error creating: {refusal}", warned
    assert pods(n, ns, "app=doomed") == []

    # Once the account exists the pod is created and the condition goes.
    n.kubectl("create", "serviceaccount", "builder", "-n", ns)
    wait_ready_pods(n, ns, "app=doomed", 1)
    wait_until(lambda: failure() is None, timeout=TIMEOUT, what="the condition cleared")


def test_a_replication_controller_works_the_same(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    core = kubernetes.client.CoreV1Api(n.client)
    body = {"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "legacy"},
            "spec": {"replicas": 2, "selector": {"app": "legacy"},
                     "template": {"metadata": {"labels": {"app": "legacy"}},
                                  "spec": {"containers": [container(n)]}}}}
    rc = core.create_namespaced_replication_controller(ns, body)
    first = wait_ready_pods(n, ns, "app=legacy", 2)
    for p in first:
        assert re.fullmatch(f"legacy-{SUFFIX}", p["metadata"]["name"])
        assert p["metadata"]["ownerReferences"] == [{
            "apiVersion": "v1", "kind": "ReplicationController", "name": "legacy",
            "uid": rc.metadata.uid, "controller": True, "blockOwnerDeletion": True}]

    def status_is(replicas, ready_count):
        s = core.read_namespaced_replication_controller("legacy", ns).status
        return (s.replicas, s.ready_replicas) == (replicas, ready_count)
    wait_until(lambda: status_is(2, 2), timeout=TIMEOUT, what="RC status 2/2")

    core.patch_namespaced_replication_controller("legacy", ns, {"spec": {"replicas": 1}})
    wait_until(lambda: len(active(pods(n, ns, "app=legacy"))) == 1, timeout=TIMEOUT,
               what="scaled down to 1")
    wait_until(lambda: status_is(1, 1), timeout=TIMEOUT, what="RC status 1/1")
    wait_until(lambda: {"SuccessfulCreate", "SuccessfulDelete"} <=
               {r for _, r, _ in events(n, ns, "legacy")}, timeout=TIMEOUT,
               what="SuccessfulCreate and SuccessfulDelete events of the RC")


def test_scaling_down_deletes_a_not_ready_pod_first(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    probed = {"name": "app", "image": n.images.busybox,
              "command": ["sh", "-c", "touch /tmp/ready; trap 'exit 0' TERM; sleep 3600 & wait"],
              "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]},
                                 "periodSeconds": 1, "failureThreshold": 1}}
    body = replica_set(n, "ranked", 3, {"app": "ranked"})
    body["spec"]["template"]["spec"]["containers"] = [probed]
    n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(body))
    three = wait_ready_pods(n, ns, "app=ranked", 3)
    # The youngest pods would go first among equals; make the oldest one not ready.
    oldest = min(three, key=lambda p: p["metadata"]["creationTimestamp"])["metadata"]["name"]
    n.kubectl("exec", "-n", ns, oldest, "--", "rm", "/tmp/ready")
    wait_until(lambda: not ready(get_json(n, "pod", oldest, "-n", ns)), timeout=TIMEOUT,
               what=f"{oldest} not ready")
    n.kubectl("scale", "rs", "ranked", "-n", ns, "--replicas=2")
    left = wait_until(lambda: (lambda a: a if len(a) == 2 else None)(active(pods(n, ns, "app=ranked"))),
                      timeout=TIMEOUT, what="2 pods left")
    assert oldest not in {p["metadata"]["name"] for p in left}
    deleted = wait_until(lambda: [m for _, r, m in events(n, ns, "ranked")
                                  if r == "SuccessfulDelete"] or None,
                         timeout=TIMEOUT, what="a SuccessfulDelete event")
    assert deleted == [f"Deleted pod: {oldest}"]
