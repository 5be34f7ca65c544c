"""Port-forward through the API server to the pod's network namespace (issue 4, the Python
client's WebSocket form; kubectl's SPDY form comes next): data reaches a server bound to the
pod's own 127.0.0.1, several ports in one session, and a port nothing listens on reports an
error instead of hanging."""

from __future__ import annotations

import kubernetes
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


def test_kubectl_port_forward_fails_fast_with_a_clear_reason_until_spdy_lands(crun_node, pod_ns):
    # kubectl 1.37 speaks SPDY (tunnelled over WebSocket, then plain) for port-forward, which
    # peapod does not serve yet: the user gets the reason at once instead of a hang.
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("pf-kubectl", n.images.web)))
    wait_ready(n, pod_ns, "pf-kubectl")
    out = n.kubectl("port-forward", "pod/pf-kubectl", "-n", pod_ns, "0:80", check=False,
                    timeout=30)
    assert out.returncode != 0
    assert "SPDY, which kubectl port-forward speaks, is not supported yet" in out.stderr
