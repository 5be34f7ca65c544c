"""Real pods on a real node (issue 3): the seed articles' pods reach Running through
`peapod up`, with an infra process, CNI networking, crun/runc containers, status, events
and graceful deletion. Every module runs once per runtime (crun, runc); after each test the
node must have given back every process, mount, netns, veth, IP lease and cgroup."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from helpers import rows_by_name, to_yaml, wait_until
import node as node_support


def pod(name: str, image: str, command: list[str] | None = None, **spec) -> dict:
    container = {"name": "app", "image": image}
    if command:
        container["command"] = command
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [container], **spec}}


def get_pod(cluster, ns: str, name: str) -> dict:
    return json.loads(cluster.kubectl("get", "pod", name, "-n", ns, "-o", "json").stdout)


def wait_phase(cluster, ns: str, name: str, phase: str, timeout: float = 60.0) -> dict:
    def check():
        p = get_pod(cluster, ns, name)
        return p if p.get("status", {}).get("phase") == phase else None
    return wait_until(check, timeout=timeout, interval=0.2, what=f"pod {name} {phase}")


def wait_ready(cluster, ns: str, name: str, timeout: float = 60.0) -> dict:
    def check():
        p = get_pod(cluster, ns, name)
        conds = {c["type"]: c["status"] for c in p.get("status", {}).get("conditions", [])}
        return p if conds.get("Ready") == "True" else None
    return wait_until(check, timeout=timeout, interval=0.2, what=f"pod {name} Ready")


def log_lines(cluster, p: dict, container: str = "app") -> list[str]:
    """What the container wrote, read from the node's CRI log file (kubectl logs is the
    streaming issue's)."""
    meta = p["metadata"]
    d = (cluster.node.data_dir / "logs" / "pods" /
         f"{meta['namespace']}_{meta['name']}_{meta['uid']}" / container)
    out = []
    for f in sorted(d.glob("*.log")) if d.exists() else []:
        for line in f.read_text(errors="replace").splitlines():
            parts = line.split(" ", 3)
            if len(parts) == 4:
                out.append(parts[3])
    return out


def wait_log(cluster, ns: str, name: str, predicate, container: str = "app",
             timeout: float = 30.0) -> list[str]:
    def check():
        lines = log_lines(cluster, get_pod(cluster, ns, name), container)
        return lines if predicate(lines) else None
    return wait_until(check, timeout=timeout, interval=0.2, what=f"log of {name}/{container}")


def test_seed_pod_runs_and_describe_shows_its_events(node, pod_ns):
    manifest = pod("alice-pod", node.images.web)
    node.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(manifest))
    p = wait_ready(node, pod_ns, "alice-pod")
    rows = rows_by_name(node.kubectl("get", "pod", "-n", pod_ns).stdout)
    assert rows["alice-pod"]["READY"] == "1/1"
    assert rows["alice-pod"]["STATUS"] == "Running"
    wide = rows_by_name(node.kubectl("get", "pod", "-n", pod_ns, "-o", "wide").stdout)
    ip = p["status"]["podIP"]
    assert wide["alice-pod"]["IP"] == ip
    assert wide["alice-pod"]["NODE"] == node.node.name
    assert ip.startswith(node.node.pod_cidr.rsplit(".", 1)[0] + ".")
    status = p["status"]["containerStatuses"][0]
    assert status["ready"] is True and status["started"] is True
    assert status["state"]["running"]["startedAt"]
    assert status["containerID"].startswith(f"{node.node.runtime}://")
    assert status["imageID"].startswith(node.images.host + "/e2e/web@sha256:")
    assert p["status"]["qosClass"] == "BestEffort"
    conds = {c["type"]: c["status"] for c in p["status"]["conditions"]}
    assert conds == {"PodScheduled": "True", "PodReadyToStartContainers": "True",
                     "Initialized": "True", "Ready": "True", "ContainersReady": "True"}

    def described():
        out = node.kubectl("describe", "pod", "alice-pod", "-n", pod_ns).stdout
        return out if all(r in out for r in ("Scheduled", "Pulling", "Pulled", "Created",
                                              "Started")) else None
    out = wait_until(described, timeout=20, what="describe shows the start events")
    assert f"Successfully assigned {pod_ns}/alice-pod to {node.node.name}" in out
    assert "Started container app" in out
    # The page is served from inside the pod, on its IP (the node reaches pods directly).
    import urllib.request
    with urllib.request.urlopen(f"http://{ip}:80/", timeout=5) as r:
        assert r.status == 200


def test_inside_a_pod_hostname_rootfs_processes_and_memory_limit(node, pod_ns):
    script = ("echo host=$(hostname); echo os=$(cat /etc/os-release 2>/dev/null | head -1);"
              " ls /bin/busybox && echo rootfs=image; echo procs=$(ps -o pid,comm | wc -l);"
              " ps -o pid,comm; sleep 3600")
    manifest = pod("inside", node.images.busybox, ["sh", "-c", script])
    manifest["spec"]["containers"][0]["resources"] = {"limits": {"memory": "64Mi", "cpu": "250m"}}
    node.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(manifest))
    p = wait_ready(node, pod_ns, "inside")
    lines = wait_log(node, pod_ns, "inside", lambda ls: any(l.startswith("procs=") for l in ls))
    assert "host=inside" in lines
    assert "rootfs=image" in lines
    # sh, ps (and the header line): the pod sees only its own processes, not the host's.
    ps_rows = [l for l in lines if l.strip() and l.strip()[0].isdigit()]
    assert 1 <= len(ps_rows) <= 3, lines
    assert p["status"]["qosClass"] == "Guaranteed"
    cid = p["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    uid = p["metadata"]["uid"].replace("-", "")
    root = node_support.cgroup_root(node.node.bridge)
    v1 = Path(f"/sys/fs/cgroup/memory/{root}/pod{uid}/{cid}/memory.limit_in_bytes")
    v2 = Path(f"/sys/fs/cgroup/{root}/pod{uid}/{cid}/memory.max")
    limit = v1 if v1.exists() else v2
    assert limit.read_text().strip() == str(64 * 1024 * 1024)


def test_containers_of_a_pod_share_ip_and_localhost_and_pods_reach_each_other(node, pod_ns):
    two = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two"},
        "spec": {"containers": [
            {"name": "web", "image": node.images.web},
            {"name": "client", "image": node.images.busybox, "command": ["sh", "-c",
             "echo ip=$(ip -4 -o addr show eth0 | awk '{print $4}'); "
             "until wget -qO- http://127.0.0.1:80/ >/dev/null; do sleep 0.2; done; "
             "echo localhost-ok; sleep 3600"]},
        ]},
    }
    node.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(two))
    p = wait_ready(node, pod_ns, "two")
    lines = wait_log(node, pod_ns, "two", lambda ls: "localhost-ok" in ls, container="client")
    assert f"ip={p['status']['podIP']}/24" in lines

    probe = pod("prober", node.images.busybox, ["sh", "-c",
                f"until wget -qO- http://{p['status']['podIP']}:80/ >/dev/null; do sleep 0.2;"
                " done; echo reached; sleep 3600"])
    node.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(probe))
    q = wait_ready(node, pod_ns, "prober")
    assert q["status"]["podIP"] != p["status"]["podIP"]
    wait_log(node, pod_ns, "prober", lambda ls: "reached" in ls)


def test_containers_share_an_empty_dir_volume(node, pod_ns):
    shared = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shared"},
        "spec": {
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [
                {"name": "writer", "image": node.images.busybox,
                 "command": ["sh", "-c", "echo hello from $(hostname) > /data/note; sleep 3600"],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "reader", "image": node.images.busybox,
                 "command": ["sh", "-c", "until [ -s /shared/note ]; do sleep 0.1; done;"
                             " cat /shared/note; sleep 3600"],
                 "volumeMounts": [{"name": "data", "mountPath": "/shared"}]},
            ]},
    }
    node.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(shared))
    wait_ready(node, pod_ns, "shared")
    wait_log(node, pod_ns, "shared", lambda ls: "hello from shared" in ls, container="reader")


def test_restart_policy_never_completed_and_error(node, pod_ns):
    ok = pod("ok", node.images.busybox, ["sh", "-c", "echo done"], restartPolicy="Never")
    bad = pod("bad", node.images.busybox, ["sh", "-c", "exit 3"], restartPolicy="Never")
    node.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(ok, bad))
    p = wait_phase(node, pod_ns, "ok", "Succeeded")
    t = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (t["exitCode"], t["reason"]) == (0, "Completed")
    q = wait_phase(node, pod_ns, "bad", "Failed")
    t = q["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (t["exitCode"], t["reason"]) == (3, "Error")
    rows = rows_by_name(node.kubectl("get", "pods", "-n", pod_ns).stdout)
    assert rows["ok"]["STATUS"] == "Completed" and rows["ok"]["READY"] == "0/1"
    assert rows["bad"]["STATUS"] == "Error"
    # A finished pod gives its sandbox back while the object stays.
    assert p["status"]["podIP"]


def test_restart_policy_always_restarts_an_exited_container(node, pod_ns):
    manifest = pod("again", node.images.busybox, ["sh", "-c", "echo run; sleep 0.5; exit 1"])
    node.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(manifest))

    def restarted():
        s = get_pod(node, pod_ns, "again")["status"].get("containerStatuses", [{}])[0]
        return s if s.get("restartCount", 0) >= 1 else None
    s = wait_until(restarted, timeout=60, interval=0.2, what="a restart")
    assert s["lastState"]["terminated"]["exitCode"] == 1


def test_graceful_deletion_term_trap_and_kill_after_grace(node, pod_ns, tmp_path):
    # The pod's logs go with the pod, so the trap reports through a hostPath the test reads.
    out = tmp_path / "out"
    trap = pod("trapper", node.images.busybox, ["sh", "-c",
               "trap 'echo got TERM, shutting down > /out/trap; exit 0' TERM; echo up;"
               " while true; do sleep 0.1; done"], terminationGracePeriodSeconds=30,
               volumes=[{"name": "out", "hostPath": {"path": str(out),
                                                      "type": "DirectoryOrCreate"}}])
    trap["spec"]["containers"][0]["volumeMounts"] = [{"name": "out", "mountPath": "/out"}]
    stubborn = pod("stubborn", node.images.busybox, ["sh", "-c",
                   "trap '' TERM; echo up; while true; do sleep 0.1; done"],
                   terminationGracePeriodSeconds=2)
    node.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(trap, stubborn))
    wait_ready(node, pod_ns, "trapper")
    wait_ready(node, pod_ns, "stubborn")
    wait_log(node, pod_ns, "trapper", lambda ls: "up" in ls)

    started = time.monotonic()
    node.kubectl("delete", "pod", "trapper", "-n", pod_ns, timeout=60)
    # kubectl delete returns once the agent confirmed; the trap ran before that.
    assert time.monotonic() - started < 25
    assert (out / "trap").read_text() == "got TERM, shutting down\n"

    started = time.monotonic()
    node.kubectl("delete", "pod", "stubborn", "-n", pod_ns, timeout=60)
    elapsed = time.monotonic() - started
    assert 2.0 <= elapsed < 20, elapsed


def test_force_delete_removes_at_once_and_the_agent_still_cleans_up(node, pod_ns):
    manifest = pod("forced", node.images.busybox, ["sh", "-c", "trap '' TERM; sleep 3600"])
    node.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(manifest))
    wait_ready(node, pod_ns, "forced")
    node.kubectl("delete", "pod", "forced", "-n", pod_ns, "--grace-period=0", "--force")
    out = node.kubectl("get", "pod", "forced", "-n", pod_ns, check=False)
    assert out.returncode != 0 and "NotFound" in out.stderr
    node.node.wait_clean()


def test_agent_kill_9_loses_no_pod(node, pod_ns, tmp_path):
    manifest = pod("survivor", node.images.busybox, ["sh", "-c",
                   "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"])
    # Exits 4 when the test drops a file in its hostPath: an exit while the agent is away.
    gate = tmp_path / "gate"
    finisher = pod("finisher", node.images.busybox, ["sh", "-c",
                   "until [ -e /gate/go ]; do sleep 0.1; done; exit 4"], restartPolicy="Never",
                   volumes=[{"name": "gate", "hostPath": {"path": str(gate),
                                                           "type": "DirectoryOrCreate"}}])
    finisher["spec"]["containers"][0]["volumeMounts"] = [{"name": "gate", "mountPath": "/gate"}]
    node.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(manifest, finisher))
    before = wait_ready(node, pod_ns, "survivor")
    wait_ready(node, pod_ns, "finisher")
    cid = before["status"]["containerStatuses"][0]["containerID"]
    node.node.server.kill()
    (gate / "go").write_text("")
    node.node.server.start(timeout=90)
    node.close()
    after = wait_ready(node, pod_ns, "survivor")
    s = after["status"]["containerStatuses"][0]
    assert s["containerID"] == cid and s["restartCount"] == 0
    n = len(log_lines(node, after))
    wait_log(node, pod_ns, "survivor", lambda ls: len(ls) > n + 3)
    done = wait_phase(node, pod_ns, "finisher", "Failed")
    assert done["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 4
