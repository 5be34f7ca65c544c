"""The Deployment controller (issue 14) on real pods, driven by the real kubectl 1.37: pods
`<deployment>-<hash>-<5 chars>` owned by the ReplicaSet `<deployment>-<hash>` owned by the
deployment, replaced when deleted, scaled; rolling updates (`set env`, `set image`,
`rollout restart`) sampled through a watch to stay within maxSurge/maxUnavailable;
`rollout status`, `history`, `undo`, `pause`/`resume`; Recreate never running old and new
pods together; an unpullable image past `progressDeadlineSeconds` while the old pods keep
serving; upstream's conditions, annotations, events and `kubectl get`/`describe` output."""

from __future__ import annotations

import json
import re
import threading

import kubernetes

from helpers import rows_by_name, to_yaml, wait_until

# Upstream's safe-encoded hash and generated-name suffix alphabets.
HASH = "[bcdfghjklmnpqrstvwxz2456789]{6,10}"
SUFFIX = "[bcdfghjklmnpqrstvwxz2456789]{5}"
TIMEOUT = 90
# A registry on a closed loopback port: never pullable, nothing leaves the machine.
UNPULLABLE = "127.0.0.1:9/e2e/missing:1.0"
SCRIPT = "trap 'exit 0' TERM; sleep 3600 & wait"


# Deleted before the pods at the end of each test (conftest.py `pod_ns`).
OWNERS = ("deploy,rs", "orphan")


def deployment(n, name: str, replicas: int, **spec) -> dict:
    labels = {"app": name}
    container = {"name": "app", "image": n.images.busybox, "command": ["sh", "-c", SCRIPT]}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [container],
                                       "terminationGracePeriodSeconds": 5}},
                 **spec},
    }


def get_json(n, *args: str) -> dict:
    return json.loads(n.kubectl("get", *args, "-o", "json").stdout)


def active(items: list[dict]) -> list[dict]:
    return [p for p in items if not p["metadata"].get("deletionTimestamp")
            and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]


def ready(p: dict) -> bool:
    conds = {c["type"]: c["status"] for c in p.get("status", {}).get("conditions", []) or []}
    return conds.get("Ready") == "True"


def pods(n, ns: str, selector: str) -> list[dict]:
    return get_json(n, "pods", "-n", ns, "-l", selector)["items"]


def replica_sets(n, ns: str) -> dict[str, dict]:
    return {rs["metadata"]["name"]: rs for rs in get_json(n, "rs", "-n", ns)["items"]}


def status(n, ns: str, name: str) -> dict:
    return get_json(n, "deploy", name, "-n", ns).get("status", {})


def condition(n, ns: str, name: str, type_: str) -> tuple[str, str, str] | None:
    for c in status(n, ns, name).get("conditions", []):
        if c["type"] == type_:
            return c["status"], c.get("reason", ""), c.get("message", "")
    return None


def events(n, ns: str, name: str) -> list[tuple[str, str, str]]:
    items = get_json(n, "events", "-n", ns,
                     "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["type"], e["reason"], e["message"]) for e in items]


def complete(n, ns: str, name: str, replicas: int) -> None:
    """The rollout finished: every replica updated, ready and available, nothing old."""
    def done():
        s = status(n, ns, name)
        return (s.get("replicas"), s.get("updatedReplicas"), s.get("readyReplicas"),
                s.get("availableReplicas")) == (replicas,) * 4 and \
            condition(n, ns, name, "Progressing")[1] == "NewReplicaSetAvailable"
    wait_until(done, timeout=TIMEOUT, interval=0.5, what=f"{name} rolled out")


def rollout_status(n, ns: str, name: str):
    return n.kubectl("rollout", "status", f"deploy/{name}", "-n", ns, "--timeout=120s",
                     check=False, timeout=150)


class PodSampler:
    """A watch of a namespace's pods (the Python client's); `check` is called with the pods
    after every event, and what it returns (a problem) is kept."""

    def __init__(self, n, ns: str, check):
        self.core = kubernetes.client.CoreV1Api(n.new_client())
        self.ns, self.check = ns, check
        self.pods: dict[str, dict] = {}
        self.problems: list[str] = []
        self.samples = 0
        self.stopped = False
        self.watch = kubernetes.watch.Watch()
        self.thread = threading.Thread(target=self._run, daemon=True)
        listed = self.core.list_namespaced_pod(ns)
        for p in listed.items:
            d = self.core.api_client.sanitize_for_serialization(p)
            self.pods[d["metadata"]["name"]] = d
        self.rv = listed.metadata.resource_version
        self.thread.start()

    def _run(self):
        try:
            self._follow()
        except Exception as e:  # the watch torn down by stop(), or a real failure
            if not self.stopped:
                self.problems.append(f"watch failed: {e!r}")

    def _follow(self):
        for event in self.watch.stream(self.core.list_namespaced_pod, self.ns,
                                       resource_version=self.rv, timeout_seconds=300,
                                       _request_timeout=310):
            obj = self.core.api_client.sanitize_for_serialization(event["object"])
            name = obj["metadata"]["name"]
            if event["type"] == "DELETED":
                self.pods.pop(name, None)
            else:
                self.pods[name] = obj
            self.samples += 1
            problem = self.check(list(self.pods.values()))
            if problem:
                self.problems.append(problem)

    def stop(self) -> None:
        self.stopped = True
        self.watch.stop()
        self.core.api_client.close()


def test_create_deployment_owns_replica_set_and_pods(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    out = n.kubectl("create", "deployment", "web", f"--image={n.images.busybox}",
                    "--replicas=2", "-n", ns, "--", "sh", "-c", SCRIPT).stdout
    assert "deployment.apps/web created" in out, out
    d = get_json(n, "deploy", "web", "-n", ns)

    def two_ready():
        now = active(pods(n, ns, "app=web"))
        return now if len(now) == 2 and all(ready(p) for p in now) else None
    first = wait_until(two_ready, timeout=TIMEOUT, interval=0.3, what="2 ready pods")
    rss = replica_sets(n, ns)
    assert len(rss) == 1, rss.keys()
    (rs_name, rs), = rss.items()
    m = re.fullmatch(f"web-({HASH})", rs_name)
    assert m, rs_name
    pod_hash = m.group(1)
    assert rs["metadata"]["ownerReferences"] == [{
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
        "uid": d["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert rs["spec"]["template"]["metadata"]["labels"] == \
        {"app": "web", "pod-template-hash": pod_hash}
    assert rs["metadata"]["labels"] == {"app": "web", "pod-template-hash": pod_hash}
    annotations = rs["metadata"]["annotations"]
    assert annotations["deployment.kubernetes.io/revision"] == "1"
    assert annotations["deployment.kubernetes.io/desired-replicas"] == "2"
    assert annotations["deployment.kubernetes.io/max-replicas"] == "3"  # 2 + 25 % rounded up
    for p in first:
        assert re.fullmatch(f"web-{pod_hash}-{SUFFIX}", p["metadata"]["name"])
        assert [(r["kind"], r["name"]) for r in p["metadata"]["ownerReferences"]] == \
            [("ReplicaSet", rs_name)]

    complete(n, ns, "web", 2)
    d = get_json(n, "deploy", "web", "-n", ns)
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    s = d["status"]
    assert s["observedGeneration"] == d["metadata"]["generation"]
    assert condition(n, ns, "web", "Available") == \
        ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    assert condition(n, ns, "web", "Progressing") == \
        ("True", "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.')
    row = rows_by_name(n.kubectl("get", "deploy", "web", "-n", ns).stdout)["web"]
    assert (row["READY"], row["UP-TO-DATE"], row["AVAILABLE"]) == ("2/2", "2", "2"), row
    out = rollout_status(n, ns, "web")
    assert out.returncode == 0, out.stderr
    assert 'deployment "web" successfully rolled out' in out.stdout, out.stdout

    # A deleted pod is replaced (by the ReplicaSet; the deployment is unmoved).
    victim = first[0]["metadata"]["name"]
    n.kubectl("delete", "pod", victim, "-n", ns, "--wait=false")
    again = wait_until(two_ready, timeout=TIMEOUT, interval=0.3, what="a replacement")
    assert victim not in {p["metadata"]["name"] for p in again}

    # Scaled up and down through the deployment.
    n.kubectl("scale", "deploy/web", "--replicas=4", "-n", ns)
    complete(n, ns, "web", 4)
    assert replica_sets(n, ns)[rs_name]["metadata"]["annotations"][
        "deployment.kubernetes.io/desired-replicas"] == "4"
    n.kubectl("scale", "deploy/web", "--replicas=1", "-n", ns)
    complete(n, ns, "web", 1)
    row = rows_by_name(n.kubectl("get", "deploy", "web", "-n", ns).stdout)["web"]
    assert (row["READY"], row["UP-TO-DATE"], row["AVAILABLE"]) == ("1/1", "1", "1"), row

    def scaling():
        return [m for t, r, m in events(n, ns, "web") if r == "ScalingReplicaSet"]
    want = [f"Scaled up replica set {rs_name} from 0 to 2",
            f"Scaled up replica set {rs_name} from 2 to 4",
            f"Scaled down replica set {rs_name} from 4 to 1"]
    wait_until(lambda: set(want) <= set(scaling()), timeout=TIMEOUT, what=f"events {want}")
    described = n.kubectl("describe", "deploy", "web", "-n", ns).stdout
    assert re.search(r"Normal\s+ScalingReplicaSet\s+.*deployment-controller\s+"
                     f"Scaled up replica set {rs_name} from 0 to 2", described), described
    assert re.search(f"NewReplicaSet:\\s+{rs_name} \\(1/1 replicas created\\)", described), \
        described


def test_rolling_update_stays_within_surge_and_unavailability(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    replicas, surge, unavailable = 4, 1, 1
    n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(deployment(
        n, "web", replicas,
        strategy={"type": "RollingUpdate",
                  "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})))
    complete(n, ns, "web", replicas)
    old_rs = set(replica_sets(n, ns))

    def check(items):
        alive = active(items)
        up = [p for p in alive if ready(p)]
        if len(alive) > replicas + surge:
            return f"{len(alive)} pods > {replicas + surge}"
        if len(up) < replicas - unavailable:
            return f"{len(up)} ready pods < {replicas - unavailable}"
        return None
    sampler = PodSampler(n, ns, check)
    try:
        n.kubectl("set", "env", "deploy/web", "-n", ns, "ROUND=2")
        out = rollout_status(n, ns, "web")
        assert out.returncode == 0, (out.stdout, out.stderr)
        assert 'deployment "web" successfully rolled out' in out.stdout, out.stdout
        complete(n, ns, "web", replicas)
    finally:
        sampler.stop()
    assert sampler.samples >= 8, sampler.samples  # every old pod went and a new one came
    assert sampler.problems == [], sampler.problems[:5]

    rss = replica_sets(n, ns)
    (new_name,) = set(rss) - old_rs
    (old_name,) = old_rs
    assert rss[old_name]["spec"]["replicas"] == 0
    assert rss[new_name]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert len(active(pods(n, ns, "app=web"))) == replicas
    assert all(p["metadata"]["labels"]["pod-template-hash"] in new_name
               for p in active(pods(n, ns, "app=web")))
    d = get_json(n, "deploy", "web", "-n", ns)
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    messages = {m for t, r, m in events(n, ns, "web") if r == "ScalingReplicaSet"}
    assert f"Scaled up replica set {new_name} from 0 to 1" in messages, messages
    assert any(re.fullmatch(f"Scaled down replica set {old_name} from \\d to \\d", m)
               for m in messages), messages


def test_history_undo_restart_and_cleanup(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    n.kubectl("apply", "-n", ns, "-f", "-",
              input=to_yaml(deployment(n, "web", 2, revisionHistoryLimit=1)))
    complete(n, ns, "web", 2)
    (first,) = replica_sets(n, ns)
    # `set image` to the web image (busybox too, so the command still runs).
    n.kubectl("set", "image", "deploy/web", f"app={n.images.web}", "-n", ns)
    assert rollout_status(n, ns, "web").returncode == 0
    complete(n, ns, "web", 2)
    (second,) = set(replica_sets(n, ns)) - {first}

    history = n.kubectl("rollout", "history", "deploy/web", "-n", ns).stdout
    assert re.search(r"REVISION\s+CHANGE-CAUSE\n1\s+<none>\n2\s+<none>", history), history

    # Undo: the first ReplicaSet is the new one again, renumbered 3.
    out = n.kubectl("rollout", "undo", "deploy/web", "-n", ns).stdout
    assert "deployment.apps/web rolled back" in out, out
    assert rollout_status(n, ns, "web").returncode == 0
    complete(n, ns, "web", 2)
    rss = replica_sets(n, ns)
    assert set(rss) == {first, second}
    assert (rss[first]["spec"]["replicas"], rss[second]["spec"]["replicas"]) == (2, 0)
    a = rss[first]["metadata"]["annotations"]
    assert (a["deployment.kubernetes.io/revision"],
            a["deployment.kubernetes.io/revision-history"]) == ("3", "1"), a
    image = get_json(n, "deploy", "web", "-n", ns)["spec"]["template"]["spec"]["containers"][0]
    assert image["image"] == n.images.busybox
    history = n.kubectl("rollout", "history", "deploy/web", "-n", ns).stdout
    assert re.search(r"REVISION\s+CHANGE-CAUSE\n2\s+<none>\n3\s+<none>", history), history

    # Restart rolls a third template; revisionHistoryLimit 1 leaves one old ReplicaSet.
    n.kubectl("rollout", "restart", "deploy/web", "-n", ns)
    assert rollout_status(n, ns, "web").returncode == 0
    complete(n, ns, "web", 2)
    wait_until(lambda: len(replica_sets(n, ns)) == 2, timeout=TIMEOUT,
               what="the oldest ReplicaSet cleaned up")
    rss = replica_sets(n, ns)
    assert second not in rss and first in rss, rss.keys()
    (third,) = set(rss) - {first}
    assert rss[third]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    restarted = rss[third]["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in restarted


def test_pause_and_resume(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(deployment(n, "web", 2)))
    complete(n, ns, "web", 2)
    (first,) = replica_sets(n, ns)
    out = n.kubectl("rollout", "pause", "deploy/web", "-n", ns).stdout
    assert "deployment.apps/web paused" in out, out
    wait_until(lambda: condition(n, ns, "web", "Progressing") ==
               ("Unknown", "DeploymentPaused", "Deployment is paused"),
               timeout=TIMEOUT, what="Progressing DeploymentPaused")
    n.kubectl("set", "env", "deploy/web", "-n", ns, "ROUND=2")
    # Paused: scaling still happens, the template change rolls nothing.
    n.kubectl("scale", "deploy/web", "--replicas=3", "-n", ns)
    wait_until(lambda: status(n, ns, "web").get("availableReplicas") == 3 and
               status(n, ns, "web").get("observedGeneration") ==
               get_json(n, "deploy", "web", "-n", ns)["metadata"]["generation"],
               timeout=TIMEOUT, what="3 available while paused")
    assert set(replica_sets(n, ns)) == {first}
    assert status(n, ns, "web").get("updatedReplicas", 0) == 0

    out = n.kubectl("rollout", "resume", "deploy/web", "-n", ns).stdout
    assert "deployment.apps/web resumed" in out, out
    assert rollout_status(n, ns, "web").returncode == 0
    complete(n, ns, "web", 3)
    rss = replica_sets(n, ns)
    assert len(rss) == 2 and rss[first]["spec"]["replicas"] == 0


def test_recreate_never_runs_old_and_new_together(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    n.kubectl("apply", "-n", ns, "-f", "-",
              input=to_yaml(deployment(n, "web", 3, strategy={"type": "Recreate"})))
    complete(n, ns, "web", 3)

    def check(items):
        hashes = {p["metadata"]["labels"].get("pod-template-hash") for p in items
                  if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")}
        return f"pods of templates {hashes} together" if len(hashes) > 1 else None
    sampler = PodSampler(n, ns, check)
    try:
        n.kubectl("set", "env", "deploy/web", "-n", ns, "ROUND=2")
        assert rollout_status(n, ns, "web").returncode == 0
        complete(n, ns, "web", 3)
    finally:
        sampler.stop()
    assert sampler.samples >= 6, sampler.samples
    assert sampler.problems == [], sampler.problems[:5]
    messages = [m for t, r, m in events(n, ns, "web") if r == "ScalingReplicaSet"]
    assert any(re.fullmatch(f"Scaled down replica set web-{HASH} from 3 to 0", m)
               for m in messages), messages


def test_unpullable_image_exceeds_the_progress_deadline(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    n.kubectl("apply", "-n", ns, "-f", "-",
              input=to_yaml(deployment(n, "web", 2, progressDeadlineSeconds=10)))
    complete(n, ns, "web", 2)
    (first,) = replica_sets(n, ns)
    old_pods = {p["metadata"]["name"] for p in active(pods(n, ns, "app=web"))}
    n.kubectl("set", "image", "deploy/web", f"app={UNPULLABLE}", "-n", ns)
    wait_until(lambda: (condition(n, ns, "web", "Progressing") or ("",))[:2] ==
               ("False", "ProgressDeadlineExceeded"), timeout=TIMEOUT,
               what="Progressing False ProgressDeadlineExceeded")
    (new,) = set(replica_sets(n, ns)) - {first}
    assert condition(n, ns, "web", "Progressing")[2] == \
        f'ReplicaSet "{new}" has timed out progressing.'
    # The old pods keep serving: maxUnavailable 25 % of 2 is 0.
    still = [p for p in active(pods(n, ns, "app=web")) if p["metadata"]["name"] in old_pods]
    assert len(still) == 2 and all(ready(p) for p in still), still
    assert condition(n, ns, "web", "Available")[0] == "True"
    out = rollout_status(n, ns, "web")
    assert out.returncode != 0
    assert 'deployment "web" exceeded its progress deadline' in out.stderr, out.stderr


def test_resized_mid_rollout_scales_proportionally(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(deployment(n, "web", 4)))
    complete(n, ns, "web", 4)
    (first,) = replica_sets(n, ns)
    # A rollout that cannot finish: 25 % of 4 lets one pod surge and one go.
    n.kubectl("set", "image", "deploy/web", f"app={UNPULLABLE}", "-n", ns)

    def sizes():
        return {name: rs["spec"]["replicas"] for name, rs in replica_sets(n, ns).items()}
    wait_until(lambda: len(sizes()) == 2 and sizes()[first] == 3 and sum(sizes().values()) == 5,
               timeout=TIMEOUT, what="old 3, new 2")
    (new,) = set(sizes()) - {first}
    assert sizes()[new] == 2

    # 4 -> 8 (max 8 + 2): each ReplicaSet grows by its share of the 5 there were.
    n.kubectl("scale", "deploy/web", "--replicas=8", "-n", ns)
    wait_until(lambda: sizes() == {first: 6, new: 4}, timeout=TIMEOUT,
               what="old 6, new 4")
    rss = replica_sets(n, ns)
    for name in (first, new):
        a = rss[name]["metadata"]["annotations"]
        assert (a["deployment.kubernetes.io/desired-replicas"],
                a["deployment.kubernetes.io/max-replicas"]) == ("8", "10"), (name, a)
    for m in (f"Scaled up replica set {first} from 3 to 6",
              f"Scaled up replica set {new} from 2 to 4"):
        wait_until(lambda m=m: m in {m for t, r, m in events(n, ns, "web")
                                     if r == "ScalingReplicaSet"},
                   timeout=TIMEOUT, what=m)
    # The old pods keep serving while the new ones cannot start.
    wait_until(lambda: status(n, ns, "web").get("availableReplicas") == 6, timeout=TIMEOUT,
               what="6 available")


def test_orphans_adopted_released_and_hash_collisions(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    body = to_yaml(deployment(n, "web", 2))
    n.kubectl("apply", "-n", ns, "-f", "-", input=body)
    complete(n, ns, "web", 2)
    (rs_name,) = replica_sets(n, ns)
    before = {p["metadata"]["name"] for p in active(pods(n, ns, "app=web"))}

    def owners(name):
        refs = replica_sets(n, ns)[name]["metadata"].get("ownerReferences", [])
        return [(r["kind"], r["name"], r["uid"]) for r in refs if r.get("controller")]

    # Deleted orphaning its ReplicaSet, then made again: the ReplicaSet is adopted as the
    # new one, its pods untouched.
    n.kubectl("delete", "deploy", "web", "-n", ns, "--cascade=orphan", "--wait=true")
    wait_until(lambda: owners(rs_name) == [], timeout=TIMEOUT, what="the ReplicaSet orphaned")
    n.kubectl("apply", "-n", ns, "-f", "-", input=body)
    uid = get_json(n, "deploy", "web", "-n", ns)["metadata"]["uid"]
    wait_until(lambda: owners(rs_name) == [("Deployment", "web", uid)], timeout=TIMEOUT,
               what="the ReplicaSet adopted")
    complete(n, ns, "web", 2)
    assert set(replica_sets(n, ns)) == {rs_name}
    assert {p["metadata"]["name"] for p in active(pods(n, ns, "app=web"))} == before

    # Relabelled out of the selector: released; its name is taken, so the template's hash
    # collides and the deployment counts a collision to make another.
    n.kubectl("label", "rs", rs_name, "-n", ns, "app=gone", "--overwrite")
    wait_until(lambda: owners(rs_name) == [], timeout=TIMEOUT, what="the ReplicaSet released")
    wait_until(lambda: status(n, ns, "web").get("collisionCount") == 1, timeout=TIMEOUT,
               what="collisionCount 1")

    def another():
        others = [name for name in replica_sets(n, ns) if name != rs_name]
        return others[0] if len(others) == 1 and owners(others[0]) else None
    other = wait_until(another, timeout=TIMEOUT, what="a ReplicaSet under another hash")
    assert re.fullmatch(f"web-{HASH}", other), other
    complete(n, ns, "web", 2)
