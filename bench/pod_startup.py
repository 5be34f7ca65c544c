#!/usr/bin/env python3
"""peapod pod startup benchmark: create -> Ready observed through a watch, image cached.

Starts its own pieces on loopback, in a temporary directory, and stops them by PID: a
`docker-registry` with the busybox-static test image, `peapod server`, and `peapod agent`
as a separate process (so the agent's own RSS can be read). Then:

  * sequential: N pods one after another, each create -> Ready (watch event) latency;
  * burst: B pods created at once by B threads, each create -> Ready, and the whole burst;
  * stages: the agent's StartupTimeline events split each start (sandbox = cgroup + netns +
    CNI + infra process, image, started, ready), medians over the run;
  * footprint: RSS of the per-pod helpers (pause + monitor) and of the agent, idle and with
    P pods running.

When podman is installed, `podman kube play` of the same pod runs in the same run as the
peer (time until the command returns with the container running). Numbers are printed,
never asserted. Aim: p50 <= 150 ms, p99 <= 400 ms, helpers <= 2 MiB per pod.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402
import harness  # noqa: E402
import onenode  # noqa: E402

import kubernetes  # noqa: E402


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class ReadyWatch:
    """One watch over the namespace; records when each pod first reports Ready."""

    def __init__(self, core: kubernetes.client.CoreV1Api, ns: str):
        self.ready: dict[str, float] = {}
        self.cond = threading.Condition()
        self.stop = False
        self.thread = threading.Thread(target=self._run, args=(core, ns), daemon=True)
        self.thread.start()

    def _run(self, core, ns):
        try:
            self._watch(core, ns)
        except Exception:  # noqa: BLE001 - the server going away at the end of the run
            if not self.stop:
                raise

    def _watch(self, core, ns):
        w = kubernetes.watch.Watch()
        while not self.stop:
            for ev in w.stream(core.list_namespaced_pod, ns, timeout_seconds=60):
                p = ev["object"]
                conds = (p.status.conditions or []) if p.status else []
                if any(c.type == "Ready" and c.status == "True" for c in conds):
                    with self.cond:
                        self.ready.setdefault(p.metadata.name, time.monotonic())
                        self.cond.notify_all()
                if self.stop:
                    break

    def wait(self, names: list[str], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(n in self.ready for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"pods not Ready: {[n for n in names if n not in self.ready]}")
                self.cond.wait(left)


def pod_body(name: str, image: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "app", "image": image, "command": ["sleep", "3600"]}]}}


def create_timed(core, ns: str, name: str, image: str, started: dict) -> None:
    started[name] = time.monotonic()
    core.create_namespaced_pod(ns, pod_body(name, image))


def stage_medians(core, ns: str, pods: list[str], timeout: float = 10.0) -> dict[str, float]:
    """Median per start stage over the StartupTimeline events of `pods`, once each has one
    (the agent records it just after Ready), or of those that arrived by the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        timelines = [ev for ev in core.list_namespaced_event(ns).items
                     if ev.reason == "StartupTimeline" and ev.involved_object.name in pods]
        if len(timelines) >= len(pods) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    stages: dict[str, list[float]] = {}
    for ev in timelines:
        for stage, ms in re.findall(r"([\w:]+) \+(\d+)ms", ev.message or ""):
            stage = stage.split(":")[0]
            stages.setdefault(stage, []).append(float(ms))
    return {k: statistics.median(v) for k, v in stages.items()}


def delete_all(core, ns: str, watch_gone_timeout: float = 120.0) -> None:
    core.delete_collection_namespaced_pod(ns, grace_period_seconds=1)
    deadline = time.monotonic() + watch_gone_timeout
    while core.list_namespaced_pod(ns).items and time.monotonic() < deadline:
        time.sleep(0.2)


def podman_peer(image: str, runs: int, tmp: Path) -> tuple[list[float] | None, str]:
    """`podman kube play` of the same pod, timed until it returns with the pod running.
    crun refuses this machine's hybrid cgroups, so podman falls back to runc there, as
    peapod's own crun does not need to (it hides the v2 mount)."""
    podman = shutil.which("podman")
    if not podman:
        return None, "podman not installed"
    # podman asks for rlimits above what root may raise on some machines (nofile capped at
    # 20000 here); give its containers this process's own limits instead.
    import resource
    conf = tmp / "containers.conf"
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    conf.write_text("[containers]\ndefault_ulimits = [\"nofile=%d:%d\", \"nproc=%d:%d\"]\n"
                    % (*nofile, *nproc))
    os.environ["CONTAINERS_CONF"] = str(conf)
    pulled = subprocess.run([podman, "pull", "--tls-verify=false", "-q", image],
                            capture_output=True, text=True)
    if pulled.returncode != 0:
        return None, f"podman pull failed: {pulled.stderr.strip()[:200]}"
    last_error = ""
    for runtime in ([], ["--runtime", "runc"]):
        out = []
        try:
            for i in range(runs):
                spec = tmp / f"peer-{i}.yaml"
                spec.write_text(json.dumps(pod_body(f"peer-{i}", image)))
                t0 = time.monotonic()
                cp = subprocess.run([podman, *runtime, "kube", "play", "--tls-verify=false",
                                     str(spec)], capture_output=True, text=True)
                elapsed = (time.monotonic() - t0) * 1000
                subprocess.run([podman, *runtime, "kube", "down", str(spec)], capture_output=True)
                if cp.returncode != 0:
                    raise RuntimeError(cp.stderr.strip()[:200])
                out.append(elapsed)
            return out, "podman " + (" ".join(runtime) or "default runtime")
        except RuntimeError as e:
            last_error = str(e)
    return None, f"podman kube play failed: {last_error}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(harness.peapod_bin()))
    ap.add_argument("--runtime", default="crun")
    ap.add_argument("--sequential", type=int, default=30)
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--footprint-pods", type=int, default=100)
    args = ap.parse_args()
    binary = Path(args.bin)

    ns = "bench"
    with onenode.one_node(binary, args.runtime, "pod-bench-",
                          cleanup=lambda node: delete_all(
                              kubernetes.client.CoreV1Api(node.api), ns,
                              watch_gone_timeout=300)) as node:
        core = kubernetes.client.CoreV1Api(node.api)
        image, agent, tmp = node.image, node.agent, node.tmp
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        watch = ReadyWatch(core, ns)
        idle_agent = rss_kib(agent.pid)

        # Warm: the image is pulled once; everything after measures a cached image.
        started: dict[str, float] = {}
        create_timed(core, ns, "warm", image, started)
        watch.wait(["warm"])
        delete_all(core, ns)

        seq = []
        for i in range(args.sequential):
            name = f"seq-{i}"
            create_timed(core, ns, name, image, started)
            watch.wait([name])
            seq.append((watch.ready[name] - started[name]) * 1000)
        stages = stage_medians(core, ns, [f"seq-{i}" for i in range(args.sequential)])
        delete_all(core, ns)

        names = [f"burst-{i}" for i in range(args.burst)]
        threads = [threading.Thread(target=create_timed, args=(core, ns, n, image, started)) for n in names]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        watch.wait(names, timeout=300)
        burst_total = (max(watch.ready[n] for n in names) - t0) * 1000
        burst = [(watch.ready[n] - started[n]) * 1000 for n in names]
        burst_stages = stage_medians(core, ns, names)
        delete_all(core, ns)

        names = [f"fp-{i}" for i in range(args.footprint_pods)]
        for n in names:
            create_timed(core, ns, n, image, started)
        watch.wait(names, timeout=600)
        pids = onenode.helper_pids(tmp / "agent" / "data")
        helpers_kib = sum(rss_kib(p) for p in pids)
        busy_agent = rss_kib(agent.pid)
        delete_all(core, ns, watch_gone_timeout=600)
        watch.stop = True

        peer, peer_note = podman_peer(image, min(args.sequential, 10), tmp)

        print(f"\npod startup, create -> Ready via watch, image cached, runtime {args.runtime}, "
              f"{os.cpu_count()} cores")
        print(f"{'measure':<44}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
        print(f"{'sequential (' + str(len(seq)) + ' pods)':<44}{pct(seq, 50):>10.0f}{pct(seq, 99):>10.0f}{max(seq):>10.0f}")
        print(f"{'burst of ' + str(len(burst)) + ' (each pod)':<44}{pct(burst, 50):>10.0f}{pct(burst, 99):>10.0f}{max(burst):>10.0f}")
        print(f"{'burst of ' + str(len(burst)) + ' (all Ready)':<44}{burst_total:>10.0f}")
        if peer is not None:
            print(f"{'podman kube play (peer, ' + str(len(peer)) + ' runs)':<44}{pct(peer, 50):>10.0f}{pct(peer, 99):>10.0f}{max(peer):>10.0f}")
            print(f"  ({peer_note}; kube play returns once the container runs, no readiness)")
        else:
            print(f"podman kube play (peer): {peer_note}")
        print("\nstages (median ms since the node accepted the pod):")
        print(f"  {'stage':<10}{'sequential':>12}{'burst':>10}")
        for stage in ("network", "sandbox", "image", "started", "ready"):
            if stage in stages:
                print(f"  {stage:<10}{stages[stage]:>12.0f}{burst_stages.get(stage, float('nan')):>10.0f}")
        n = max(1, len(names))
        print(f"\nfootprint with {len(names)} pods: helpers {len(pids)} processes, "
              f"{helpers_kib / n / 1024:.2f} MiB RSS per pod; agent RSS idle "
              f"{idle_agent / 1024:.1f} MiB, with {len(names)} pods {busy_agent / 1024:.1f} MiB")
        base = f"startup/{args.runtime}"
        figures.emit(f"{base}/sequential/p50_ms", pct(seq, 50), "lower")
        figures.emit(f"{base}/sequential/p99_ms", pct(seq, 99), "lower")
        figures.emit(f"{base}/burst/p50_ms", pct(burst, 50), "lower")
        figures.emit(f"{base}/burst/p99_ms", pct(burst, 99), "lower")
        figures.emit(f"{base}/burst all Ready/ms", burst_total, "lower")
        figures.emit(f"{base}/helpers RSS per pod/MiB", helpers_kib / n / 1024, "lower")
        figures.emit(f"{base}/agent RSS idle/MiB", idle_agent / 1024, "lower")
        figures.emit(f"{base}/agent RSS busy/MiB", busy_agent / 1024, "lower")
        return 0


if __name__ == "__main__":
    sys.exit(main())
