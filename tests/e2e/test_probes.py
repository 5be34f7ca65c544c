"""Container probes (issue 5): readiness drives READY and the Ready/ContainersReady
conditions, liveness failures restart the container through the normal restart path,
startup probes gate the other two, and probes at closed ports or running commands that do
not exist end in the documented state. Periods are 1 s so the module stays quick."""

from __future__ import annotations

import json
import time

from helpers import rows_by_name, to_yaml, wait_until
from test_node_pods import get_pod, pod, wait_ready


def probe(**fields) -> dict:
    """A probe (its handler in `fields`: exec, httpGet, tcpSocket, grpc) with 1 s
    periods and one failure enough, unless overridden."""
    return {"periodSeconds": 1, "failureThreshold": 1, **fields}


def exec_probe(*cmd: str, **fields) -> dict:
    return probe(exec={"command": list(cmd)}, **fields)


def apply(node, ns: str, *manifests: dict) -> None:
    node.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(*manifests))


def events(node, ns: str, name: str, reason: str | None = None) -> list[dict]:
    items = json.loads(node.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    return [e for e in items if e["involvedObject"].get("name") == name
            and (reason is None or e.get("reason") == reason)]


def wait_event(node, ns: str, name: str, reason: str, contains: str = "",
               timeout: float = 30.0) -> dict:
    def check():
        found = [e for e in events(node, ns, name, reason) if contains in e.get("message", "")]
        return found[0] if found else None
    return wait_until(check, timeout=timeout, interval=0.3,
                      what=f"{reason} event for {name} containing {contains!r}")


def ready_column(node, ns: str, name: str) -> str:
    return rows_by_name(node.kubectl("get", "pod", name, "-n", ns).stdout)[name]["READY"]


def conditions(p: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in p.get("status", {}).get("conditions", [])}


def container_status(p: dict, name: str = "app") -> dict:
    for s in p.get("status", {}).get("containerStatuses", []) or []:
        if s["name"] == name:
            return s
    return {}


def wait_running(node, ns: str, name: str, timeout: float = 60.0) -> dict:
    def check():
        p = get_pod(node, ns, name)
        return p if container_status(p).get("state", {}).get("running") else None
    return wait_until(check, timeout=timeout, interval=0.2, what=f"{name} running")


def test_exec_readiness_follows_a_file_in_the_ready_column(node, pod_ns):
    manifest = pod("gate", node.images.busybox, ["sh", "-c", "sleep 3600"])
    manifest["spec"]["containers"][0]["readinessProbe"] = exec_probe("cat", "/tmp/ready")
    apply(node, pod_ns, manifest)
    p = wait_running(node, pod_ns, "gate")
    # Running but not Ready until the probe passes.
    wait_event(node, pod_ns, "gate", "Unhealthy",
               "Readiness probe failed: cat: can't open '/tmp/ready'")
    p = get_pod(node, pod_ns, "gate")
    assert p["status"]["phase"] == "Running"
    assert conditions(p)["Ready"] == "False"
    assert conditions(p)["ContainersReady"] == "False"
    s = container_status(p)
    assert s["ready"] is False and s["started"] is True
    assert ready_column(node, pod_ns, "gate") == "0/1"

    # The file appears: READY turns 1/1, seen by a watch.
    watch = node.kubectl_watch("get", "pod", "gate", "-n", pod_ns, "-w", "--no-headers")
    try:
        watch.expect(lambda line: line.split()[1] == "0/1")
        node.kubectl("exec", "gate", "-n", pod_ns, "--", "touch", "/tmp/ready")
        t0 = time.monotonic()
        watch.expect(lambda line: line.split()[1] == "1/1", timeout=15)
        # A 1 s period: the change reaches the API within a couple of periods, not a resync.
        assert time.monotonic() - t0 < 5
        assert conditions(get_pod(node, pod_ns, "gate"))["Ready"] == "True"
        # And back when it goes.
        node.kubectl("exec", "gate", "-n", pod_ns, "--", "rm", "/tmp/ready")
        watch.expect(lambda line: line.split()[1] == "0/1", timeout=15)
    finally:
        watch.stop()
    p = get_pod(node, pod_ns, "gate")
    assert container_status(p)["restartCount"] == 0


def test_http_readiness_on_the_web_image_by_port_name_and_a_failing_path(crun_node, pod_ns):
    n = crun_node
    good = pod("web-ok", n.images.web)
    c = good["spec"]["containers"][0]
    c["ports"] = [{"name": "http", "containerPort": 80}]
    c["readinessProbe"] = probe(httpGet={
        "path": "/", "port": "http", "httpHeaders": [{"name": "X-Probe", "value": "1"}]})
    bad = pod("web-404", n.images.web)
    bad["spec"]["containers"][0]["readinessProbe"] = probe(
        httpGet={"path": "/missing", "port": 80})
    apply(n, pod_ns, good, bad)
    wait_ready(n, pod_ns, "web-ok", timeout=30)
    assert ready_column(n, pod_ns, "web-ok") == "1/1"
    wait_event(n, pod_ns, "web-404", "Unhealthy",
               "Readiness probe failed: HTTP probe failed with statuscode: 404")
    p = get_pod(n, pod_ns, "web-404")
    assert p["status"]["phase"] == "Running"
    assert conditions(p)["Ready"] == "False"
    assert ready_column(n, pod_ns, "web-404") == "0/1"
    out = n.kubectl("describe", "pod", "web-ok", "-n", pod_ns).stdout
    assert "Readiness:" in out and "http-get http://:http/" in out


def test_liveness_failure_kills_and_restarts_the_container(crun_node, pod_ns):
    n = crun_node
    manifest = pod("sick", n.images.busybox,
                   ["sh", "-c", "echo started; sleep 3600"])
    manifest["spec"]["containers"][0]["livenessProbe"] = exec_probe(
        "cat", "/tmp/healthy", terminationGracePeriodSeconds=1)
    apply(n, pod_ns, manifest)

    def restarted():
        p = get_pod(n, pod_ns, "sick")
        s = container_status(p)
        return p if s.get("restartCount", 0) >= 1 else None
    p = wait_until(restarted, timeout=40, interval=0.3, what="restartCount 1")
    s = container_status(p)
    last = s["lastState"]["terminated"]
    # sh as PID 1 ignores TERM: SIGKILL after the 2 s minimum grace.
    assert last["exitCode"] == 137 and last["reason"] == "Error"

    def described():
        out = n.kubectl("describe", "pod", "sick", "-n", pod_ns).stdout
        return out if ("Liveness probe failed: cat: can't open '/tmp/healthy'" in out
                       and "Container app failed liveness probe, will be restarted" in out) \
            else None
    out = wait_until(described, timeout=20, interval=0.5, what="Unhealthy and Killing in describe")
    assert "Unhealthy" in out and "Killing" in out
    assert "Liveness:" in out and "exec [cat /tmp/healthy]" in out
    # The second failure restarts it again, after CrashLoopBackOff's first 10 s back-off.
    wait_event(n, pod_ns, "sick", "BackOff", "Back-off restarting failed container", timeout=30)


def test_startup_probe_gates_liveness_and_readiness(crun_node, pod_ns):
    n = crun_node
    manifest = pod("slow", n.images.busybox,
                   ["sh", "-c", "sleep 3; touch /tmp/started; sleep 3600"])
    c = manifest["spec"]["containers"][0]
    c["startupProbe"] = exec_probe("cat", "/tmp/started", failureThreshold=30)
    # Would kill the container at once if it ran before the startup probe passed.
    c["livenessProbe"] = exec_probe("cat", "/tmp/started")
    c["readinessProbe"] = exec_probe("true")
    apply(n, pod_ns, manifest)
    p = wait_running(n, pod_ns, "slow")
    s = container_status(p)
    assert s["started"] is False and s["ready"] is False
    p = wait_ready(n, pod_ns, "slow", timeout=30)
    s = container_status(p)
    assert s["started"] is True and s["ready"] is True and s["restartCount"] == 0
    started_at = s["state"]["running"]["startedAt"]
    ready_at = next(c["lastTransitionTime"] for c in p["status"]["conditions"]
                    if c["type"] == "Ready")
    # Timestamps have second precision; the file appears 3 s after the start.
    assert ready_at >= started_at and ready_at != started_at
    assert not events(n, pod_ns, "slow", "Killing")


def test_a_failing_startup_probe_restarts_the_container(crun_node, pod_ns):
    n = crun_node
    manifest = pod("never-starts", n.images.busybox, ["sleep", "3600"])
    manifest["spec"]["containers"][0]["startupProbe"] = exec_probe(
        "false", failureThreshold=2, terminationGracePeriodSeconds=1)
    apply(n, pod_ns, manifest)
    wait_event(n, pod_ns, "never-starts", "Killing",
               "Container app failed startup probe, will be restarted", timeout=30)

    def restarted():
        s = container_status(get_pod(n, pod_ns, "never-starts"))
        return s if s.get("restartCount", 0) >= 1 else None
    s = wait_until(restarted, timeout=30, interval=0.3, what="restart after the startup probe")
    assert s["started"] is False and s["ready"] is False


def test_tcp_probes_at_open_and_closed_ports(crun_node, pod_ns):
    n = crun_node
    closed = pod("tcp-closed", n.images.web)
    closed["spec"]["containers"][0]["readinessProbe"] = probe(tcpSocket={"port": 81})
    opened = pod("tcp-open", n.images.web)
    opened["spec"]["containers"][0]["readinessProbe"] = probe(tcpSocket={"port": 80})
    apply(n, pod_ns, closed, opened)
    wait_ready(n, pod_ns, "tcp-open", timeout=30)
    ev = wait_event(n, pod_ns, "tcp-closed", "Unhealthy", "connection refused")
    ip = get_pod(n, pod_ns, "tcp-closed")["status"]["podIP"]
    assert ev["message"] == f"Readiness probe failed: dial tcp {ip}:81: connect: connection refused"
    # It keeps failing and is never ready (the count of the one event goes up).
    wait_until(lambda: (events(n, pod_ns, "tcp-closed", "Unhealthy") or [{}])[0].get("count", 0) >= 3,
               timeout=15, interval=0.3, what="repeated Unhealthy")
    p = get_pod(n, pod_ns, "tcp-closed")
    assert p["status"]["phase"] == "Running" and conditions(p)["Ready"] == "False"
    assert container_status(p)["restartCount"] == 0


def test_probe_commands_that_do_not_exist(node, pod_ns):
    """A readiness probe whose command is missing keeps the pod unready; a liveness probe
    whose command cannot even start has errored, which upstream does not count, so the
    container is not restarted."""
    manifest = pod("no-cmd", node.images.busybox, ["sleep", "3600"])
    c = manifest["spec"]["containers"][0]
    c["readinessProbe"] = exec_probe("/no/such/probe")
    c["livenessProbe"] = exec_probe("/no/such/liveness", terminationGracePeriodSeconds=1)
    apply(node, pod_ns, manifest)
    wait_running(node, pod_ns, "no-cmd")
    ev = wait_event(node, pod_ns, "no-cmd", "Unhealthy", "Liveness probe errored")
    assert "/no/such/liveness" in ev["message"] or "no such file" in ev["message"].lower()
    wait_event(node, pod_ns, "no-cmd", "Unhealthy", "Readiness probe errored")
    # Several periods later: still running, unready, never restarted.
    wait_until(lambda: (events(node, pod_ns, "no-cmd", "Unhealthy") or [{}])[0].get("count", 0) >= 3,
               timeout=15, interval=0.3, what="repeated probe errors")
    p = get_pod(node, pod_ns, "no-cmd")
    s = container_status(p)
    assert s["restartCount"] == 0 and s["ready"] is False and s["state"].get("running")
    assert not events(node, pod_ns, "no-cmd", "Killing")


def test_a_sidecar_startup_probe_holds_back_the_containers_after_it(crun_node, pod_ns):
    n = crun_node
    manifest = pod("with-sidecar", n.images.busybox, ["sleep", "3600"])
    manifest["spec"]["initContainers"] = [{
        "name": "proxy", "image": n.images.busybox, "restartPolicy": "Always",
        "command": ["sh", "-c", "sleep 2; touch /tmp/up; sleep 3600"],
        "startupProbe": exec_probe("cat", "/tmp/up", failureThreshold=30),
    }]
    apply(n, pod_ns, manifest)

    def sidecar_running():
        p = get_pod(n, pod_ns, "with-sidecar")
        s = (p["status"].get("initContainerStatuses") or [{}])[0]
        return p if s.get("state", {}).get("running") else None
    p = wait_until(sidecar_running, timeout=30, interval=0.2, what="sidecar running")
    side = p["status"]["initContainerStatuses"][0]
    if side["started"] is False:
        # Not started yet: the app container has not been started either.
        assert container_status(p)["state"]["waiting"]["reason"] == "PodInitializing"
    p = wait_ready(n, pod_ns, "with-sidecar", timeout=30)
    side = p["status"]["initContainerStatuses"][0]
    assert side["started"] is True and side["ready"] is True
    app_started = container_status(p)["state"]["running"]["startedAt"]
    # The app started only after the sidecar's probe passed, 2 s after the sidecar.
    assert app_started > side["state"]["running"]["startedAt"]


def test_grpc_and_http_probes_at_the_wrong_server_and_a_closed_port(crun_node, pod_ns):
    """A gRPC probe at a plain HTTP/1 server and an httpGet probe at a closed port keep
    their containers unready, each failure in the kubelet's words; nothing restarts."""
    n = crun_node
    manifest = pod("wrong-ports", n.images.web)
    manifest["spec"]["containers"][0]["readinessProbe"] = probe(grpc={"port": 80})
    manifest["spec"]["containers"].append({
        "name": "side", "image": n.images.busybox, "command": ["sleep", "3600"],
        "readinessProbe": probe(httpGet={"path": "/", "port": 8081})})
    apply(n, pod_ns, manifest)
    ev = wait_event(n, pod_ns, "wrong-ports", "Unhealthy", "Readiness probe failed: Get ")
    ip = get_pod(n, pod_ns, "wrong-ports")["status"]["podIP"]
    assert ev["message"] == (f'Readiness probe failed: Get "http://{ip}:8081/": '
                             f"dial tcp {ip}:8081: connect: connection refused")
    assert ev["involvedObject"]["fieldPath"] == "spec.containers{side}"
    ev = wait_event(n, pod_ns, "wrong-ports", "Unhealthy", "health rpc")
    assert ev["involvedObject"]["fieldPath"] == "spec.containers{app}"
    p = get_pod(n, pod_ns, "wrong-ports")
    assert p["status"]["phase"] == "Running"
    assert [s["ready"] for s in p["status"]["containerStatuses"]] == [False, False]
    assert [s["restartCount"] for s in p["status"]["containerStatuses"]] == [0, 0]
    assert ready_column(n, pod_ns, "wrong-ports") == "0/2"


def test_a_hanging_exec_probe_is_killed_at_its_timeout(node, pod_ns):
    """Each run that outlives timeoutSeconds fails ("timed out") and its process is killed
    in the container, so runs do not pile up (killing the runtime's exec alone would leave
    them running)."""
    manifest = pod("slow-probe", node.images.busybox, ["sleep", "3600"])
    manifest["spec"]["containers"][0]["readinessProbe"] = exec_probe("sleep", "3601")
    apply(node, pod_ns, manifest)
    wait_running(node, pod_ns, "slow-probe")
    ev = wait_event(node, pod_ns, "slow-probe", "Unhealthy", "timed out")
    assert ev["message"] == 'Readiness probe failed: command "sleep 3601" timed out'
    wait_until(lambda: (events(node, pod_ns, "slow-probe", "Unhealthy") or [{}])[0]
               .get("count", 0) >= 4, timeout=20, interval=0.3, what="four timed-out runs")
    ps = node.kubectl("exec", "slow-probe", "-n", pod_ns, "--", "ps", "-o", "pid,stat,args").stdout
    # At most the run under way right now.
    assert sum("sleep 3601" in line for line in ps.splitlines()) <= 1, ps
    p = get_pod(node, pod_ns, "slow-probe")
    assert container_status(p)["ready"] is False
