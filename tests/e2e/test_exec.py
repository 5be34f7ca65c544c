"""`kubectl exec` and the Python client's exec stream through the API server to the node
agent (issue 4): WebSocket `v5.channel.k8s.io`/`v4.channel.k8s.io`, stdin, stdout, stderr,
exit codes, container selection, a terminal on the client side, and clear errors."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import termios
import time
import urllib.parse

import kubernetes
from kubernetes.stream import stream

import harness
from helpers import to_yaml
from test_node_pods import pod, wait_ready


def kubectl_argv(cluster, *args: str) -> list[str]:
    return [str(harness.kubectl_bin()), "--kubeconfig", str(cluster.kubeconfig), *args]


def test_exec_runs_in_the_container_with_its_exit_code_and_stdin(node, pod_ns):
    n = node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("web-server-pod", n.images.busybox, ["sleep", "3600"])))
    p = wait_ready(n, pod_ns, "web-server-pod")
    assert n.kubectl("exec", "web-server-pod", "-n", pod_ns, "--", "hostname").stdout == \
        "web-server-pod\n"
    # The exec'd process is in the pod's network namespace and the container's PID namespace.
    ip = n.kubectl("exec", "web-server-pod", "-n", pod_ns, "--", "sh", "-c",
                   "ip -4 -o addr show eth0 | awk '{print $4}'").stdout.strip()
    assert ip == p["status"]["podIP"] + "/24"
    ps = n.kubectl("exec", "web-server-pod", "-n", pod_ns, "--", "ps", "-o", "comm").stdout
    assert sorted(ps.split()[1:]) == ["ps", "sleep"], ps
    out = n.kubectl("exec", "web-server-pod", "-n", pod_ns, "--", "sh", "-c",
                    "echo out; echo err >&2; exit 3", check=False)
    assert out.returncode == 3
    assert out.stdout == "out\n"
    assert "err\n" in out.stderr and "command terminated with exit code 3" in out.stderr
    piped = n.kubectl("exec", "-i", "web-server-pod", "-n", pod_ns, "--", "sh", "-c",
                      "cat; echo done", input="line one\nline two\n")
    assert piped.stdout == "line one\nline two\ndone\n"


def test_exec_picks_the_default_container_and_c_selects_another(crun_node, pod_ns):
    n = crun_node
    two = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pair"},
           "spec": {"containers": [
               {"name": "main", "image": n.images.busybox,
                "command": ["sh", "-c", "touch /tmp/i-am-main; sleep 3600"]},
               {"name": "side", "image": n.images.busybox,
                "command": ["sh", "-c", "touch /tmp/i-am-side; sleep 3600"]}]}}
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(two))
    wait_ready(n, pod_ns, "pair")
    default = n.kubectl("exec", "pair", "-n", pod_ns, "--", "ls", "/tmp")
    assert "i-am-main" in default.stdout
    assert 'Defaulted container "main" out of: main, side' in default.stderr
    side = n.kubectl("exec", "pair", "-n", pod_ns, "-c", "side", "--", "ls", "/tmp")
    assert side.stdout.split() == ["i-am-side"]
    bad = n.kubectl("exec", "pair", "-n", pod_ns, "-c", "nope", "--", "true", check=False)
    assert bad.returncode != 0 and "container nope is not valid for pod pair" in bad.stderr
    missing = n.kubectl("exec", "ghost", "-n", pod_ns, "--", "true", check=False)
    assert missing.returncode != 0 and 'pods "ghost" not found' in missing.stderr


def terminal_env(cluster, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env["HOME"] = str(cluster.workdir)
    env["TERM"] = "xterm"
    return {**env, **(extra or {})}


def test_exec_it_under_a_terminal_prints_the_hostname(crun_node, pod_ns):
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("tty-pod", n.images.busybox, ["sleep", "3600"])))
    wait_ready(n, pod_ns, "tty-pod")
    term = Terminal(kubectl_argv(n, "exec", "-it", "tty-pod", "-n", pod_ns, "--", "hostname"),
                    terminal_env(n))
    term.expect(b"tty-pod")
    assert term.wait() == 0, term.output


def test_python_client_exec_stream(crun_node, pod_ns):
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("py-exec", n.images.busybox, ["sleep", "3600"])))
    wait_ready(n, pod_ns, "py-exec")
    core = kubernetes.client.CoreV1Api(n.new_client())
    out = stream(core.connect_get_namespaced_pod_exec, "py-exec", pod_ns,
                 command=["sh", "-c", "echo hello from $(hostname)"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out == "hello from py-exec\n"
    resp = stream(core.connect_get_namespaced_pod_exec, "py-exec", pod_ns,
                  command=["sh", "-c", "exit 7"], stderr=True, stdin=False, stdout=True,
                  tty=False, _preload_content=False)
    resp.run_forever(timeout=20)
    assert resp.returncode == 7
    resp.close()


def test_kubectl_cp_in_and_out_keeps_the_bytes(crun_node, pod_ns, tmp_path):
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("cp-pod", n.images.busybox, ["sleep", "3600"])))
    wait_ready(n, pod_ns, "cp-pod")
    data = os.urandom(256 * 1024) + b"end\n"
    src = tmp_path / "payload.bin"
    src.write_bytes(data)
    n.kubectl("cp", str(src), f"{pod_ns}/cp-pod:/tmp/payload.bin")
    import hashlib
    inside = n.kubectl("exec", "cp-pod", "-n", pod_ns, "--", "sha256sum",
                       "/tmp/payload.bin").stdout.split()[0]
    assert inside == hashlib.sha256(data).hexdigest()
    back = tmp_path / "back.bin"
    n.kubectl("cp", f"{pod_ns}/cp-pod:/tmp/payload.bin", str(back))
    assert back.read_bytes() == data


class Terminal:
    """kubectl running under a pseudo-terminal, as a user at a shell runs it."""

    def __init__(self, argv: list[str], env: dict[str, str], rows: int = 24, cols: int = 80):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            # The window size is set before kubectl starts, so it reads this one.
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execve(argv[0], argv, env)
        self.output = b""

    def expect(self, needle: bytes, timeout: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not seen; terminal so far: {self.output!r}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"terminal closed before {needle!r}: {self.output!r}")
                self.output += chunk
        return self.output

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                if ready:
                    self.output += os.read(self.fd, 4096)
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        raise AssertionError(f"kubectl did not exit; terminal: {self.output!r}")


def test_exec_it_gives_an_interactive_shell_on_a_terminal(node, pod_ns):
    n = node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("shell-pod", n.images.busybox, ["sleep", "3600"])))
    wait_ready(n, pod_ns, "shell-pod")
    term = Terminal(kubectl_argv(n, "exec", "-it", "shell-pod", "-n", pod_ns, "--", "sh"),
                    terminal_env(n), rows=33, cols=101)
    term.expect(b"# ")  # busybox sh prompts only on a terminal
    term.send(b"tty; stty size; echo answer=$((6*7))\r")
    out = term.expect(b"answer=42")
    assert b"/dev/pts/" in out
    assert b"33 101" in out  # the user's window size reached the container's terminal
    term.send(b"exit 5\r")
    assert term.wait() == 5


# kubectl falls back to SPDY when the WebSocket upgrade fails; the switch forces that path,
# the one older kubectl and client-go programs take.
SPDY = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}


def test_exec_over_spdy_carries_stdio_exit_codes_and_terminals(crun_node, pod_ns):
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("spdy-pod", n.images.busybox, ["sleep", "3600"])))
    wait_ready(n, pod_ns, "spdy-pod")
    assert n.kubectl("exec", "spdy-pod", "-n", pod_ns, "--", "hostname", env=SPDY).stdout == \
        "spdy-pod\n"
    out = n.kubectl("exec", "spdy-pod", "-n", pod_ns, "--", "sh", "-c",
                    "echo out; echo err >&2; exit 3", check=False, env=SPDY)
    assert out.returncode == 3
    assert out.stdout == "out\n"
    assert "err\n" in out.stderr and "command terminated with exit code 3" in out.stderr
    piped = n.kubectl("exec", "-i", "spdy-pod", "-n", pod_ns, "--", "sh", "-c",
                      "cat; echo done", input="line one\nline two\n", env=SPDY)
    assert piped.stdout == "line one\nline two\ndone\n"
    term = Terminal(kubectl_argv(n, "exec", "-it", "spdy-pod", "-n", pod_ns, "--", "sh"),
                    terminal_env(n, SPDY), rows=41, cols=97)
    term.expect(b"# ")
    term.send(b"stty size; echo answer=$((6*7))\r")
    out = term.expect(b"answer=42")
    assert b"41 97" in out
    term.send(b"exit 4\r")
    assert term.wait() == 4


def test_exec_over_the_plain_channel_protocol(crun_node, pod_ns):
    # The conformance tests' exec: a WebSocket with subprotocol channel.k8s.io, each message
    # prefixed with its channel (1 stdout, 2 stderr).
    import websocket
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("ch-exec", n.images.busybox, ["sleep", "3600"])))
    wait_ready(n, pod_ns, "ch-exec")
    info = harness.KubeconfigInfo(n.kubeconfig)
    ws = info.websocket(f"/api/v1/namespaces/{pod_ns}/pods/ch-exec/exec?command=sh&command=-c"
                        "&command=echo+out%3B+echo+err+%3E%262&stdout=true&stderr=true",
                        ["channel.k8s.io"])
    assert ws.subprotocol == "channel.k8s.io"
    channels: dict[int, bytes] = {}
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
        if opcode == websocket.ABNF.OPCODE_BINARY and data:
            channels[data[0]] = channels.get(data[0], b"") + data[1:]
    assert channels.get(1) == b"out\n"
    assert channels.get(2) == b"err\n"


def exec_over_websocket(cluster, ns: str, name: str, protocol: str, command: str,
                        frames: list[tuple[int, bytes | str]]) -> dict[int, bytes]:
    """Runs `sh -c command` with stdin through a raw WebSocket on `protocol`, sends `frames`
    ((opcode, payload) each, the channel byte first), and returns what each channel carried
    until the server closed the connection."""
    import websocket
    info = harness.KubeconfigInfo(cluster.kubeconfig)
    ws = info.websocket(f"/api/v1/namespaces/{ns}/pods/{name}/exec?command=sh&command=-c"
                        f"&command={urllib.parse.quote(command)}"
                        "&stdin=true&stdout=true&stderr=true", [protocol])
    try:
        assert ws.subprotocol == protocol
        for opcode, payload in frames:
            ws.send(payload, opcode=opcode)
        channels: dict[int, bytes] = {}
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return channels
            if opcode == websocket.ABNF.OPCODE_BINARY and data:
                channels[data[0]] = channels.get(data[0], b"") + data[1:]
    finally:
        ws.close()


def test_exec_stdin_in_text_frames_on_v4_and_v5(crun_node, pod_ns):
    """The Python client sends `str` stdin in WebSocket text frames (channel byte first);
    upstream reads text frames like binary ones, so the command gets its input, and v5's
    close of stdin (a binary [255, 0]) still ends it."""
    from websocket import ABNF
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("text-exec", n.images.busybox, ["sleep", "3600"])))
    wait_ready(n, pod_ns, "text-exec")
    success = json.dumps({"metadata": {}, "status": "Success"}, separators=(",", ":")).encode()

    # v4 has no way to close stdin: the command reads one line and ends.
    v4 = exec_over_websocket(n, pod_ns, "text-exec", "v4.channel.k8s.io",
                             'read line; echo "got:$line"',
                             [(ABNF.OPCODE_TEXT, "\x00hello v4\n")])
    assert v4.get(1) == b"got:hello v4\n", v4
    assert v4.get(3) == success

    # v5: text stdin in two frames, then close stdin; cat sees the end of its input.
    v5 = exec_over_websocket(n, pod_ns, "text-exec", "v5.channel.k8s.io", "cat; echo done",
                             [(ABNF.OPCODE_TEXT, "\x00one\n"), (ABNF.OPCODE_TEXT, "\x00two\n"),
                              (ABNF.OPCODE_BINARY, bytes([255, 0]))])
    assert v5.get(1) == b"one\ntwo\ndone\n", v5
    assert v5.get(3) == success


def test_python_client_exec_with_str_stdin_and_v5_close(crun_node, pod_ns):
    """What kubernetes-client/python's e2e `test_pod_exec_close_channel` does: `str` stdin
    (text frames), a line back, then `close_channel(0)` ends `cat` with exit code 0."""
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("py-stdin", n.images.busybox, ["sleep", "3600"])))
    wait_ready(n, pod_ns, "py-stdin")
    core = kubernetes.client.CoreV1Api(n.new_client())
    resp = stream(core.connect_post_namespaced_pod_exec, "py-stdin", pod_ns,
                  command=["/bin/sh", "-c", "cat"], stderr=True, stdin=True, stdout=True,
                  tty=False, _preload_content=False)
    try:
        assert resp.subprotocol == "v5.channel.k8s.io"
        resp.write_stdin("test-close\n")
        assert resp.readline_stdout(timeout=10) == "test-close"
        resp.close_channel(0)
        resp.run_forever(timeout=15)
        assert not resp.is_open()
        assert resp.returncode == 0
    finally:
        resp.close()
