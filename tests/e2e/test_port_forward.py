"""Port-forward through the API server to the pod's network namespace (issue 4): kubectl's
SPDY, tunnelled over a WebSocket as kubectl 1.37 sends it and over a plain upgrade as it
falls back to, and the Python client's WebSocket form. Data reaches a server bound to the
pod's own 127.0.0.1, several ports and many connections share a session, and a port nothing
listens on reports an error instead of hanging."""

from __future__ import annotations

import re
import socket
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import kubernetes
import pytest
from kubernetes.stream import portforward

from helpers import to_yaml
from test_node_pods import pod, wait_ready


def http_get(sock) -> bytes:
    """One request; reads until the page's end (a forwarded port has no EOF of its own: the
    session stays open while another port of it is in use)."""
    sock.settimeout(20)
    sock.sendall(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
    data = b""
    while b"</html>" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_python_client_port_forward_reaches_a_localhost_only_server(crun_node, pod_ns):
    n = crun_node
    # httpd on the pod's 127.0.0.1 only: nothing outside the pod's netns could reach it.
    p = pod("pf", n.images.web, ["sh", "-c",
            "httpd -f -p 127.0.0.1:80 -h /var/www & httpd -f -p 127.0.0.1:8081 -h /var/www & wait"])
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "pf")
    core = kubernetes.client.CoreV1Api(n.new_client())
    for _ in range(3):
        pf = portforward(core.connect_get_namespaced_pod_portforward, "pf", pod_ns,
                         ports="80,8081")
        try:
            for port in (80, 8081):
                reply = http_get(pf.socket(port))
                assert reply.startswith(b"HTTP/1.") and b"hello from peapod busybox" in reply, reply
                assert pf.error(port) is None
        finally:
            pf.close()


def test_port_forward_to_a_closed_port_reports_an_error(crun_node, pod_ns):
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("quiet", n.images.busybox, ["sleep", "3600"])))
    wait_ready(n, pod_ns, "quiet")
    core = kubernetes.client.CoreV1Api(n.new_client())
    pf = portforward(core.connect_get_namespaced_pod_portforward, "quiet", pod_ns, ports="9")
    try:
        sock = pf.socket(9)
        sock.settimeout(20)
        assert sock.recv(1) == b""  # closed, not hanging
        err = pf.error(9)
        assert err and "error forwarding port 9" in err, err
    finally:
        pf.close()


# kubectl 1.37 tunnels SPDY through a WebSocket; with the switch off it upgrades to SPDY
# directly, as older kubectl and client-go programs do.
KUBECTL_FORMS = {"spdy-over-websocket": {}, "spdy": {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}}


def start_port_forward(n, ns: str, pod_name: str, remote: int, env: dict[str, str]):
    """`kubectl port-forward pod/NAME :REMOTE`; returns the process and its local port."""
    pf = n.kubectl_watch("port-forward", f"pod/{pod_name}", "-n", ns, f":{remote}", env=env)
    line = pf.expect(lambda l: l.startswith("Forwarding from 127.0.0.1:"), timeout=30)
    port = int(re.match(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line).group(1))
    return pf, port


@pytest.mark.parametrize("form", KUBECTL_FORMS)
def test_kubectl_port_forward_serves_the_page_to_many_parallel_gets(crun_node, pod_ns, form):
    # Seed 004: `kubectl port-forward pod/web-server-pod 8080:80`, then a browser on
    # 127.0.0.1:8080 (a free local port here, so runs never collide).
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(pod("web-server-pod", n.images.web)))
    wait_ready(n, pod_ns, "web-server-pod")
    pf, port = start_port_forward(n, pod_ns, "web-server-pod", 80, KUBECTL_FORMS[form])
    try:
        def get(_):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
                return r.status, r.read()

        status, body = get(0)
        assert status == 200 and b"hello from peapod busybox" in body, body
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(get, range(50)))
        assert [s for s, _ in results] == [200] * 50
        assert all(b == body for _, b in results)
    finally:
        pf.stop()


@pytest.mark.parametrize("form", KUBECTL_FORMS)
def test_kubectl_port_forward_to_a_closed_port_reports_the_error(crun_node, pod_ns, form):
    n = crun_node
    name = f"closed-{form.replace('-', '')}"[:40]
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod(name, n.images.busybox, ["sleep", "3600"])))
    wait_ready(n, pod_ns, name)
    pf, port = start_port_forward(n, pod_ns, name, 9, KUBECTL_FORMS[form])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.settimeout(20)
            try:
                assert sock.recv(1) == b""  # closed, not hanging
            except ConnectionResetError:
                pass
    finally:
        stderr = pf.stop()
    assert "error forwarding port 9" in stderr, stderr
    assert "connection refused" in stderr, stderr


def test_kubectl_port_forward_of_two_ports_to_servers_on_the_pods_localhost(crun_node, pod_ns):
    # Both servers listen on the pod's 127.0.0.1 only: the connections are made inside the
    # pod's network namespace, as the kubelet makes them.
    n = crun_node
    p = pod("pf-two", n.images.web, ["sh", "-c",
            "httpd -f -p 127.0.0.1:80 -h /var/www & httpd -f -p 127.0.0.1:8081 -h /var/www & wait"])
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "pf-two")
    pf = n.kubectl_watch("port-forward", "pod/pf-two", "-n", pod_ns, ":80", ":8081")
    try:
        local = {}
        while len(local) < 2:
            line = pf.expect(lambda l: l.startswith("Forwarding from 127.0.0.1:"), timeout=30)
            m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
            local[int(m.group(2))] = int(m.group(1))
        for remote, port in local.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
                assert r.status == 200 and b"hello from peapod busybox" in r.read(), remote
    finally:
        pf.stop()
