"""Ephemeral containers and `kubectl debug` (issue 4): the `pods/ephemeralcontainers`
subresource (only `spec.ephemeralContainers` changes, existing entries are immutable,
validation errors are 422s with field causes), the node starting them in the running pod
(in the target container's PID namespace with `--target`), never restarting them, and
reporting `status.ephemeralContainerStatuses`; `kubectl debug -it` end to end."""

from __future__ import annotations

import json

import kubernetes
import pytest

from helpers import to_yaml, wait_until
from test_exec import Terminal, kubectl_argv, terminal_env
from test_node_pods import get_pod, pod, wait_ready


def ephemeral_status(cluster, ns: str, pod_name: str, name: str) -> dict | None:
    statuses = get_pod(cluster, ns, pod_name)["status"].get("ephemeralContainerStatuses", [])
    return next((s for s in statuses if s["name"] == name), None)


def wait_ephemeral_state(cluster, ns: str, pod_name: str, name: str, state: str) -> dict:
    def check():
        s = ephemeral_status(cluster, ns, pod_name, name)
        return s if s and state in s.get("state", {}) else None
    return wait_until(check, timeout=60, interval=0.2, what=f"ephemeral {name} {state}")


def test_kubectl_debug_it_with_target_sees_the_targets_processes(node, pod_ns):
    n = node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("app-pod", n.images.busybox, ["sleep", "3600"])))
    wait_ready(n, pod_ns, "app-pod")
    term = Terminal(kubectl_argv(n, "debug", "-it", "app-pod", "-n", pod_ns,
                                 f"--image={n.images.busybox}", "--target=app",
                                 "-c", "debugger", "--", "sh"),
                    terminal_env(n))
    term.expect(b"If you don't see a command prompt, try pressing enter.", timeout=60)
    term.send(b"\r")
    term.expect(b"# ")
    # The marker is computed, so the terminal's echo of the command line cannot match it.
    term.send(b"ps -o pid,comm; echo ps-$((1+1))-done\r")
    out = term.expect(b"ps-2-done")
    # The target's PID namespace: its init (sleep, pid 1) next to the debugger's own shell.
    listing = out.split(b"echo ps-$((1+1))-done")[-1]
    assert b"    1 sleep" in listing, listing
    assert b" sh" in listing and b" ps" in listing, listing

    running = wait_ephemeral_state(n, pod_ns, "app-pod", "debugger", "running")
    assert running["ready"] is False and running["restartCount"] == 0
    assert running["image"].endswith("busybox:1.0")
    p = get_pod(n, pod_ns, "app-pod")
    spec = p["spec"]["ephemeralContainers"][0]
    assert spec["targetContainerName"] == "app" and spec["stdin"] and spec["tty"]
    # Ephemeral containers change neither phase nor readiness.
    assert p["status"]["phase"] == "Running"

    term.send(b"exit 4\r")
    assert term.wait() == 0
    done = wait_ephemeral_state(n, pod_ns, "app-pod", "debugger", "terminated")
    assert done["state"]["terminated"]["exitCode"] == 4
    assert done["state"]["terminated"]["reason"] == "Error"
    # Never restarted; the pod goes on.
    assert ephemeral_status(n, pod_ns, "app-pod", "debugger")["restartCount"] == 0
    assert get_pod(n, pod_ns, "app-pod")["status"]["phase"] == "Running"


def test_ephemeral_container_without_target_shares_the_pod_network(crun_node, pod_ns):
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("net-pod", n.images.busybox, ["sleep", "3600"])))
    p = wait_ready(n, pod_ns, "net-pod")
    core = kubernetes.client.CoreV1Api(n.client)
    patch = {"spec": {"ephemeralContainers": [{
        "name": "probe", "image": n.images.busybox,
        "command": ["sh", "-c", "hostname; ip -4 -o addr show eth0 | awk '{print $4}'; ps -o comm"],
    }]}}
    core.patch_namespaced_pod_ephemeralcontainers("net-pod", pod_ns, patch)
    done = wait_ephemeral_state(n, pod_ns, "net-pod", "probe", "terminated")
    assert done["state"]["terminated"]["exitCode"] == 0
    assert done["state"]["terminated"]["reason"] == "Completed"
    logs = n.kubectl("logs", "net-pod", "-c", "probe", "-n", pod_ns).stdout.split()
    # The pod's hostname and IP, but a PID namespace of its own (only itself in `ps`).
    assert logs[:2] == ["net-pod", p["status"]["podIP"] + "/24"], logs
    assert logs[2:] == ["COMMAND", "sh", "ps"] or logs[2:] == ["COMMAND", "ps"], logs
    events = json.loads(n.kubectl("get", "events", "-n", pod_ns, "-o", "json").stdout)["items"]
    started = [e["involvedObject"].get("fieldPath") for e in events
               if e["reason"] == "Started" and e["involvedObject"]["name"] == "net-pod"]
    assert "spec.ephemeralContainers{probe}" in started, started


def test_ephemeralcontainers_subresource_validates_as_upstream(crun_node, pod_ns):
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("guarded", n.images.busybox, ["sleep", "3600"])))
    wait_ready(n, pod_ns, "guarded")
    core = kubernetes.client.CoreV1Api(n.client)

    def refused(patch) -> dict:
        with pytest.raises(kubernetes.client.ApiException) as e:
            core.patch_namespaced_pod_ephemeralcontainers("guarded", pod_ns, patch)
        assert e.value.status == 422, e.value.body
        return json.loads(e.value.body)

    # A name taken by a regular container.
    body = refused({"spec": {"ephemeralContainers": [
        {"name": "app", "image": n.images.busybox}]}})
    assert body["reason"] == "Invalid"
    assert {"reason": "FieldValueDuplicate", "message": 'Duplicate value: "app"',
            "field": "spec.ephemeralContainers[0].name"} in body["details"]["causes"]
    # A target that does not exist, and fields an ephemeral container may not have.
    body = refused({"spec": {"ephemeralContainers": [{
        "name": "dbg", "image": n.images.busybox, "targetContainerName": "nope",
        "ports": [{"containerPort": 80}]}]}})
    fields = {c["field"]: c["reason"] for c in body["details"]["causes"]}
    assert fields == {"spec.ephemeralContainers[0].targetContainerName": "FieldValueNotFound",
                      "spec.ephemeralContainers[0].ports": "FieldValueForbidden"}, body

    # Accepted: only the ephemeral containers change, whatever else the patch says.
    ok = core.patch_namespaced_pod_ephemeralcontainers("guarded", pod_ns, {
        "metadata": {"labels": {"touched": "yes"}},
        "spec": {"activeDeadlineSeconds": 5, "ephemeralContainers": [
            {"name": "dbg", "image": n.images.busybox, "command": ["sleep", "3600"]}]}})
    assert [e.name for e in ok.spec.ephemeral_containers] == ["dbg"]
    assert ok.spec.active_deadline_seconds is None
    # An existing one may be neither changed nor removed.
    body = refused({"spec": {"ephemeralContainers": [
        {"name": "dbg", "image": n.images.busybox, "command": ["sleep", "1"]}]}})
    assert body["details"]["causes"][0]["message"].startswith(
        'Forbidden: existing ephemeral containers "dbg" may not be changed')
    with pytest.raises(kubernetes.client.ApiException) as e:
        core.replace_namespaced_pod_ephemeralcontainers("guarded", pod_ns, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "guarded"},
            "spec": {"containers": ok.to_dict()["spec"]["containers"],
                     "ephemeralContainers": []}})
    assert e.value.status == 422
    assert 'existing ephemeral containers \\"dbg\\" may not be removed' in e.value.body
    # The main resource still refuses ephemeral containers, as upstream.
    plain = n.kubectl("patch", "pod", "guarded", "-n", pod_ns, "--type=json", "-p",
                      json.dumps([{"op": "add", "path": "/spec/ephemeralContainers/-",
                                   "value": {"name": "x", "image": n.images.busybox}}]),
                      check=False)
    assert plain.returncode != 0 and "Forbidden: pod updates may not change fields" in \
        plain.stderr, plain.stderr
    # GET of the subresource is the pod; deleting the pod stops the ephemeral one too.
    got = n.kubectl("get", "--raw",
                    f"/api/v1/namespaces/{pod_ns}/pods/guarded/ephemeralcontainers").stdout
    assert json.loads(got)["spec"]["ephemeralContainers"][0]["name"] == "dbg"
    wait_ephemeral_state(n, pod_ns, "guarded", "dbg", "running")
    n.kubectl("delete", "pod", "guarded", "-n", pod_ns, "--grace-period=1", "--wait=true")
