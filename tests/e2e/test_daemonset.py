"""The DaemonSet controller (issue 14) on one real node plus Node objects made through the API
(no agent behind them: their pods are bound by the scheduler and stay Pending, which is what
placement needs): one pod per eligible node named `<ds>-<5 random chars>`, pinned by
`metadata.name` node affinity, with the daemon tolerations and the revision labels; nodes
added get a pod and nodes deleted lose theirs (the pod garbage collector); nodeSelector and
taints restrict; a template change rolls the pods; `kubectl rollout status/history` and the
`kubectl get ds` columns."""

from __future__ import annotations

import json
import re
import secrets

import kubernetes
import pytest

from helpers import rows_by_name, to_yaml, wait_until

SUFFIX = "[bcdfghjklmnpqrstvwxz2456789]{5}"
TIMEOUT = 90
# The pod GC's quarantine (40 s) plus its period (20 s) plus slack on a loaded machine.
GC_TIMEOUT = 150

DAEMON_TOLERATIONS = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
]


class Cluster:
    """The test's namespace and the fake nodes it made."""

    def __init__(self, n, ns: str):
        self.n, self.ns, self.nodes = n, ns, []

    def add_node(self, labels: dict[str, str] | None = None, taints: list[dict] | None = None,
                 ) -> str:
        name = f"fake-{secrets.token_hex(3)}"
        core = kubernetes.client.CoreV1Api(self.n.client)
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                      **(labels or {})}},
                "spec": {"taints": taints} if taints else {}}
        core.create_node(body)
        self.nodes.append(name)
        # Ready, with room for pods, as an agent would report it.
        status = {"status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "fake"}]}}
        core.patch_node_status(name, status)
        return name

    def delete_node(self, name: str) -> None:
        kubernetes.client.CoreV1Api(self.n.client).delete_node(name)
        self.nodes.remove(name)

    def apply(self, doc: dict) -> None:
        self.n.kubectl("apply", "-n", self.ns, "-f", "-", input=to_yaml(doc))

    def get(self, *args: str) -> dict:
        return json.loads(self.n.kubectl("get", *args, "-n", self.ns, "-o", "json").stdout)

    def pods(self, selector: str) -> list[dict]:
        return [p for p in self.get("pods", "-l", selector)["items"]
                if not p["metadata"].get("deletionTimestamp")]

    def by_node(self, selector: str) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for p in self.pods(selector):
            out.setdefault(target_node(p), []).append(p)
        return out

    def status(self, name: str) -> dict:
        return self.get("ds", name).get("status", {})


@pytest.fixture
def ds(crun_node):
    n = crun_node
    c = Cluster(n, n.create_namespace())
    yield c
    n.kubectl("delete", "ds", "--all", "-n", c.ns, "--cascade=orphan", "--wait=true")
    # Pods on fake nodes have no agent to finish them: removed at once.
    for name in list(c.nodes):
        n.kubectl("delete", "pods", "-n", c.ns, "--field-selector", f"spec.nodeName={name}",
                  "--grace-period=0", "--force", check=False)
        c.delete_node(name)
    n.kubectl("delete", "pods", "--all", "-n", c.ns, "--grace-period=1", "--wait=true",
              timeout=120)
    n.node.wait_clean()
    try:
        kubernetes.client.CoreV1Api(n.client).delete_namespace(c.ns)
    except Exception:
        pass


def container(n) -> dict:
    return {"name": "app", "image": n.images.busybox,
            "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}


def daemon_set(n, name: str, labels: dict[str, str], pod_spec: dict | None = None,
               **spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [container(n)],
                                           "terminationGracePeriodSeconds": 5,
                                           **(pod_spec or {})}},
                     **spec}}


def target_node(pod: dict) -> str:
    if pod["spec"].get("nodeName"):
        return pod["spec"]["nodeName"]
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return terms[0]["matchFields"][0]["values"][0]


def running(p: dict) -> bool:
    conds = {c["type"]: c["status"] for c in p.get("status", {}).get("conditions", [])}
    return p.get("status", {}).get("phase") == "Running" and conds.get("Ready") == "True"


def events(c: Cluster, name: str) -> list[tuple[str, str, str]]:
    items = c.get("events", "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["type"], e["reason"], e["message"]) for e in items]


def test_one_pod_per_node_follows_nodes(crun_node, ds):
    n, c = crun_node, ds
    real = n.node.name
    c.apply(daemon_set(n, "agent", {"app": "agent"}))
    uid = c.get("ds", "agent")["metadata"]["uid"]

    def one_running():
        pods = c.by_node("app=agent")
        mine = pods.get(real, [])
        return mine[0] if len(pods) == 1 and len(mine) == 1 and running(mine[0]) else None
    pod = wait_until(one_running, timeout=TIMEOUT, what="one Running pod on the real node")
    meta, spec = pod["metadata"], pod["spec"]
    assert re.fullmatch(f"agent-{SUFFIX}", meta["name"]), meta["name"]
    assert meta["ownerReferences"] == [{
        "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": uid,
        "controller": True, "blockOwnerDeletion": True}]
    assert meta["labels"]["pod-template-generation"] == "1"
    assert re.fullmatch("[bcdfghjklmnpqrstvwxz2456789]+", meta["labels"]["controller-revision-hash"])
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [real]}]}]}
    # The daemon tolerations (no network-unavailable one: not a host-network pod).
    tolerations = [(t.get("key"), t.get("effect"), t.get("operator")) for t in spec["tolerations"]]
    for key, effect in DAEMON_TOLERATIONS:
        assert (key, effect, "Exists") in tolerations, tolerations
    assert not any(k == "node.kubernetes.io/network-unavailable" for k, _, _ in tolerations)

    def status_is(**want):
        def check():
            s = c.status("agent")
            return s if all(s.get(k, 0) == v for k, v in want.items()) else None
        return check
    wait_until(status_is(desiredNumberScheduled=1, currentNumberScheduled=1, numberReady=1,
                         updatedNumberScheduled=1, numberAvailable=1, numberMisscheduled=0),
               timeout=TIMEOUT, what="status with one ready pod")
    assert c.status("agent")["observedGeneration"] == 1
    assert "numberUnavailable" not in c.status("agent")
    row = rows_by_name(n.kubectl("get", "ds", "-n", c.ns).stdout)["agent"]
    assert list(row) == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE",
                         "NODE SELECTOR", "AGE"]
    assert [row[k] for k in ("DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE",
                             "NODE SELECTOR")] == ["1", "1", "1", "1", "1", "<none>"]

    # A node added gets a pod, bound to it by the scheduler (no agent runs it).
    extra = c.add_node()
    def on_extra():
        pods = c.by_node("app=agent").get(extra, [])
        return pods[0] if len(pods) == 1 and pods[0]["spec"].get("nodeName") == extra else None
    wait_until(on_extra, timeout=TIMEOUT, what="a pod bound to the added node")
    wait_until(status_is(desiredNumberScheduled=2, currentNumberScheduled=2, numberReady=1,
                         numberAvailable=1, numberUnavailable=1),
               timeout=TIMEOUT, what="status with two nodes")

    # A node deleted loses its pod (the pod garbage collector, after its quarantine).
    c.delete_node(extra)
    wait_until(lambda: extra not in c.by_node("app=agent"), timeout=GC_TIMEOUT,
               what="the deleted node's pod gone")
    wait_until(status_is(desiredNumberScheduled=1, currentNumberScheduled=1, numberReady=1),
               timeout=TIMEOUT, what="status back to one node")
    assert list(c.by_node("app=agent")) == [real]

    def created():
        return {m for t, r, m in events(c, "agent") if r == "SuccessfulCreate"}
    msgs = wait_until(lambda: len(created()) >= 2 and created(), timeout=TIMEOUT,
                      what="2 SuccessfulCreate events")
    assert all(re.fullmatch(f"Created pod: agent-{SUFFIX}", m) for m in msgs), msgs


def test_node_selector_and_taints_restrict(crun_node, ds):
    n, c = crun_node, ds
    chosen = c.add_node({"role": "daemon"})
    other = c.add_node()
    tainted = c.add_node({"role": "daemon"},
                         taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"}])
    c.apply(daemon_set(n, "picky", {"app": "picky"}, {"nodeSelector": {"role": "daemon"}}))
    tolerant = daemon_set(n, "tolerant", {"app": "tolerant"},
                          {"nodeSelector": {"role": "daemon"},
                           "tolerations": [{"key": "dedicated", "operator": "Equal",
                                            "value": "x", "effect": "NoSchedule"}]})
    c.apply(tolerant)

    wait_until(lambda: set(c.by_node("app=tolerant")) == {chosen, tainted},
               timeout=TIMEOUT, what="the tolerating DaemonSet on both labelled nodes")
    wait_until(lambda: set(c.by_node("app=picky")) == {chosen}, timeout=TIMEOUT,
               what="the other only on the untainted labelled node")
    wait_until(lambda: c.status("picky").get("desiredNumberScheduled") == 1
               and c.status("picky").get("currentNumberScheduled") == 1,
               timeout=TIMEOUT, what="picky desires 1")
    assert other not in c.by_node("app=tolerant")
    assert n.node.name not in c.by_node("app=picky")
    row = rows_by_name(n.kubectl("get", "ds", "picky", "-n", c.ns).stdout)["picky"]
    assert (row["DESIRED"], row["CURRENT"], row["NODE SELECTOR"]) == ("1", "1", "role=daemon")

    # A label removed: the pod goes (the node no longer matches).
    n.kubectl("label", "node", chosen, "role-")
    wait_until(lambda: c.by_node("app=picky") == {}, timeout=TIMEOUT,
               what="the pod of the unlabelled node deleted")
    wait_until(lambda: c.status("picky").get("desiredNumberScheduled", 0) == 0,
               timeout=TIMEOUT, what="picky desires 0")


def test_host_network_pods_tolerate_network_unavailable(crun_node, ds):
    n, c = crun_node, ds
    c.add_node({"role": "net"})
    c.apply(daemon_set(n, "net", {"app": "net"}, {"hostNetwork": True,
                                                  "nodeSelector": {"role": "net"}}))
    pod = wait_until(lambda: c.pods("app=net") and c.pods("app=net")[0], timeout=TIMEOUT,
                     what="a host-network daemon pod")
    keys = {(t.get("key"), t.get("effect")) for t in pod["spec"]["tolerations"]}
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") in keys
    assert set(DAEMON_TOLERATIONS) <= keys


def test_rolling_update_and_rollout(crun_node, ds):
    n, c = crun_node, ds
    c.apply(daemon_set(n, "roll", {"app": "roll"}))
    first = wait_until(lambda: [p for p in c.pods("app=roll") if running(p)],
                       timeout=TIMEOUT, what="the first pod running")[0]
    n.kubectl("rollout", "status", "ds/roll", "-n", c.ns, "--timeout=90s", timeout=120)
    hash1 = first["metadata"]["labels"]["controller-revision-hash"]

    n.kubectl("set", "env", "ds/roll", "-n", c.ns, "VERSION=2")
    out = n.kubectl("rollout", "status", "ds/roll", "-n", c.ns, "--timeout=120s",
                    timeout=150).stdout
    assert 'daemon set "roll" successfully rolled out' in out, out
    pods = wait_until(lambda: (lambda ps: len(ps) == 1 and running(ps[0]) and ps)(
        c.pods("app=roll")), timeout=TIMEOUT, what="one new pod running")
    labels = pods[0]["metadata"]["labels"]
    assert pods[0]["metadata"]["name"] != first["metadata"]["name"]
    assert labels["pod-template-generation"] == "2"
    assert labels["controller-revision-hash"] != hash1
    env = pods[0]["spec"]["containers"][0]["env"]
    assert {"name": "VERSION", "value": "2"} in env
    s = c.status("roll")
    assert (s["updatedNumberScheduled"], s["numberAvailable"], s["observedGeneration"]) == (1, 1, 2)

    # Two revisions, the newest numbered 2, both owned by the DaemonSet.
    revisions = c.get("controllerrevisions", "-l", "app=roll")["items"]
    numbers = sorted((r["revision"], r["metadata"]["labels"]["controller-revision-hash"])
                     for r in revisions)
    assert numbers == [(1, hash1), (2, labels["controller-revision-hash"])]
    for r in revisions:
        assert r["metadata"]["name"] == f"roll-{r['metadata']['labels']['controller-revision-hash']}"
        assert r["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    history = n.kubectl("rollout", "history", "ds/roll", "-n", c.ns).stdout
    rows = [line.split() for line in history.splitlines() if line.strip()]
    assert rows[0] == ['daemonset.apps/roll'], history
    assert rows[1] == ["REVISION", "CHANGE-CAUSE"], history
    assert [r[0] for r in rows[2:]] == ["1", "2"], history

    def deleted():
        return [m for t, r, m in events(c, "roll") if r == "SuccessfulDelete"]
    msgs = wait_until(deleted, timeout=TIMEOUT, what="a SuccessfulDelete event")
    assert f"Deleted pod: {first['metadata']['name']}" in msgs

    # Undo: kubectl patches the template back from revision 1, whose revision becomes the
    # newest (3) and whose hash the new pod carries.
    n.kubectl("rollout", "undo", "ds/roll", "-n", c.ns)
    n.kubectl("rollout", "status", "ds/roll", "-n", c.ns, "--timeout=120s", timeout=150)
    wait_until(lambda: [p for p in c.pods("app=roll")
                        if p["metadata"]["labels"]["controller-revision-hash"] == hash1
                        and running(p)], timeout=TIMEOUT, what="a pod of revision 1 again")
    revisions = c.get("controllerrevisions", "-l", "app=roll")["items"]
    numbers = {r["metadata"]["labels"]["controller-revision-hash"]: r["revision"]
               for r in revisions}
    assert numbers == {hash1: 3, labels["controller-revision-hash"]: 2}, numbers


def test_on_delete_waits_for_the_pod_to_be_deleted(crun_node, ds):
    n, c = crun_node, ds
    c.apply(daemon_set(n, "manual", {"app": "manual"}, updateStrategy={"type": "OnDelete"}))
    first = wait_until(lambda: [p for p in c.pods("app=manual") if running(p)],
                       timeout=TIMEOUT, what="the first pod running")[0]
    n.kubectl("set", "env", "ds/manual", "-n", c.ns, "VERSION=2")
    wait_until(lambda: c.status("manual").get("observedGeneration") == 2, timeout=TIMEOUT,
               what="generation 2 observed")
    s = c.status("manual")
    assert s.get("updatedNumberScheduled", 0) == 0, s
    assert [p["metadata"]["name"] for p in c.pods("app=manual")] == [first["metadata"]["name"]]
    n.kubectl("delete", "pod", first["metadata"]["name"], "-n", c.ns, "--wait=false")
    new = wait_until(lambda: [p for p in c.pods("app=manual")
                              if p["metadata"]["labels"]["pod-template-generation"] == "2"],
                     timeout=TIMEOUT, what="a pod of the new template")
    assert new[0]["metadata"]["name"] != first["metadata"]["name"]


def test_failed_pods_are_replaced(crun_node, ds):
    n, c = crun_node, ds
    node = c.add_node({"role": "flaky"})
    c.apply(daemon_set(n, "flaky", {"app": "flaky"}, {"nodeSelector": {"role": "flaky"}}))
    core = kubernetes.client.CoreV1Api(n.client)
    seen = []
    for _ in range(2):
        # Acting as the node's kubelet: the pod failed.
        pod = wait_until(lambda: [p for p in c.pods("app=flaky")
                                  if p["metadata"]["name"] not in seen
                                  and p["spec"].get("nodeName") == node],
                         timeout=TIMEOUT, what="a new pod bound to the node")[0]
        name = pod["metadata"]["name"]
        seen.append(name)
        core.patch_namespaced_pod_status(name, c.ns, {"status": {"phase": "Failed"}})
        wait_until(lambda: ("Warning", "FailedDaemonPod",
                            f"Found failed daemon pod {c.ns}/{name} on node {node}, "
                            "will try to kill it") in events(c, "flaky"),
                   timeout=TIMEOUT, what=f"a FailedDaemonPod event for {name}")
        wait_until(lambda: name not in {p["metadata"]["name"] for p in c.pods("app=flaky")},
                   timeout=TIMEOUT, what=f"{name} deleted")
    # The second failure was replaced too, after the node's backoff.
    wait_until(lambda: [p for p in c.pods("app=flaky") if p["metadata"]["name"] not in seen],
               timeout=TIMEOUT, what="a third pod")


def test_surge_starts_the_new_pod_before_the_old_one_goes(crun_node, ds):
    n, c = crun_node, ds
    c.apply(daemon_set(n, "surge", {"app": "surge"}, updateStrategy={
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}))
    old = wait_until(lambda: [p for p in c.pods("app=surge") if running(p)],
                     timeout=TIMEOUT, what="the first pod running")[0]["metadata"]["name"]
    n.kubectl("set", "env", "ds/surge", "-n", c.ns, "VERSION=2")
    core = kubernetes.client.CoreV1Api(n.client)

    def both_running():
        pods = core.list_namespaced_pod(c.ns, label_selector="app=surge").items
        names = {p.metadata.name for p in pods}
        gen2 = [p for p in pods if p.metadata.labels.get("pod-template-generation") == "2"
                and p.status.phase == "Running"]
        return old in names and gen2
    # The new pod runs while the old one is still there (not yet deleted, or terminating).
    wait_until(both_running, timeout=TIMEOUT, interval=0.1,
               what="the new pod running beside the old one")
    n.kubectl("rollout", "status", "ds/surge", "-n", c.ns, "--timeout=120s", timeout=150)
    wait_until(lambda: [p["metadata"]["name"] for p in c.pods("app=surge")] != [old]
               and len(c.pods("app=surge")) == 1, timeout=TIMEOUT, what="only the new pod left")
