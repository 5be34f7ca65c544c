#!/usr/bin/env python3
"""peapod node failover benchmark: how long a cluster takes to notice a dead node and run
its pod elsewhere, and how long a starting agent takes to make its node Ready.

Starts its own pieces on loopback, in a temporary directory, and stops them by PID: a
`docker-registry` with the busybox test image, `peapod server --node-monitor-grace-period
8s`, and two `peapod agent`s in the host network namespace (own bridge, pod CIDR and cgroup
root each). Per run:

  * agent start -> node Ready: from spawning `peapod agent` to its node's Ready=True seen
    through the API (both agents, every run);
  * kill -> replacement Running: a one-replica Deployment whose pod tolerates
    `node.kubernetes.io/unreachable` for 5 s runs on one node (the other cordoned while it
    is placed); that agent is killed with SIGKILL and the time to the replacement pod
    Running and Ready on the other node is measured, with the stages: node Unknown,
    unreachable taint, old pod deleted (taint-eviction), new pod Running.

Percentiles over the runs are printed and emitted as figures; nothing is asserted. The
floor is grace (8 s) + toleration (5 s); the monitor period (5 s) adds up to 5 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402
import harness  # noqa: E402
import images  # noqa: E402
import node as node_support  # noqa: E402

import kubernetes  # noqa: E402

GRACE = 8
# The agents run with their defaults: they renew their Lease every 2 s, so a healthy node
# never looks late to a server with an 8 s grace.
AGENT_ARGS: list[str] = []
TOLERATION = 5


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


def poll(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


def ready(core, name) -> str | None:
    try:
        n = core.read_node(name)
    except kubernetes.client.ApiException:
        return None
    c = next((c for c in n.status.conditions or [] if c.type == "Ready"), None)
    return c.status if c else None


def taints(core, name) -> set[tuple[str, str]]:
    return {(t.key, t.effect) for t in core.read_node(name).spec.taints or []}


def running_ready(p) -> bool:
    c = next((c for c in p.status.conditions or [] if c.type == "Ready"), None)
    return p.status.phase == "Running" and c is not None and c.status == "True"


def start_agent(core, agent) -> float:
    t0 = time.monotonic()
    agent.start()
    poll(lambda: ready(core, agent.name) == "True", 60, "node Ready")
    return time.monotonic() - t0


def kubectl(server, workdir, *args, input=None):
    import subprocess
    subprocess.run([str(harness.kubectl_bin()), "--kubeconfig", str(server.kubeconfig),
                    "--cache-dir", str(workdir / "kube-cache"), *args],
                   input=input, text=True, check=True, capture_output=True, timeout=120)


def one_run(core, apps, server, workdir, agents, image, run: int) -> dict[str, float]:
    a, b = agents
    ns = f"failover-{run}"
    core.create_namespace({"metadata": {"name": ns}})
    kubectl(server, workdir, "cordon", a.name)
    apps.create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "terminationGracePeriodSeconds": 1,
                     "tolerations": [{"key": "node.kubernetes.io/unreachable",
                                      "operator": "Exists", "effect": "NoExecute",
                                      "tolerationSeconds": TOLERATION}],
                     "containers": [{"name": "app", "image": image,
                                     "command": ["sleep", "3600"]}]}}}})

    def live():
        return [p for p in core.list_namespaced_pod(ns).items
                if p.metadata.deletion_timestamp is None]
    poll(lambda: [p for p in live() if running_ready(p) and p.spec.node_name == b.name], 90,
         "pod Running on b")
    kubectl(server, workdir, "uncordon", a.name)
    old = live()[0].metadata.name
    stages: dict[str, float] = {}
    b.kill()
    t0 = time.monotonic()
    while "running" not in stages:
        now = time.monotonic() - t0
        if now > 120:
            raise RuntimeError(f"no replacement within 120 s: {stages}")
        if "unknown" not in stages and ready(core, b.name) == "Unknown":
            stages["unknown"] = now
        if "tainted" not in stages and ("node.kubernetes.io/unreachable", "NoExecute") in \
                taints(core, b.name):
            stages["tainted"] = now
        pods = core.list_namespaced_pod(ns).items
        if "evicted" not in stages and any(p.metadata.name == old and
                                           p.metadata.deletion_timestamp for p in pods):
            stages["evicted"] = now
        if any(p.metadata.name != old and p.spec.node_name == a.name and running_ready(p)
               for p in pods):
            stages["running"] = now
        time.sleep(0.05)
    # Back to two Ready nodes; the evicted pod is finished by the returning agent.
    stages["agent_ready"] = start_agent(core, b)
    poll(lambda: not {("node.kubernetes.io/unreachable", "NoExecute")} & taints(core, b.name),
         30, "taint removed")
    apps.delete_namespaced_deployment("web", ns)
    core.delete_namespace(ns)
    poll(lambda: not [p for p in core.list_pod_for_all_namespaces().items
                      if p.metadata.namespace == ns], 120, "namespace emptied")
    return stages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", help="the peapod binary (default: $PEAPOD_BIN, else the debug build)")
    args = ap.parse_args()
    if args.bin:
        os.environ["PEAPOD_BIN"] = args.bin
    with tempfile.TemporaryDirectory(prefix="pp-failover-") as tmp:
        workdir = Path(tmp)
        (workdir / "registry").mkdir()
        reg = images.start_registry(workdir / "registry")
        agents: list[node_support.Agent] = []
        server = None
        try:
            images.push(reg.host_port, "e2e/busybox", "1.0", images.busybox_image())
            image = f"{reg.host_port}/e2e/busybox:1.0"
            (workdir / "server").mkdir()
            server = harness.Peapod(workdir / "server", extra_args=[
                "--node-monitor-grace-period", f"{GRACE}s"])
            server.start()
            client = kubernetes.config.new_client_from_config(config_file=str(server.kubeconfig))
            core = kubernetes.client.CoreV1Api(client)
            apps = kubernetes.client.AppsV1Api(client)
            starts: list[float] = []
            for name in ("a", "b"):
                (workdir / name).mkdir()
                agents.append(node_support.Agent(workdir / name, server, extra_args=AGENT_ARGS))
                starts.append(start_agent(core, agents[-1]))
            runs = []
            for i in range(args.runs):
                stages = one_run(core, apps, server, workdir, agents, image, i)
                starts.append(stages.pop("agent_ready"))
                runs.append(stages)
                print(f"run {i}: " + ", ".join(f"{k} {v:.1f}s" for k, v in stages.items()),
                      flush=True)
            print(f"\nnode failover, grace {GRACE}s, toleration {TOLERATION}s, "
                  f"{len(runs)} runs")
            for stage in ("unknown", "tainted", "evicted", "running"):
                vals = [r[stage] for r in runs if stage in r]
                print(f"  kill -> {stage:8s} p50 {pct(vals, 50):5.1f}s  p90 {pct(vals, 90):5.1f}s"
                      f"  max {max(vals):5.1f}s")
                figures.emit(f"failover/kill_to_{stage}/p50_s", pct(vals, 50), "lower")
            vals = [r["running"] for r in runs]
            figures.emit("failover/kill_to_replacement_running/p90_s", pct(vals, 90), "lower")
            print(f"  agent start -> node Ready ({len(starts)} starts): p50 "
                  f"{pct(starts, 50):.2f}s  p90 {pct(starts, 90):.2f}s  max {max(starts):.2f}s")
            figures.emit("failover/agent_start_to_ready/p50_s", pct(starts, 50), "lower")
            figures.emit("failover/agent_start_to_ready/p90_s", pct(starts, 90), "lower")
        finally:
            for a in agents:
                if a.proc is None:
                    try:
                        a.start()
                    except Exception:
                        pass
            if server is not None and server.kubeconfig is not None:
                try:
                    kubectl(server, workdir, "delete", "deploy", "--all", "-A")
                    kubectl(server, workdir, "delete", "pods", "--all", "-A",
                            "--grace-period=1", "--wait=true")
                except Exception as e:
                    print(f"cleanup: {e}", file=sys.stderr)
            for a in agents:
                a.stop()
            if server is not None:
                server.stop()
            reg.stop()


if __name__ == "__main__":
    main()
