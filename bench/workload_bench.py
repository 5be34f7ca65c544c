#!/usr/bin/env python3
"""peapod workload benchmark: a controller scaled from 0 to N pods on one node and back.

Starts its own pieces on loopback, in a temporary directory, and stops them by PID: a
`docker-registry` with the busybox-static test image, `peapod server` (API server, scheduler
and controllers in one process) and `peapod agent` as a separate process, so that the
control plane's CPU time and the node's are read apart. Then, with the image cached:

  * scale up: the workload's replicas set 0 -> N through the `scale` subresource; for each
    pod, the time from that request to the pod's Ready (one watch), p50/p99, and the time
    until all N are Ready;
  * scale down: replicas N -> 0; the time until every pod is gone from the watch;
  * CPU seconds (user + system, /proc/<pid>/stat) the server and the agent spent on each.

The workload is a Deployment when the Deployment controller runs (it makes a ReplicaSet
for a new Deployment), else a ReplicaSet; the output says which. With a Deployment, a
rollout follows:

  * rolling update: a Deployment of `--rollout-replicas` (20) Ready pods, maxSurge and
    maxUnavailable 25 %, gets a new template (what `kubectl set env` does); for each new
    pod, the time from that request to its Ready, p50, and the time until the rollout is
    complete (every new pod Ready, every old one gone).

Numbers are printed, never asserted. Aim (issue 14): 100 replicas Ready in <= 10 s on 2
cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402
import harness  # noqa: E402
import onenode  # noqa: E402
from pod_startup import pct  # noqa: E402

import kubernetes  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
LABELS = {"app": "bench-web"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class PodWatch:
    """One watch over the namespace: when each pod was first Ready, and when it was deleted."""

    def __init__(self, core: kubernetes.client.CoreV1Api, ns: str):
        self.ready: dict[str, float] = {}
        self.gone: dict[str, float] = {}
        self.present: set[str] = set()
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self._run, args=(core, ns), daemon=True)
        self.thread.start()

    def _run(self, core, ns):
        try:
            self._watch(core, ns)
        except Exception:  # noqa: BLE001 - the server stopping ends the stream
            if not self.stop:
                raise

    def _watch(self, core, ns):
        w = kubernetes.watch.Watch()
        for ev in w.stream(core.list_namespaced_pod, ns, timeout_seconds=3600):
            if self.stop:
                w.stop()
                return
            pod = ev["object"]
            name = pod.metadata.name
            now = time.monotonic()
            with self.lock:
                if ev["type"] == "DELETED":
                    self.present.discard(name)
                    self.gone.setdefault(name, now)
                    continue
                self.present.add(name)
                conds = (pod.status.conditions or []) if pod.status else []
                if any(c.type == "Ready" and c.status == "True" for c in conds):
                    self.ready.setdefault(name, now)

    def wait(self, done, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if done(self):
                    return
            time.sleep(0.02)
        raise TimeoutError("the pods did not reach the expected state in time")


def workload_body(kind: str, name: str, image: str) -> dict:
    body = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "web", "image": image,
                                    "command": ["sleep", "3600"]}],
                },
            },
        },
    }
    return body


def deployment_controller_runs(apps: kubernetes.client.AppsV1Api, ns: str, image: str) -> bool:
    """Whether a new Deployment gets its ReplicaSet within 10 s."""
    body = workload_body("Deployment", "probe", image)
    body["spec"]["selector"] = {"matchLabels": {"app": "probe"}}
    body["spec"]["template"]["metadata"]["labels"] = {"app": "probe"}
    apps.create_namespaced_deployment(ns, body)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if apps.list_namespaced_replica_set(ns, label_selector="app=probe").items:
                return True
            time.sleep(0.2)
        return False
    finally:
        apps.delete_namespaced_deployment("probe", ns, propagation_policy="Background")


def delete_namespace(node: onenode.OneNode, ns: str = "bench") -> None:
    """Deletes the bench's namespace and waits for its pods to go, so the agent stops clean."""
    core = kubernetes.client.CoreV1Api(node.api)
    core.delete_namespace(ns)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and core.list_namespaced_pod(ns).items:
        time.sleep(0.2)


def rolling_update(apps: kubernetes.client.AppsV1Api, watch: PodWatch, ns: str, n: int,
                   pids: tuple[int, int]):
    """The Deployment `web` at `n` Ready pods gets a new template; returns the new pods'
    times to Ready (ms, sorted), the time until the rollout is complete (ms: every new pod
    Ready, every old one gone) and the server's and agent's CPU seconds meanwhile."""
    server_pid, agent_pid = pids
    apps.patch_namespaced_deployment("web", ns, {"spec": {
        "replicas": n,
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}})
    watch.wait(lambda w: len(w.present) == n and len(w.ready.keys() & w.present) == n, timeout=600)
    with watch.lock:
        old = set(watch.present)
    cpu0 = (cpu_seconds(server_pid), cpu_seconds(agent_pid))
    t0 = time.monotonic()
    apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "env": [{"name": "ROUND", "value": "2"}]}]}}}})

    def complete(w: PodWatch) -> bool:
        new = w.present - old
        return not (w.present & old) and len(new) == n and len(w.ready.keys() & new) == n
    watch.wait(complete, timeout=600)
    done = (time.monotonic() - t0) * 1000
    with watch.lock:
        new = sorted((watch.ready[p] - t0) * 1000 for p in watch.present - old)
    cpu1 = (cpu_seconds(server_pid), cpu_seconds(agent_pid))
    return new, done, (cpu1[0] - cpu0[0], cpu1[1] - cpu0[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(harness.peapod_bin()))
    ap.add_argument("--runtime", default="crun")
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--rollout-replicas", type=int, default=20)
    args = ap.parse_args()
    binary = Path(args.bin)

    ns = "bench"
    with onenode.one_node(binary, args.runtime, "workload-bench-", cleanup=delete_namespace) as node:
        core = kubernetes.client.CoreV1Api(node.api)
        apps = kubernetes.client.AppsV1Api(node.api)
        image, agent, server = node.image, node.agent, node.server
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        watch = PodWatch(core, ns)

        kind = "Deployment" if deployment_controller_runs(apps, ns, image) else "ReplicaSet"
        create, scale = {
            "Deployment": (apps.create_namespaced_deployment, apps.patch_namespaced_deployment_scale),
            "ReplicaSet": (apps.create_namespaced_replica_set, apps.patch_namespaced_replica_set_scale),
        }[kind]
        create(ns, workload_body(kind, "web", image))

        # Warm: the image is pulled once, so the run measures a cached image.
        scale("web", ns, {"spec": {"replicas": 1}})
        watch.wait(lambda w: len(w.ready) >= 1, timeout=120)
        scale("web", ns, {"spec": {"replicas": 0}})
        watch.wait(lambda w: not w.present, timeout=120)
        with watch.lock:
            watch.ready.clear()
            watch.gone.clear()

        n = args.replicas
        cpu0 = (cpu_seconds(server.proc.pid), cpu_seconds(agent.pid))
        t0 = time.monotonic()
        scale("web", ns, {"spec": {"replicas": n}})
        watch.wait(lambda w: len(w.ready) >= n, timeout=600)
        with watch.lock:
            up = sorted((t - t0) * 1000 for t in watch.ready.values())
        cpu1 = (cpu_seconds(server.proc.pid), cpu_seconds(agent.pid))

        t1 = time.monotonic()
        scale("web", ns, {"spec": {"replicas": 0}})
        watch.wait(lambda w: not w.present and len(w.gone) >= n, timeout=600)
        with watch.lock:
            down = sorted((t - t1) * 1000 for t in watch.gone.values())
        cpu2 = (cpu_seconds(server.proc.pid), cpu_seconds(agent.pid))
        rollout = rolling_update(apps, watch, ns, args.rollout_replicas,
                                 (server.proc.pid, agent.pid)) if kind == "Deployment" else None
        watch.stop = True

        print(f"\n{kind} scaled 0 -> {n} -> 0 on one node, image cached, runtime {args.runtime}, "
              f"{os.cpu_count()} cores")
        print(f"{'measure':<36}{'p50 ms':>10}{'p99 ms':>10}{'all ms':>10}{'server CPU s':>14}{'agent CPU s':>13}")
        print(f"{'scale up: request -> pod Ready':<36}{pct(up, 50):>10.0f}{pct(up, 99):>10.0f}{up[-1]:>10.0f}"
              f"{cpu1[0] - cpu0[0]:>14.2f}{cpu1[1] - cpu0[1]:>13.2f}")
        print(f"{'scale down: request -> pod gone':<36}{pct(down, 50):>10.0f}{pct(down, 99):>10.0f}{down[-1]:>10.0f}"
              f"{cpu2[0] - cpu1[0]:>14.2f}{cpu2[1] - cpu1[1]:>13.2f}")
        if rollout is not None:
            new, complete, cpu = rollout
            m = args.rollout_replicas
            print(f"{f'rolling update of {m}: -> new Ready':<36}{pct(new, 50):>10.0f}{pct(new, 99):>10.0f}"
                  f"{new[-1]:>10.0f}{cpu[0]:>14.2f}{cpu[1]:>13.2f}")
            print(f"{f'rolling update of {m}: -> complete':<36}{'':>10}{'':>10}{complete:>10.0f}")
            figures.emit(f"workload/deployment/rollout {m}/new pod Ready p50_ms", pct(new, 50), "lower")
            figures.emit(f"workload/deployment/rollout {m}/complete ms", complete, "lower")
            figures.emit(f"workload/deployment/rollout {m}/server CPU s", cpu[0], "lower")
        base = f"workload/{kind.lower()}/{n}"
        figures.emit(f"{base}/scale up p50_ms", pct(up, 50), "lower")
        figures.emit(f"{base}/scale up all Ready ms", up[-1], "lower")
        figures.emit(f"{base}/scale down all gone ms", down[-1], "lower")
        figures.emit(f"{base}/scale up server CPU s", cpu1[0] - cpu0[0], "lower")
        figures.emit(f"{base}/scale up agent CPU s", cpu1[1] - cpu0[1], "lower")
        return 0


if __name__ == "__main__":
    sys.exit(main())
