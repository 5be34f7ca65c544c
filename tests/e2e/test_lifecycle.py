"""Pod lifecycle fidelity (issue 5), seed 004's state tables row by row: CrashLoopBackOff
with upstream's restart delays, init containers in order (Init:N/M, PodInitializing,
Init:Error, Init:CrashLoopBackOff), native sidecars beside the app and after it on
deletion, a Job-like pod with a sidecar that completes, and the pod cgroup (requests,
limits, the per-pod process cap that keeps a fork bomb inside its pod)."""

from __future__ import annotations

import datetime
from pathlib import Path

import kubernetes

from helpers import rows_by_name, to_yaml, wait_until
import node as node_support
from test_node_pods import get_pod, pod, wait_phase, wait_ready


def stamp(s: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def status_column(line: str) -> str:
    """STATUS of a `kubectl get pod` row (NAME READY STATUS RESTARTS AGE)."""
    return line.split()[2]


def init_status(p: dict, name: str) -> dict:
    return next(s for s in p["status"].get("initContainerStatuses", []) if s["name"] == name)


def pod_cgroup_file(n, p: dict, v1: str, v2: str) -> Path:
    """A file of the pod's cgroup: `v1` is `<controller>/<file>`, `v2` the unified name."""
    uid = p["metadata"]["uid"].replace("-", "")
    root = node_support.cgroup_root(n.node.bridge)
    controller, name = v1.split("/")
    first = Path(f"/sys/fs/cgroup/{controller}/{root}/pod{uid}/{name}")
    return first if first.exists() else Path(f"/sys/fs/cgroup/{root}/pod{uid}/{v2}")


def test_crash_loop_back_off_restarts_after_10_20_40_seconds(crun_node, pod_ns):
    n = crun_node
    # Each run lasts 3 s, so a delay counted from the restart instead of the exit shows.
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("crasher", n.images.busybox, ["sh", "-c", "sleep 3; exit 1"])))
    core = kubernetes.client.CoreV1Api(n.client)
    # Every instance's run, by container id, from the statuses the node reports.
    runs: dict[str, tuple[datetime.datetime, datetime.datetime]] = {}
    statuses_seen: set[str] = set()
    messages: list[str] = []

    def observe():
        s = (core.read_namespaced_pod("crasher", pod_ns).status.container_statuses or [None])[0]
        if s is None:
            return False
        for st in (s.state, s.last_state):
            t = st.terminated if st else None
            if t and t.container_id and t.started_at and t.finished_at:
                runs[t.container_id] = (t.started_at, t.finished_at)
        if s.state.waiting:
            statuses_seen.add(s.state.waiting.reason)
            if s.state.waiting.message:
                messages.append(s.state.waiting.message)
        return len(runs) >= 5
    wait_until(observe, timeout=150, interval=0.25, what="five runs of the crashing container")

    ordered = sorted(runs.values())
    delays = [(ordered[i + 1][0] - ordered[i][1]).total_seconds() for i in range(4)]
    # The first restart is immediate; then upstream's backoff, counted from each exit.
    assert delays[0] <= 2, delays
    for got, want in zip(delays[1:], (10, 20, 40)):
        assert want * 0.8 <= got <= want * 1.2, (delays, "want", want)
    assert "CrashLoopBackOff" in statuses_seen
    assert any(m.startswith("back-off 20s restarting failed container=app pod=crasher_")
               for m in messages), messages
    described = n.kubectl("describe", "pod", "crasher", "-n", pod_ns).stdout
    assert "Back-off restarting failed container" in described


def test_init_containers_show_init_n_of_m_then_pod_initializing_then_running(crun_node, pod_ns):
    n = crun_node
    manifest = pod("staged", n.images.busybox, ["sleep", "3600"])
    manifest["spec"]["initContainers"] = [
        {"name": "first", "image": n.images.busybox, "command": ["sh", "-c", "sleep 2"]},
        {"name": "second", "image": n.images.busybox, "command": ["sh", "-c", "sleep 2"]},
    ]
    # The app's postStart hook holds it back, so the pod visibly waits as PodInitializing.
    manifest["spec"]["containers"][0]["lifecycle"] = {"postStart": {"sleep": {"seconds": 2}}}
    watch = n.kubectl_watch("get", "pods", "-n", pod_ns, "-w", "--no-headers")
    try:
        n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(manifest))
        watch.expect(lambda l: l.startswith("staged ") and status_column(l) == "Running",
                     timeout=60)
    finally:
        watch.stop()
    shown = []
    for line in (l for l in watch.seen if l.startswith("staged ")):
        if not shown or shown[-1] != status_column(line):
            shown.append(status_column(line))
    wanted = ["Init:0/2", "Init:1/2", "PodInitializing", "Running"]
    positions = [shown.index(w) for w in wanted]
    assert positions == sorted(positions), shown
    p = get_pod(n, pod_ns, "staged")
    for name in ("first", "second"):
        t = init_status(p, name)["state"]["terminated"]
        assert (t["exitCode"], t["reason"]) == (0, "Completed")
    assert stamp(init_status(p, "first")["state"]["terminated"]["finishedAt"]) <= \
        stamp(init_status(p, "second")["state"]["terminated"]["startedAt"])
    conds = {c["type"]: c["status"] for c in p["status"]["conditions"]}
    assert conds["Initialized"] == "True" and conds["Ready"] == "True"


def test_a_failed_init_container_under_never_fails_the_pod_as_init_error(crun_node, pod_ns):
    n = crun_node
    manifest = pod("init-fails", n.images.busybox, ["sleep", "3600"], restartPolicy="Never")
    manifest["spec"]["initContainers"] = [
        {"name": "setup", "image": n.images.busybox, "command": ["sh", "-c", "exit 2"]}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(manifest))
    p = wait_phase(n, pod_ns, "init-fails", "Failed")
    t = init_status(p, "setup")["state"]["terminated"]
    assert (t["exitCode"], t["reason"]) == (2, "Error")
    app = p["status"]["containerStatuses"][0]
    assert app["state"]["waiting"]["reason"] == "PodInitializing"
    conds = {c["type"]: c for c in p["status"]["conditions"]}
    assert conds["Initialized"]["status"] == "False"
    assert conds["Initialized"]["reason"] == "ContainersNotInitialized"
    rows = rows_by_name(n.kubectl("get", "pods", "-n", pod_ns).stdout)
    assert rows["init-fails"]["STATUS"] == "Init:Error"


def test_a_failing_init_container_under_always_shows_init_crash_loop_back_off(crun_node,
                                                                              pod_ns):
    n = crun_node
    manifest = pod("init-loops", n.images.busybox, ["sleep", "3600"])
    manifest["spec"]["initContainers"] = [
        {"name": "setup", "image": n.images.busybox, "command": ["sh", "-c", "exit 1"]}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(manifest))

    def backing_off():
        rows = rows_by_name(n.kubectl("get", "pods", "-n", pod_ns).stdout)
        return rows["init-loops"] if rows["init-loops"]["STATUS"] == "Init:CrashLoopBackOff" \
            else None
    row = wait_until(backing_off, timeout=60, interval=0.3, what="Init:CrashLoopBackOff")
    assert row["READY"] == "0/1"
    p = get_pod(n, pod_ns, "init-loops")
    assert p["status"]["phase"] == "Pending"
    s = init_status(p, "setup")
    assert s["restartCount"] >= 1
    assert s["lastState"]["terminated"]["exitCode"] == 1
    assert p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"


def sidecar(name: str, image: str, script: str) -> dict:
    return {"name": name, "image": image, "restartPolicy": "Always",
            "command": ["sh", "-c", script], "volumeMounts": [{"name": "out", "mountPath": "/out"}]}


def test_sidecars_run_beside_the_app_restart_and_stop_after_it_in_reverse_order(
        crun_node, pod_ns, tmp_path):
    n = crun_node
    out = tmp_path / "order"
    out.mkdir()
    loop = "while true; do sleep 0.2; done"
    sidecar_script = ("trap 'echo {name} >> /out/order; exit 0' TERM; trap 'exit 3' USR1; "
                      + loop)
    manifest = pod("with-sidecars", n.images.busybox, [
        "sh", "-c", "trap 'sleep 1; echo app >> /out/order; exit 0' TERM; " + loop],
        terminationGracePeriodSeconds=15)
    manifest["spec"]["containers"][0]["volumeMounts"] = [{"name": "out", "mountPath": "/out"}]
    manifest["spec"]["initContainers"] = [
        sidecar("logger", n.images.busybox, sidecar_script.format(name="logger")),
        sidecar("proxy", n.images.busybox, sidecar_script.format(name="proxy")),
    ]
    manifest["spec"]["volumes"] = [
        {"name": "out", "hostPath": {"path": str(out), "type": "Directory"}}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(manifest))
    p = wait_ready(n, pod_ns, "with-sidecars")
    for name in ("logger", "proxy"):
        s = init_status(p, name)
        assert s["state"].get("running") and s["started"] and s["ready"], s
    row = rows_by_name(n.kubectl("get", "pods", "-n", pod_ns).stdout)["with-sidecars"]
    assert (row["READY"], row["STATUS"]) == ("3/3", "Running")

    # A sidecar that exits is restarted; the app keeps running.
    n.kubectl("exec", "-n", pod_ns, "with-sidecars", "-c", "logger", "--", "kill", "-USR1", "1")

    def logger_restarted():
        q = get_pod(n, pod_ns, "with-sidecars")
        s = init_status(q, "logger")
        return q if s["restartCount"] == 1 and s["state"].get("running") else None
    q = wait_until(logger_restarted, timeout=30, interval=0.2, what="the sidecar restarted")
    assert init_status(q, "logger")["lastState"]["terminated"]["exitCode"] == 3
    assert q["status"]["containerStatuses"][0]["restartCount"] == 0

    n.kubectl("delete", "pod", "with-sidecars", "-n", pod_ns, "--wait=true", timeout=60)
    # The app first (after its 1 s of cleanup), then the sidecars, the later one first.
    assert (out / "order").read_text().split() == ["app", "proxy", "logger"]


def test_a_job_like_pod_with_a_sidecar_succeeds_once_its_app_is_done(crun_node, pod_ns):
    n = crun_node
    manifest = pod("batch", n.images.busybox, ["sh", "-c", "sleep 2; echo work done"],
                   restartPolicy="Never")
    manifest["spec"]["initContainers"] = [{
        "name": "helper", "image": n.images.busybox, "restartPolicy": "Always",
        "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(manifest))
    p = wait_phase(n, pod_ns, "batch", "Succeeded", timeout=60)
    app = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (app["exitCode"], app["reason"]) == (0, "Completed")
    # The sidecar was stopped gracefully (its TERM trap ran), not killed.
    helper = init_status(p, "helper")["state"]["terminated"]
    assert helper["exitCode"] == 0, helper
    assert stamp(helper["finishedAt"]) >= stamp(app["finishedAt"])
    rows = rows_by_name(n.kubectl("get", "pods", "-n", pod_ns).stdout)
    assert rows["batch"]["STATUS"] == "Completed"


def test_the_pod_cgroup_carries_requests_limits_and_the_process_cap(crun_node, pod_ns):
    n = crun_node
    limits = {"limits": {"cpu": "250m", "memory": "64Mi"}}
    manifest = pod("sized", n.images.busybox, ["sleep", "3600"])
    manifest["spec"]["containers"].append(
        {"name": "second", "image": n.images.busybox, "command": ["sleep", "3600"]})
    for c in manifest["spec"]["containers"]:
        c["resources"] = limits
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(manifest))
    p = wait_ready(n, pod_ns, "sized")
    assert p["status"]["qosClass"] == "Guaranteed"
    memory = pod_cgroup_file(n, p, "memory/memory.limit_in_bytes", "memory.max")
    assert memory.read_text().strip() == str(128 * 1024 * 1024)
    quota = pod_cgroup_file(n, p, "cpu/cpu.cfs_quota_us", "cpu.max")
    assert quota.read_text().split()[0] == "50000"
    pids = pod_cgroup_file(n, p, "pids/pids.max", "pids.max")
    assert pids.read_text().strip() == "4096"


def test_a_fork_bomb_stays_inside_its_pod(crun_node, pod_ns):
    n = crun_node
    # Forks sleepers until the pod's process cap stops it; the cpu limit keeps its failing
    # fork attempts from taking the node's two cores.
    bomb = pod("bomb", n.images.busybox,
               ["sh", "-c", "while true; do sleep 3600 & done"], terminationGracePeriodSeconds=0)
    bomb["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "300m", "memory": "1Gi"}}
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(bomb))
    p = wait_ready(n, pod_ns, "bomb")
    current = pod_cgroup_file(n, p, "pids/pids.current", "pids.current")
    wait_until(lambda: int(current.read_text()) >= 4000, timeout=120, interval=0.5,
               what="the bomb reaching the process cap")
    assert int(current.read_text()) <= 4096
    # The node still starts pods and runs commands in them.
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("bystander", n.images.busybox, ["sleep", "3600"])))
    wait_ready(n, pod_ns, "bystander")
    out = n.kubectl("exec", "-n", pod_ns, "bystander", "--", "sh", "-c", "echo alive").stdout
    assert out.strip() == "alive"
    n.kubectl("delete", "pod", "bomb", "-n", pod_ns, "--wait=true", timeout=90)


def test_bad_commands_and_image_names_end_in_the_kubelet_reasons(crun_node, pod_ns):
    n = crun_node
    nocmd = pod("nocmd", n.images.busybox, ["/no/such/binary"])
    badname = pod("badname", "Upper/Case:1")
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(nocmd, badname))

    def status(name):
        return (get_pod(n, pod_ns, name).get("status", {}).get("containerStatuses") or [{}])[0]

    def failed_to_run():
        s = status("nocmd")
        last = s.get("lastState", {}).get("terminated")
        return s if last and s["state"].get("waiting") else None
    s = wait_until(failed_to_run, timeout=60, interval=0.3, what="nocmd's failed start")
    assert s["state"]["waiting"]["reason"] in ("RunContainerError", "CrashLoopBackOff")
    assert s["lastState"]["terminated"]["reason"] == "StartError"
    assert s["lastState"]["terminated"]["exitCode"] == 128
    assert "/no/such/binary" in s["lastState"]["terminated"]["message"]

    s = wait_until(lambda: status("badname").get("state", {}).get("waiting"), timeout=30,
                   what="badname waiting")
    assert s["reason"] == "InvalidImageName"
    assert "must be lowercase" in s["message"]
    rows = rows_by_name(n.kubectl("get", "pods", "-n", pod_ns).stdout)
    assert rows["badname"]["STATUS"] == "InvalidImageName"
    assert rows["nocmd"]["STATUS"] in ("RunContainerError", "CrashLoopBackOff")
    described = n.kubectl("describe", "pod", "nocmd", "-n", pod_ns).stdout
    assert "Started:      Thu, 01 Jan 1970 00:00:00 +0000" in described
    # A pod whose command is missing under Never fails instead of looping.
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("nocmd-once", n.images.busybox, ["/no/such/binary"],
                                restartPolicy="Never")))
    p = wait_phase(n, pod_ns, "nocmd-once", "Failed")
    t = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (t["reason"], t["exitCode"]) == ("StartError", 128)


def test_an_empty_dir_over_its_size_limit_gets_the_pod_evicted(crun_node, pod_ns):
    n = crun_node
    p = pod("filler", n.images.busybox,
            ["sh", "-c", "dd if=/dev/zero of=/cache/blob bs=1024 count=4096; sleep 3600"])
    p["spec"]["containers"][0]["volumeMounts"] = [{"name": "cache", "mountPath": "/cache"}]
    p["spec"]["volumes"] = [{"name": "cache", "emptyDir": {"sizeLimit": "1Mi"}}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    failed = wait_phase(n, pod_ns, "filler", "Failed", timeout=60)
    message = 'Usage of EmptyDir volume "cache" exceeds the limit "1Mi". '
    assert (failed["status"]["reason"], failed["status"]["message"]) == ("Evicted", message)
    conds = {c["type"]: c for c in failed["status"]["conditions"]}
    assert conds["DisruptionTarget"]["reason"] == "TerminationByKubelet"
    assert failed["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
    # kubectl prints a killed container's own reason over the pod's, as for upstream's
    # evicted pods since containers are reported terminated.
    rows = rows_by_name(n.kubectl("get", "pods", "-n", pod_ns).stdout)
    assert rows["filler"]["STATUS"] == "Error"
    described = n.kubectl("describe", "pod", "filler", "-n", pod_ns).stdout
    assert "Evicted" in described and "exceeds the limit" in described


def test_a_missing_image_goes_err_image_pull_then_image_pull_back_off_and_retries(crun_node,
                                                                                 pod_ns):
    n = crun_node
    watch = n.kubectl_watch("get", "pods", "-n", pod_ns, "-w", "--no-headers")
    try:
        n.kubectl("apply", "-n", pod_ns, "-f", "-",
                  input=to_yaml(pod("absent", f"{n.images.host}/e2e/not-there:1")))
        for want in ("ErrImagePull", "ImagePullBackOff", "ErrImagePull", "ImagePullBackOff"):
            watch.expect(lambda l, w=want: l.startswith("absent ") and status_column(l) == w,
                         timeout=40)
    finally:
        watch.stop()
    described = n.kubectl("describe", "pod", "absent", "-n", pod_ns).stdout
    assert f'Back-off pulling image "{n.images.host}/e2e/not-there:1"' in described
    assert "Failed to pull image" in described
    assert get_pod(n, pod_ns, "absent")["status"]["phase"] == "Pending"
