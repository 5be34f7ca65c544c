"""`peapod agent` as its own process joining `peapod server` (the multi-node shape): it
registers, runs pods, and after a kill -9 during which a pod was force-deleted, the restarted
agent releases everything that pod held (processes, mounts, netns, veth, IP lease, cgroup)."""

from __future__ import annotations


import node as node_support
from helpers import to_yaml, wait_until
from test_node_pods import pod, wait_ready


def test_agent_joins_and_cleans_up_a_pod_deleted_while_it_was_down(split):
    ns = split.create_namespace()
    split.kubectl("get", "node", split.agent.name)
    p = pod("orphan", split.images.busybox, ["sleep", "3600"])
    keep = pod("keeper", split.images.busybox, ["sleep", "3600"])
    split.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(p, keep))
    wait_ready(split, ns, "orphan")
    before = wait_ready(split, ns, "keeper")
    assert node_support.leaks(split.agent.data_dir, split.agent.bridge)  # pods hold things

    split.agent.kill()
    split.kubectl("delete", "pod", "orphan", "-n", ns, "--grace-period=0", "--force")
    split.agent.start()

    # The keeper is re-adopted untouched; everything the orphan held is given back.
    def orphan_released():
        held = node_support.leaks(split.agent.data_dir, split.agent.bridge)
        netns = [x for x in held if x.startswith("netns")]
        return len(netns) == 1
    wait_until(orphan_released, timeout=30, what="the force-deleted pod's sandbox released")
    after = wait_ready(split, ns, "keeper")
    assert (after["status"]["containerStatuses"][0]["containerID"]
            == before["status"]["containerStatuses"][0]["containerID"])
    split.kubectl("delete", "pod", "keeper", "-n", ns, "--grace-period=1")
    node_support.wait_clean(split.agent.data_dir, split.agent.bridge)


def test_probes_resume_on_re_adopted_containers_without_a_readiness_flap(split):
    """After a kill -9 of the agent, a re-adopted container keeps the readiness it had (no
    Ready=False blip while its readiness probe runs again) and its liveness probe still
    restarts it."""
    from kubernetes import client, watch

    ns = split.create_namespace()
    script = ("touch /tmp/ready /tmp/alive; while [ ! -e /tmp/die ]; do sleep 0.2; done; "
              "rm /tmp/alive; sleep 3600")
    p = pod("probed", split.images.busybox, ["sh", "-c", script])
    c = p["spec"]["containers"][0]
    # Each readiness run leaves a line in /tmp/runs, so the test can count them.
    c["readinessProbe"] = {"exec": {"command": ["sh", "-c", "echo >> /tmp/runs; cat /tmp/ready"]},
                           "periodSeconds": 1}
    c["livenessProbe"] = {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1,
                          "failureThreshold": 1, "terminationGracePeriodSeconds": 1}
    split.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(p))
    before = wait_ready(split, ns, "probed")

    def runs() -> int:
        out = split.kubectl("exec", "probed", "-n", ns, "--", "wc", "-l", "/tmp/runs").stdout
        return int(out.split()[0])

    split.agent.kill()
    split.agent.start()
    # Three runs of the readiness probe on the re-adopted container.
    runs_at_restart = runs()
    wait_until(lambda: runs() >= runs_at_restart + 3, timeout=20, interval=0.3,
               what="readiness probe runs after the restart")
    after = wait_ready(split, ns, "probed")
    assert (after["status"]["containerStatuses"][0]["containerID"]
            == before["status"]["containerStatuses"][0]["containerID"])
    mark = int(after["metadata"]["resourceVersion"])
    split.kubectl("exec", "probed", "-n", ns, "--", "touch", "/tmp/die")

    def restarted():
        s = split.kubectl("get", "pod", "probed", "-n", ns, "-o",
                          "jsonpath={.status.containerStatuses[0].restartCount}").stdout
        return s.strip() not in ("", "0")
    wait_until(restarted, timeout=30, interval=0.3, what="liveness restart after re-adoption")
    # Every change of the pod from before the kill up to the deliberate liveness failure,
    # replayed by a watch from the old resourceVersion: Ready stayed True throughout.
    core = client.CoreV1Api(split.client)
    seen = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_pod, ns, timeout_seconds=5,
                       resource_version=before["metadata"]["resourceVersion"]):
        obj = ev["object"]
        rv = int(obj.metadata.resource_version)
        if rv > mark:
            w.stop()
            break
        conds = {x.type: x.status for x in obj.status.conditions or []}
        seen.append((rv, conds.get("Ready")))
    assert [r for _, r in seen if r != "True"] == [], seen
    split.kubectl("delete", "pod", "probed", "-n", ns, "--grace-period=1")
    node_support.wait_clean(split.agent.data_dir, split.agent.bridge)


def test_a_post_start_hook_cut_short_by_an_agent_kill9_is_not_run_again(split):
    """A container whose postStart hook was running when the agent died counts as started
    once a new agent adopts it (the kubelet does not run a hook twice either)."""
    ns = split.create_namespace()
    p = pod("hooked", split.images.busybox, ["sleep", "3600"])
    p["spec"]["containers"][0]["lifecycle"] = {"postStart": {"exec": {"command": [
        "sh", "-c", "echo hook-ran > /proc/1/fd/1; echo ran >> /tmp/hook-runs; sleep 3600"]}}}
    split.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(p))

    def state():
        out = split.kubectl("get", "pod", "hooked", "-n", ns, "-o",
                            "jsonpath={.status.containerStatuses[0].state}").stdout
        return out

    def hook_lines() -> list[str]:
        # The container's log on the node (kubectl logs/exec want a running container).
        uid = split.kubectl("get", "pod", "hooked", "-n", ns, "-o",
                            "jsonpath={.metadata.uid}").stdout
        d = split.agent.data_dir / "logs" / "pods" / f"{ns}_hooked_{uid}" / "app"
        return [line.split(" ", 3)[-1] for f in sorted(d.glob("*.log"))
                for line in f.read_text().splitlines()] if d.exists() else []
    wait_until(lambda: "hook-ran" in hook_lines(), timeout=30, interval=0.3,
               what="the hook running")
    assert "ContainerCreating" in state()

    split.agent.kill()
    split.agent.start()
    after = wait_ready(split, ns, "hooked")
    s = after["status"]["containerStatuses"][0]
    assert s["started"] is True and s["restartCount"] == 0
    assert split.kubectl("exec", "hooked", "-n", ns, "--", "cat",
                         "/tmp/hook-runs").stdout.strip() == "ran"
    assert hook_lines().count("hook-ran") == 1
    split.kubectl("delete", "pod", "hooked", "-n", ns, "--grace-period=1")
    node_support.wait_clean(split.agent.data_dir, split.agent.bridge)
