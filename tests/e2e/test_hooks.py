"""Lifecycle hooks (issue 5): postStart runs before the container is reported Running and a
failing one kills it (FailedPostStartHook); preStop runs before the stop signal within the
grace period, and a hanging one is cut at the grace period plus the 2 s extension. Hooks
that hang or run missing commands end in the documented state and leave nothing behind."""

from __future__ import annotations

import threading
import time

import kubernetes

from helpers import wait_until
from test_node_pods import get_pod, log_lines, pod, wait_phase
from test_probes import apply, container_status, events, wait_event, wait_running


def exec_hook(script: str) -> dict:
    return {"exec": {"command": ["sh", "-c", script]}}


def to_stdout(text: str) -> str:
    """A hook line that lands in the container's log (PID 1's stdout)."""
    return f"echo {text} > /proc/1/fd/1"


def test_post_start_runs_before_the_container_is_reported_running(crun_node, pod_ns):
    n = crun_node
    # The main process waits for the hook's file; the hook is slow, so a status reported
    # before the hook ended would show up as Running without the hook's log line.
    script = ("while [ ! -e /tmp/hook ]; do sleep 0.1; done; "
              "echo main-sees-$(cat /tmp/hook); sleep 3600")
    manifest = pod("hooked", n.images.busybox, ["sh", "-c", script])
    manifest["spec"]["containers"][0]["lifecycle"] = {"postStart": exec_hook(
        "sleep 1; echo poststart > /tmp/hook; " + to_stdout("hook-done"))}
    core = kubernetes.client.CoreV1Api(n.client)
    w = kubernetes.watch.Watch()
    seen: list[tuple[str, list[str]]] = []

    def watch():
        for ev in w.stream(core.list_namespaced_pod, pod_ns, timeout_seconds=60,
                           field_selector="metadata.name=hooked"):
            p = ev["object"].to_dict()
            states = [s["state"] for s in (p["status"].get("container_statuses") or [])]
            running = any(st.get("running") for st in states)
            if states:
                waiting = states[0].get("waiting") or {}
                # The node's log file, read the moment the API shows the state.
                lines = log_lines(n, get_pod(n, pod_ns, "hooked")) if running else []
                seen.append(("running" if running else waiting.get("reason", "?"), lines))
            if running:
                w.stop()
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    apply(n, pod_ns, manifest)
    t.join(timeout=60)
    assert seen and seen[-1][0] == "running", seen
    assert "ContainerCreating" in [s for s, _ in seen], seen
    assert "hook-done" in seen[-1][1], seen
    lines = wait_until(lambda: (lambda ls: ls if "main-sees-poststart" in ls else None)(
        log_lines(n, get_pod(n, pod_ns, "hooked"))), timeout=20, what="main's line")
    assert lines.index("hook-done") < lines.index("main-sees-poststart")


def test_failing_post_start_hooks_kill_the_container(crun_node, pod_ns):
    n = crun_node
    failing = pod("bad-hook", n.images.busybox, ["sleep", "3600"],
                  restartPolicy="Never", terminationGracePeriodSeconds=1)
    failing["spec"]["containers"][0]["lifecycle"] = {"postStart": exec_hook("echo nope; exit 3")}
    missing = pod("missing-hook", n.images.busybox, ["sleep", "3600"],
                  terminationGracePeriodSeconds=1)
    missing["spec"]["containers"][0]["lifecycle"] = {
        "postStart": {"exec": {"command": ["/no/such/hook"]}}}
    apply(n, pod_ns, failing, missing)

    ev = wait_event(n, pod_ns, "bad-hook", "FailedPostStartHook")
    assert ev["type"] == "Warning"
    assert ev["message"].startswith("Exec lifecycle hook ([sh -c echo nope; exit 3]) for "
                                    "Container \"app\" in Pod \"bad-hook_"), ev["message"]
    assert "exited with 3" in ev["message"] and 'message: "nope\\n"' in ev["message"]
    wait_event(n, pod_ns, "bad-hook", "Killing", "FailedPostStartHook")
    # restartPolicy Never: it stays dead and the pod fails; it was never Running.
    p = wait_phase(n, pod_ns, "bad-hook", "Failed", timeout=30)
    s = container_status(p)
    assert s["state"]["terminated"]["exitCode"] == 137 and s["restartCount"] == 0

    # A hook command that does not exist fails the same way; restartPolicy Always restarts.
    ev = wait_event(n, pod_ns, "missing-hook", "FailedPostStartHook")
    assert "/no/such/hook" in ev["message"]

    def restarted():
        s = container_status(get_pod(n, pod_ns, "missing-hook"))
        return s if s.get("restartCount", 0) >= 1 else None
    s = wait_until(restarted, timeout=30, interval=0.3, what="restart after the failed hook")
    assert not s["state"].get("running"), s


def test_pre_stop_runs_before_the_stop_signal(node, pod_ns):
    script = ("trap 'echo got-TERM; exit 0' TERM; echo started; "
              "while true; do sleep 0.1; done")
    manifest = pod("stopper", node.images.busybox, ["sh", "-c", script])
    manifest["spec"]["containers"][0]["lifecycle"] = {"preStop": exec_hook(
        to_stdout("prestop-begin") + "; sleep 1; " + to_stdout("prestop-end"))}
    apply(node, pod_ns, manifest)
    wait_running(node, pod_ns, "stopper")
    follow = node.kubectl_watch("logs", "-f", "stopper", "-n", pod_ns)
    try:
        follow.expect(lambda line: line == "started")
        node.kubectl("delete", "pod", "stopper", "-n", pod_ns, "--grace-period=10", "--wait=false")
        follow.expect(lambda line: line == "got-TERM", timeout=20)
        assert follow.seen[-3:] == ["prestop-begin", "prestop-end", "got-TERM"], follow.seen
    finally:
        follow.stop()
    wait_until(lambda: not node.kubectl("get", "pod", "stopper", "-n", pod_ns,
                                        "--ignore-not-found").stdout.strip(),
               timeout=20, what="pod gone")


def test_a_hanging_pre_stop_is_cut_at_the_grace_period_plus_two_seconds(crun_node, pod_ns):
    n = crun_node
    # The TERM trap does not exit: only SIGKILL ends it.
    script = "trap 'echo got-TERM' TERM; echo started; while true; do sleep 0.1; done"
    hanging = pod("hang-stop", n.images.busybox, ["sh", "-c", script])
    hanging["spec"]["containers"][0]["lifecycle"] = {"preStop": exec_hook(
        to_stdout("prestop-hangs") + "; sleep 3600")}
    missing = pod("missing-stop", n.images.busybox, ["sleep", "3600"])
    missing["spec"]["containers"][0]["lifecycle"] = {
        "preStop": {"exec": {"command": ["/no/such/prestop"]}}}
    apply(n, pod_ns, hanging, missing)
    wait_running(n, pod_ns, "hang-stop")
    wait_running(n, pod_ns, "missing-stop")
    follow = n.kubectl_watch("logs", "-f", "hang-stop", "-n", pod_ns)
    try:
        follow.expect(lambda line: line == "started")
        t0 = time.monotonic()
        n.kubectl("delete", "pod", "hang-stop", "missing-stop", "-n", pod_ns,
                  "--grace-period=3", "--wait=false")
        follow.expect(lambda line: line == "prestop-hangs", timeout=10)
        # The hook is cut when the grace period ends; TERM follows.
        follow.expect(lambda line: line == "got-TERM", timeout=10)
        term_at = time.monotonic() - t0
    finally:
        follow.stop()
    wait_until(lambda: not n.kubectl("get", "pod", "hang-stop", "-n", pod_ns,
                                     "--ignore-not-found").stdout.strip(),
               timeout=20, interval=0.1, what="hanging pod gone")
    gone_at = time.monotonic() - t0
    assert 2.5 <= term_at <= 5.5, term_at
    # SIGKILL 2 s after TERM: gone at grace + 2 s (plus the deletion round trips; the upper
    # bound leaves room for a loaded machine, the lower one is what matters).
    assert 4.5 <= gone_at <= 10.0, gone_at
    assert gone_at - term_at >= 1.5, (term_at, gone_at)
    ev = wait_event(n, pod_ns, "missing-stop", "FailedPreStopHook")
    assert "/no/such/prestop" in ev["message"]
    wait_until(lambda: not n.kubectl("get", "pod", "missing-stop", "-n", pod_ns,
                                     "--ignore-not-found").stdout.strip(),
               timeout=20, what="pod with the missing hook gone")


def test_a_hanging_post_start_keeps_the_container_creating_and_deletion_still_works(
        crun_node, pod_ns):
    n = crun_node
    manifest = pod("hang-start", n.images.busybox, ["sleep", "3600"])
    manifest["spec"]["containers"][0]["lifecycle"] = {"postStart": exec_hook(
        to_stdout("poststart-hangs") + "; sleep 3600")}
    apply(n, pod_ns, manifest)
    wait_until(lambda: "poststart-hangs" in log_lines(n, get_pod(n, pod_ns, "hang-start")),
               timeout=30, what="the hook running")
    p = get_pod(n, pod_ns, "hang-start")
    assert p["status"]["phase"] == "Pending"
    s = container_status(p)
    assert s["state"]["waiting"]["reason"] == "ContainerCreating"
    assert s["ready"] is False and s["started"] is False
    t0 = time.monotonic()
    n.kubectl("delete", "pod", "hang-start", "-n", pod_ns, "--grace-period=1", "--wait=true",
              timeout=30)
    assert time.monotonic() - t0 < 10


def test_http_and_sleep_hooks(crun_node, pod_ns):
    n = crun_node
    # The web container's postStart waits until its server answers, which holds back the
    # next container (containers start one by one behind their postStart hooks); that one's
    # postStart httpGet then reaches the server by port name. preStop httpGet at a closed
    # port fails with FailedPreStopHook and the pod still goes.
    web = pod("http-hooks", n.images.web)
    c = web["spec"]["containers"][0]
    c["ports"] = [{"name": "http", "containerPort": 80}]
    c["lifecycle"] = {
        "postStart": exec_hook("until wget -q -O /dev/null http://127.0.0.1:80/; do sleep 0.1; done"),
        "preStop": {"httpGet": {"path": "/bye", "port": 81}}}
    web["spec"]["containers"].append({
        "name": "client", "image": n.images.busybox, "command": ["sleep", "3600"],
        "lifecycle": {"postStart": {"httpGet": {"path": "/", "port": 80}}}})
    # preStop sleep holds the stop signal back by its seconds.
    script = "trap 'echo got-TERM; exit 0' TERM; echo started; while true; do sleep 0.1; done"
    sleeper = pod("sleep-stop", n.images.busybox, ["sh", "-c", script])
    sleeper["spec"]["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": 2}}}
    apply(n, pod_ns, web, sleeper)
    def both_running():
        p = get_pod(n, pod_ns, "http-hooks")
        states = [x["state"] for x in p["status"].get("containerStatuses") or []]
        return p if len(states) == 2 and all(st.get("running") for st in states) else None
    p = wait_until(both_running, timeout=30, interval=0.2, what="both containers running")
    ip = p["status"]["podIP"]
    assert [x["restartCount"] for x in p["status"]["containerStatuses"]] == [0, 0]
    web_started, client_started = (x["state"]["running"]["startedAt"]
                                   for x in p["status"]["containerStatuses"])
    assert client_started >= web_started
    wait_running(n, pod_ns, "sleep-stop")
    follow = n.kubectl_watch("logs", "-f", "sleep-stop", "-n", pod_ns)
    try:
        follow.expect(lambda line: line == "started")
        t0 = time.monotonic()
        # httpd ignores TERM as PID 1: a short grace period keeps the test quick.
        n.kubectl("delete", "pod", "http-hooks", "sleep-stop", "-n", pod_ns,
                  "--grace-period=3", "--wait=false")
        follow.expect(lambda line: line == "got-TERM", timeout=15)
        assert time.monotonic() - t0 >= 1.9
    finally:
        follow.stop()
    assert not events(n, pod_ns, "http-hooks", "FailedPostStartHook")
    ev = wait_event(n, pod_ns, "http-hooks", "FailedPreStopHook")
    assert ev["message"].startswith('HTTP lifecycle hook (/bye) for Container "app" in Pod '
                                    '"http-hooks_'), ev["message"]
    assert ev["message"].endswith(f'failed - error: Get "http://{ip}:81/bye": dial tcp '
                                  f'{ip}:81: connect: connection refused'), ev["message"]
    for name in ("http-hooks", "sleep-stop"):
        wait_until(lambda: not n.kubectl("get", "pod", name, "-n", pod_ns,
                                         "--ignore-not-found").stdout.strip(),
                   timeout=20, what=f"{name} gone")
