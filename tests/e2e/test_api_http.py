"""The HTTP surface around the resources (issue 13, 7): which methods the discovery,
version, OpenAPI and health paths answer, as kube-apiserver's handlers for them do, and
an HTTP/1.1 connection after an answer given before the request body was read. Raw HTTPS
(urllib and a TLS socket), API-only, no node needed.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.parse

import harness
from test_protobuf import request

WRITES = ["POST", "PUT", "PATCH", "DELETE"]

METHOD_NOT_ALLOWED = {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": "the server does not allow this method on the requested resource",
    "reason": "MethodNotAllowed", "details": {}, "code": 405,
}


def test_get_only_paths_refuse_other_methods(cluster):
    """go-restful serves `/api`, `/api/v1`, `/apis/<group>/<version>` and `/version` with
    one GET route each and answers anything else (HEAD too) with 405 and a Status."""
    for path in ["/api", "/api/v1", "/apis/coordination.k8s.io/v1", "/version"]:
        for method in WRITES:
            status, ctype, body = request(cluster, method, path, b"{}", content_type="application/json")
            assert status == 405, (method, path, body)
            assert ctype == "application/json"
            assert json.loads(body) == METHOD_NOT_ALLOWED, (method, path)
        status, _, body = request(cluster, "HEAD", path)
        assert (status, body) == (405, b""), path
        status, _, _ = request(cluster, "GET", path)
        assert status == 200, path
    # A version nobody serves is not found, whatever the method.
    status, _, body = request(cluster, "POST", "/apis/coordination.k8s.io/v7", b"{}")
    assert status == 404, body


def test_method_agnostic_paths_serve_their_document(cluster):
    """The aggregator's `/apis` handlers, kube-openapi's and the health checks are plain
    handlers that ignore the method: a write gets the document, a HEAD its headers."""
    for path in ["/apis", "/apis/coordination.k8s.io", "/openapi/v2", "/openapi/v3", "/readyz"]:
        status, _, got = request(cluster, "GET", path)
        assert status == 200, path
        for method in WRITES:
            status, _, body = request(cluster, method, path, b"{}", content_type="application/json")
            assert (status, body) == (200, got), (method, path)
        status, _, body = request(cluster, "HEAD", path)
        assert (status, body) == (200, b""), path


def test_public_paths_are_public_to_get_only(cluster):
    """Health and version are readable without a token (upstream's public-info-viewer
    grants `get`); any other method needs a user."""
    info = harness.KubeconfigInfo(cluster.kubeconfig)
    for method, path, want in [("GET", "/healthz", 200), ("GET", "/version", 200),
                               ("POST", "/healthz", 401), ("DELETE", "/version", 401)]:
        with raw_connection(info) as conn:
            conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
            status, _, _ = read_response(conn)
            assert status == want, (method, path)


def test_label_selector_in_empty_set_is_in_the_empty_value(cluster, ns):
    """`a in ()` parses as `a in ("")`, as upstream's labels.Parse reads it (parseValues,
    case ClosedParToken): it selects the objects whose label `a` is empty."""
    path = f"/api/v1/namespaces/{ns}/configmaps"
    for name, labels in [("empty", {"a": ""}), ("set", {"a": "x"}), ("none", {})]:
        body = json.dumps({"metadata": {"name": name, "labels": labels}}).encode()
        status, _, out = request(cluster, "POST", path, body, content_type="application/json")
        assert status == 201, out
    for selector, want in [("a in ()", ["empty"]), ("a notin ()", ["kube-root-ca.crt", "none", "set"])]:
        status, _, out = request(cluster, "GET", path + "?labelSelector=" + urllib.parse.quote(selector))
        assert status == 200, out
        assert sorted(i["metadata"]["name"] for i in json.loads(out)["items"]) == want, selector


# --- one HTTP/1.1 connection, two requests --------------------------------------------

class raw_connection:
    """A TLS connection to the API server speaking HTTP/1.1 only."""

    def __init__(self, info: harness.KubeconfigInfo):
        self.info = info

    def __enter__(self) -> ssl.SSLSocket:
        ctx = self.info.ssl_context()
        ctx.set_alpn_protocols(["http/1.1"])
        host, port = self.info.host_port()
        sock = socket.create_connection((host, port), timeout=30)
        self.conn = ctx.wrap_socket(sock, server_hostname=host)
        self.conn.settimeout(30)
        return self.conn

    def __exit__(self, *exc):
        self.conn.close()


def read_response(conn: ssl.SSLSocket, buf: bytearray | None = None):
    """One response off the connection: (status, lowercase headers, body); what follows
    it stays in `buf`."""
    buf = buf if buf is not None else bytearray()
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        assert chunk, "the connection closed before a response"
        buf += chunk
    head, _, _ = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    start = len(head) + 4
    length = int(headers.get("content-length", "0"))
    while len(buf) < start + length:
        chunk = conn.recv(65536)
        assert chunk, "the connection closed inside a response"
        buf += chunk
    body = bytes(buf[start:start + length])
    del buf[:start + length]
    return status, headers, body


def test_early_answers_leave_the_connection_usable(cluster):
    """A POST refused before its body is read (401, 404, 405) and a GET written right
    after it on the same connection: both are answered (the server reads the unread body
    off the connection, as Go's net/http does up to 256 KiB)."""
    info = harness.KubeconfigInfo(cluster.kubeconfig)
    auth = f"Authorization: Bearer {info.token}\r\n"
    body = b"x" * (64 * 1024)
    for path, headers, want in [("/api/v1/namespaces/default/configmaps", "", 401),
                                ("/api/v1/widgets", auth, 404),
                                ("/apis", auth, 200),
                                ("/version", auth, 405)]:
        with raw_connection(info) as conn:
            conn.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}"
                         f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                         + body + b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
            buf = bytearray()
            status, hdrs, _ = read_response(conn, buf)
            assert status == want, path
            assert "connection" not in hdrs, (path, hdrs)
            status, _, second = read_response(conn, buf)
            assert status == 200 and b"gitVersion" in second, path


def test_early_answer_says_when_the_connection_closes(cluster):
    """A body the server will not read (held back for a `100 Continue`) closes the
    connection after the answer, and the answer says so."""
    info = harness.KubeconfigInfo(cluster.kubeconfig)
    with raw_connection(info) as conn:
        conn.sendall(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
                     b"Expect: 100-continue\r\nContent-Length: 1000\r\n\r\n")
        status, headers, _ = read_response(conn)
        assert status == 401
        assert headers.get("connection") == "close", headers
        assert conn.recv(1) == b"", "nothing follows a closing answer"
