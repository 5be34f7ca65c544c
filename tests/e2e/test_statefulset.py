"""The StatefulSet controller (issue 14) on real pods: `<set>-<ordinal>` pods with their
hostname, subdomain and labels, created one at a time in OrderedReady (observed from a
watch) or all at once in Parallel, re-created under the same name, scaled down from the
highest ordinal, rolled from the highest ordinal with `partition` respected, OnDelete,
ControllerRevisions through `kubectl rollout history/undo/status`, the `kubectl get sts`
columns, and the Warning event for volumeClaimTemplates (peapod has no claims)."""

from __future__ import annotations

import json
import threading

import kubernetes

from helpers import rows_by_name, to_yaml, wait_until

TIMEOUT = 120


# Deleted before the pods at the end of each test (conftest.py `pod_ns`).
OWNERS = ("sts", "orphan")


def stateful_set(n, name: str, replicas: int, **spec) -> dict:
    env = spec.pop("env", "one")
    pod_spec = spec.pop("pod_spec", {})
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "serviceName": name,
                 "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{
                                  "name": "app", "image": n.images.busybox,
                                  "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
                                  "env": [{"name": "VERSION", "value": env}], **pod_spec}],
                                  "terminationGracePeriodSeconds": 5}},
                 **spec},
    }


def get_json(n, *args: str) -> dict:
    return json.loads(n.kubectl("get", *args, "-o", "json").stdout)


def ready(p: dict) -> bool:
    conds = {c["type"]: c["status"] for c in p.get("status", {}).get("conditions", [])}
    return conds.get("Ready") == "True"


def live_pods(n, ns: str, app: str) -> dict[str, dict]:
    items = get_json(n, "pods", "-n", ns, "-l", f"app={app}")["items"]
    return {p["metadata"]["name"]: p for p in items if not p["metadata"].get("deletionTimestamp")}


def wait_ready(n, ns: str, app: str, names: set[str]) -> dict[str, dict]:
    def check():
        pods = live_pods(n, ns, app)
        return pods if set(pods) == names and all(ready(p) for p in pods.values()) else None
    return wait_until(check, timeout=TIMEOUT, interval=0.3, what=f"ready pods {sorted(names)}")


def status(n, ns: str, name: str) -> dict:
    return get_json(n, "sts", name, "-n", ns).get("status", {})


class PodWatch:
    """Records every pod event of a namespace in order: (type, name, ready, deleting)."""

    def __init__(self, n, ns: str):
        self.events: list[tuple[str, str, bool, bool]] = []
        self._watch = kubernetes.watch.Watch()
        api = kubernetes.client.CoreV1Api(n.client)

        def run():
            try:
                for ev in self._watch.stream(api.list_namespaced_pod, ns, timeout_seconds=600):
                    pod = ev["object"]
                    conds = {c.type: c.status for c in (pod.status.conditions or [])} \
                        if pod.status else {}
                    self.events.append((ev["type"], pod.metadata.name,
                                        conds.get("Ready") == "True",
                                        pod.metadata.deletion_timestamp is not None))
            except Exception:
                pass
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def index(self, pred, start: int = 0) -> int:
        for i, ev in enumerate(self.events):
            if i >= start and pred(ev):
                return i
        raise AssertionError(f"no such event in {self.events}")

    def stop(self):
        self._watch.stop()


def test_ordered_ready_identity_recreation_and_scale_down(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    watch = PodWatch(n, ns)
    try:
        n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(stateful_set(n, "web", 3)))
        uid = get_json(n, "sts", "web", "-n", ns)["metadata"]["uid"]
        pods = wait_ready(n, ns, "web", {"web-0", "web-1", "web-2"})

        # From the watch: each pod is created only once its predecessor is Ready.
        added = {name: watch.index(lambda e, name=name: e[0] == "ADDED" and e[1] == name)
                 for name in ("web-0", "web-1", "web-2")}
        for prev, nxt in (("web-0", "web-1"), ("web-1", "web-2")):
            ready_at = watch.index(lambda e, prev=prev: e[1] == prev and e[2])
            assert ready_at < added[nxt], (prev, nxt, watch.events)

        rev = status(n, ns, "web")["updateRevision"]
        for i, name in enumerate(("web-0", "web-1", "web-2")):
            p = pods[name]
            assert p["spec"]["hostname"] == name
            assert p["spec"]["subdomain"] == "web"
            labels = p["metadata"]["labels"]
            assert labels["statefulset.kubernetes.io/pod-name"] == name
            assert labels["apps.kubernetes.io/pod-index"] == str(i)
            assert labels["controller-revision-hash"] == rev
            assert p["metadata"]["ownerReferences"] == [{
                "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": uid,
                "controller": True, "blockOwnerDeletion": True}]

        wait_until(lambda: status(n, ns, "web").get("availableReplicas") == 3,
                   timeout=TIMEOUT, what="3 available")
        s = status(n, ns, "web")
        assert (s["replicas"], s["readyReplicas"], s["currentReplicas"], s["updatedReplicas"],
                s["currentRevision"], s["collisionCount"]) == (3, 3, 3, 3, rev, 0)
        assert s["observedGeneration"] == 1
        row = rows_by_name(n.kubectl("get", "sts", "-n", ns).stdout)["web"]
        assert row["READY"] == "3/3"
        wide = rows_by_name(n.kubectl("get", "sts", "-n", ns, "-o", "wide").stdout)["web"]
        assert (wide["CONTAINERS"], wide["IMAGES"]) == ("app", n.images.busybox)
        out = n.kubectl("rollout", "status", "sts/web", "-n", ns, "--timeout=60s").stdout
        # kubectl reads the defaulted `rollingUpdate.partition` as a partitioned roll out.
        assert "partitioned roll out complete: 3 new pods have been updated..." in out

        # A deleted pod comes back under its name.
        old_uid = pods["web-1"]["metadata"]["uid"]
        n.kubectl("delete", "pod", "web-1", "-n", ns, "--wait=false")
        back = wait_ready(n, ns, "web", {"web-0", "web-1", "web-2"})
        assert back["web-1"]["metadata"]["uid"] != old_uid

        # Scale down: web-2 goes (completely) before web-1 is touched.
        mark = len(watch.events)
        n.kubectl("scale", "sts", "web", "-n", ns, "--replicas=1")
        wait_until(lambda: set(live_pods(n, ns, "web")) == {"web-0"} and
                   not get_json(n, "pods", "-n", ns, "-l", "app=web")["items"][1:],
                   timeout=TIMEOUT, what="only web-0 left")
        gone2 = watch.index(lambda e: e[0] == "DELETED" and e[1] == "web-2", mark)
        doomed1 = watch.index(lambda e: e[1] == "web-1" and e[3], mark)
        assert gone2 < doomed1, watch.events

        def messages(reason):
            return {e["message"] for e in get_json(n, "events", "-n", ns, "--field-selector",
                                                    "involvedObject.name=web")["items"]
                    if e["reason"] == reason}
        wait_until(lambda: len(messages("SuccessfulDelete")) >= 2, timeout=TIMEOUT,
                   what="SuccessfulDelete events")
        assert "create Pod web-0 in StatefulSet web successful" in messages("SuccessfulCreate")
        assert "delete Pod web-2 in StatefulSet web successful" in messages("SuccessfulDelete")
    finally:
        watch.stop()


def test_parallel_creates_all_at_once(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    # Pods that never become ready: OrderedReady would stop at web-0.
    never = {"readinessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1}}
    n.kubectl("apply", "-n", ns, "-f", "-",
              input=to_yaml(stateful_set(n, "par", 3, podManagementPolicy="Parallel",
                                         pod_spec=never)))
    wait_until(lambda: set(live_pods(n, ns, "par")) == {"par-0", "par-1", "par-2"},
               timeout=TIMEOUT, what="3 pods")
    wait_until(lambda: status(n, ns, "par").get("replicas") == 3, timeout=TIMEOUT,
               what="status.replicas 3")
    assert status(n, ns, "par").get("readyReplicas", 0) == 0


def test_rolling_update_partition_history_and_undo(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    watch = PodWatch(n, ns)
    try:
        n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(stateful_set(n, "roll", 3)))
        wait_ready(n, ns, "roll", {"roll-0", "roll-1", "roll-2"})
        first = status(n, ns, "roll")["updateRevision"]

        # A new template with partition 1: roll-2 then roll-1 roll, roll-0 stays.
        n.kubectl("patch", "sts", "roll", "-n", ns, "-p", json.dumps(
            {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 1}},
                      "template": {"spec": {"containers": [{
                          "name": "app", "env": [{"name": "VERSION", "value": "two"}]}]}}}}))

        def revisions():
            return {name: p["metadata"]["labels"]["controller-revision-hash"]
                    for name, p in wait_ready(n, ns, "roll",
                                              {"roll-0", "roll-1", "roll-2"}).items()}
        second = wait_until(lambda: (s := status(n, ns, "roll")).get("updateRevision") != first
                            and s["updateRevision"], timeout=TIMEOUT, what="a new revision")
        wait_until(lambda: revisions() == {"roll-0": first, "roll-1": second, "roll-2": second},
                   timeout=TIMEOUT, what="roll-1 and roll-2 updated, roll-0 not")
        doomed2 = watch.index(lambda e: e[1] == "roll-2" and e[3])
        doomed1 = watch.index(lambda e: e[1] == "roll-1" and e[3])
        assert doomed2 < doomed1, watch.events
        s = status(n, ns, "roll")
        assert (s["currentRevision"], s["updatedReplicas"], s["currentReplicas"]) == \
            (first, 2, 1)
        out = n.kubectl("rollout", "status", "sts/roll", "-n", ns, "--timeout=60s").stdout
        assert "partitioned roll out complete: 2 new pods have been updated..." in out

        # The partition lifted: roll-0 follows; the update revision becomes current.
        n.kubectl("patch", "sts", "roll", "-n", ns, "--type=merge", "-p",
                  '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}')
        wait_until(lambda: set(revisions().values()) == {second}, timeout=TIMEOUT,
                   what="every pod at the second revision")
        wait_until(lambda: status(n, ns, "roll").get("currentRevision") == second,
                   timeout=TIMEOUT, what="the second revision current")

        history = n.kubectl("rollout", "history", "sts/roll", "-n", ns).stdout
        assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == \
            ["1", "2"], history
        # kubectl applies a revision's patch to show its template.
        detail = n.kubectl("rollout", "history", "sts/roll", "-n", ns, "--revision=2").stdout
        assert "VERSION:" in detail and "two" in detail, detail
        crs = get_json(n, "controllerrevisions", "-n", ns)["items"]
        assert {c["metadata"]["name"] for c in crs} == {first, second}
        data = {c["metadata"]["name"]: c["data"] for c in crs}
        assert data[second]["spec"]["template"]["$patch"] == "replace"
        assert data[second]["spec"]["template"]["spec"]["containers"][0]["env"] == \
            [{"name": "VERSION", "value": "two"}]

        # Undo: back to the first template, which becomes revision 3.
        n.kubectl("rollout", "undo", "sts/roll", "-n", ns)
        wait_until(lambda: set(revisions().values()) == {first}, timeout=TIMEOUT,
                   what="every pod back at the first revision")
        wait_until(lambda: status(n, ns, "roll").get("currentRevision") == first,
                   timeout=TIMEOUT, what="the first revision current again")
        numbers = {c["metadata"]["name"]: c["revision"]
                   for c in get_json(n, "controllerrevisions", "-n", ns)["items"]}
        assert numbers == {first: 3, second: 2}
    finally:
        watch.stop()


def test_on_delete_waits_for_deletion(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    n.kubectl("apply", "-n", ns, "-f", "-",
              input=to_yaml(stateful_set(n, "od", 2, updateStrategy={"type": "OnDelete"})))
    pods = wait_ready(n, ns, "od", {"od-0", "od-1"})
    first = status(n, ns, "od")["updateRevision"]
    n.kubectl("set", "env", "sts/od", "-n", ns, "VERSION=two")
    second = wait_until(lambda: (s := status(n, ns, "od")).get("updateRevision") != first
                        and s["updateRevision"], timeout=TIMEOUT, what="a new revision")
    # Nothing is touched while no pod is deleted.
    same = wait_ready(n, ns, "od", {"od-0", "od-1"})
    assert {k: p["metadata"]["uid"] for k, p in same.items()} == \
        {k: p["metadata"]["uid"] for k, p in pods.items()}
    assert status(n, ns, "od").get("updatedReplicas", 0) == 0
    n.kubectl("delete", "pod", "od-1", "-n", ns, "--wait=false")

    def at(name):
        p = live_pods(n, ns, "od").get(name)
        return p and ready(p) and p["metadata"]["labels"]["controller-revision-hash"]
    wait_until(lambda: at("od-1") == second, timeout=TIMEOUT, what="od-1 re-created updated")
    assert at("od-0") == first


def test_volume_claim_templates_are_reported_not_created(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    manifest = stateful_set(n, "db", 1, volumeClaimTemplates=[{
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}])
    n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(manifest))
    pod = wait_ready(n, ns, "db", {"db-0"})["db-0"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}} in \
        pod["spec"]["volumes"]
    want = ("create Claim data-db-0 for Pod db-0 in StatefulSet db failed error: "
            "PersistentVolumeClaims are not supported by peapod")

    def warned():
        items = get_json(n, "events", "-n", ns, "--field-selector",
                         "involvedObject.name=db")["items"]
        return any(e["type"] == "Warning" and e["reason"] == "FailedCreate"
                   and e["message"] == want for e in items)
    wait_until(warned, timeout=TIMEOUT, what="the claim's Warning event")


def test_min_ready_seconds_holds_the_next_pod_back(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    n.kubectl("apply", "-n", ns, "-f", "-",
              input=to_yaml(stateful_set(n, "slow", 2, minReadySeconds=8)))
    wait_ready(n, ns, "slow", {"slow-0"})
    # Ready but not yet available: OrderedReady waits before making slow-1.
    s = status(n, ns, "slow")
    assert s.get("availableReplicas", 0) == 0 and "slow-1" not in live_pods(n, ns, "slow"), s
    # Nothing about the pod changes after that; the controller looks again by itself.
    wait_ready(n, ns, "slow", {"slow-0", "slow-1"})
    wait_until(lambda: status(n, ns, "slow").get("availableReplicas") == 2, timeout=TIMEOUT,
               what="2 available")
