"""`kubectl logs` through the API server, proxied to the node agent's streaming server over
mutually authenticated TLS (issue 4, first part): container selection, follow, previous,
tail, timestamps, limit-bytes, since, all containers, and clear errors."""

from __future__ import annotations

import re

import kubernetes

import harness
from helpers import to_yaml, wait_until
from test_node_pods import get_pod, pod, wait_ready


def test_logs_of_a_container_with_tail_timestamps_limit_and_since(crun_node, pod_ns):
    n = crun_node
    p = pod("counter", n.images.busybox, ["sh", "-c",
            "for i in 1 2 3 4 5; do echo line $i; done; sleep 3600"])
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "counter")
    wait_until(lambda: "line 5" in n.kubectl("logs", "counter", "-n", pod_ns).stdout,
               timeout=20, what="all lines logged")
    assert n.kubectl("logs", "counter", "-n", pod_ns).stdout == \
        "".join(f"line {i}\n" for i in range(1, 6))
    assert n.kubectl("logs", "counter", "-n", pod_ns, "--tail=2").stdout == "line 4\nline 5\n"
    stamped = n.kubectl("logs", "counter", "-n", pod_ns, "--timestamps").stdout.splitlines()
    assert len(stamped) == 5
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z line 1$", stamped[0]), stamped[0]
    assert n.kubectl("logs", "counter", "-n", pod_ns, "--limit-bytes=8").stdout == "line 1\nl"
    assert n.kubectl("logs", "counter", "-n", pod_ns, "--since=1h").stdout.count("line") == 5
    assert n.kubectl("logs", "pod/counter", "-n", pod_ns, "-c", "app").stdout.count("line") == 5
    # The Python client reads the same subresource.
    core = kubernetes.client.CoreV1Api(n.client)
    assert core.read_namespaced_pod_log("counter", pod_ns, tail_lines=1) == "line 5\n"


def test_logs_follow_streams_until_the_container_exits(crun_node, pod_ns):
    n = crun_node
    p = pod("ticker", n.images.busybox, ["sh", "-c",
            "for i in $(seq 1 15); do echo tick $i; sleep 0.2; done"], restartPolicy="Never")
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_until(lambda: get_pod(n, pod_ns, "ticker").get("status", {}).get("phase")
               in ("Running", "Succeeded"), timeout=30, what="ticker running")
    follow = n.kubectl_watch("logs", "-f", "ticker", "-n", pod_ns)
    try:
        follow.expect(lambda l: l == "tick 3", timeout=20)
        follow.expect(lambda l: l == "tick 15", timeout=20)
        follow.proc.wait(timeout=15)  # the stream ends when the container exits
        assert follow.proc.returncode == 0
    finally:
        follow.stop()


def test_logs_previous_after_a_crash_and_its_error_before_one(crun_node, pod_ns):
    n = crun_node
    p = pod("crasher", n.images.busybox, ["sh", "-c",
            "echo run $(cat /proc/sys/kernel/random/uuid); sleep 1; exit 1"])
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_until(lambda: "run " in n.kubectl("logs", "crasher", "-n", pod_ns, check=False).stdout,
               timeout=30, what="first run logged")
    first = n.kubectl("logs", "crasher", "-n", pod_ns).stdout
    early = n.kubectl("logs", "crasher", "-n", pod_ns, "--previous", check=False)
    if get_pod(n, pod_ns, "crasher")["status"]["containerStatuses"][0]["restartCount"] == 0:
        assert early.returncode != 0
        assert 'previous terminated container "app" in pod "crasher" not found' in early.stderr

    def restarted():
        s = get_pod(n, pod_ns, "crasher")["status"]["containerStatuses"][0]
        return s["restartCount"] >= 1
    wait_until(restarted, timeout=60, what="a restart")
    previous = n.kubectl("logs", "crasher", "-n", pod_ns, "--previous").stdout
    # One earlier run's output, whole: a single line naming that run.
    run_line = r"run [0-9a-f-]{36}\n"
    assert re.fullmatch(run_line, previous), previous
    assert re.fullmatch(run_line, first), first


def test_multi_container_selection_all_containers_and_label_selector(crun_node, pod_ns):
    n = crun_node
    two = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "pair", "labels": {"app": "pair"}},
           "spec": {"containers": [
               {"name": "first", "image": n.images.busybox,
                "command": ["sh", "-c", "echo from first; sleep 3600"]},
               {"name": "second", "image": n.images.busybox,
                "command": ["sh", "-c", "echo from second; sleep 3600"]}]}}
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(two))
    wait_ready(n, pod_ns, "pair")
    wait_until(lambda: "from second" in n.kubectl("logs", "pair", "-n", pod_ns, "-c", "second",
                                                  check=False).stdout, timeout=20, what="logs")
    out = n.kubectl("logs", "pair", "-n", pod_ns)
    assert out.stdout == "from first\n"
    assert 'Defaulted container "first" out of: first, second' in out.stderr
    both = n.kubectl("logs", "pair", "-n", pod_ns, "--all-containers").stdout
    assert "from first" in both and "from second" in both
    by_label = n.kubectl("logs", "-l", "app=pair", "-n", pod_ns, "-c", "second").stdout
    assert by_label == "from second\n"
    raw = n.kubectl("get", "--raw", f"/api/v1/namespaces/{pod_ns}/pods/pair/log", check=False)
    assert raw.returncode != 0
    assert "a container name must be specified for pod pair, choose one of: [first second]" \
        in raw.stderr
    bad = n.kubectl("logs", "pair", "-n", pod_ns, "-c", "nope", check=False)
    assert bad.returncode != 0 and "container nope is not valid for pod pair" in bad.stderr


def test_logs_of_a_pod_that_never_started_and_of_a_missing_pod(crun_node, pod_ns):
    n = crun_node
    p = pod("stuck", "absent.test/nothing:1")
    p["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_until(lambda: get_pod(n, pod_ns, "stuck").get("spec", {}).get("nodeName"), timeout=20,
               what="scheduled")
    out = n.kubectl("logs", "stuck", "-n", pod_ns, check=False)
    assert out.returncode != 0
    assert 'container "app" in pod "stuck" is waiting to start' in out.stderr
    missing = n.kubectl("logs", "nope", "-n", pod_ns, check=False)
    assert missing.returncode != 0 and 'pods "nope" not found' in missing.stderr


def test_the_streaming_server_refuses_clients_without_the_cluster_certificate(crun_node):
    n = crun_node
    import json
    import ssl
    import urllib.request
    node = json.loads(n.kubectl("get", "node", n.node.name, "-o", "json").stdout)
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    ctx = ssl.create_default_context(cafile=str(n.node.data_dir / "pki" / "ca.crt"))
    ctx.check_hostname = False
    try:
        urllib.request.urlopen(f"https://127.0.0.1:{port}/containerLogs/default/x/y",
                               context=ctx, timeout=5)
        raise AssertionError("the agent served a client without a certificate")
    except (ssl.SSLError, ConnectionError, urllib.error.URLError) as e:
        assert "certificate" in str(e).lower() or "reset" in str(e).lower() or "EOF" in str(e), e


def websocket_messages(ws) -> list[tuple[int, bytes]]:
    """Every data message until the server's close, as (opcode, payload)."""
    import websocket
    messages = []
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return messages
        if opcode in (websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_TEXT):
            messages.append((opcode, data))


def test_logs_over_a_websocket_in_binary_and_base64(crun_node, pod_ns):
    # The conformance tests read logs over a WebSocket: binary.k8s.io gives the raw bytes,
    # base64.binary.k8s.io the same bytes base64-encoded in text messages.
    import base64
    import websocket
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(
        pod("ws-logs", n.images.busybox, ["sh", "-c", "printf 'one\\ntwo\\nthree\\n'; sleep 3600"])))
    wait_ready(n, pod_ns, "ws-logs")
    info = harness.KubeconfigInfo(n.kubeconfig)
    path = f"/api/v1/namespaces/{pod_ns}/pods/ws-logs/log"
    wait_until(lambda: "three" in n.kubectl("logs", "ws-logs", "-n", pod_ns).stdout,
               timeout=20, what="the pod's output")
    ws = info.websocket(path, ["binary.k8s.io"])
    assert ws.subprotocol == "binary.k8s.io"
    assert b"".join(d for _, d in websocket_messages(ws)) == b"one\ntwo\nthree\n"
    ws = info.websocket(path + "?tailLines=1", ["base64.binary.k8s.io"])
    messages = websocket_messages(ws)
    assert all(op == websocket.ABNF.OPCODE_TEXT for op, _ in messages)
    assert b"".join(base64.b64decode(d) for _, d in messages) == b"three\n"
    try:
        info.websocket(f"/api/v1/namespaces/{pod_ns}/pods/ghost/log", ["binary.k8s.io"])
        raise AssertionError("a missing pod's logs must be refused")
    except websocket.WebSocketBadStatusException as e:
        assert e.status_code == 404


def test_logs_of_an_init_container(crun_node, pod_ns):
    n = crun_node
    p = pod("with-init", n.images.busybox, ["sleep", "3600"])
    p["spec"]["initContainers"] = [{"name": "prepare", "image": n.images.busybox,
                                    "command": ["sh", "-c", "echo prepared the volume"]}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "with-init")
    assert n.kubectl("logs", "with-init", "-n", pod_ns, "-c", "prepare").stdout == \
        "prepared the volume\n"
    assert n.kubectl("logs", "with-init", "-n", pod_ns).stdout == ""  # the app container's
