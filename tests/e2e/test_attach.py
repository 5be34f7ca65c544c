"""`kubectl attach` (issue 4): the session joins the container's own stdio, which its monitor
holds (a terminal for `tty: true`, a stdin pipe for `stdin: true`), through the API server
and the node agent: an interactive shell under `-it`, streamed output without `-i`,
`stdinOnce`, `kubectl run -it --rm`, kubectl's own refusals, the Python client, and a
container re-adopted after the agent was killed with -9."""

from __future__ import annotations

import time

import kubernetes
from kubernetes.stream import stream

import harness
from helpers import to_yaml, wait_until
from test_exec import Terminal, kubectl_argv, terminal_env
from test_node_pods import get_pod, pod, wait_ready

TICKER = ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]


def interactive(name: str, image: str, command: list[str], restart: str = "Always",
                **container) -> dict:
    p = pod(name, image, command, restartPolicy=restart)
    p["spec"]["containers"][0].update(container)
    return p


def terminated(cluster, ns: str, name: str) -> dict:
    def check():
        st = get_pod(cluster, ns, name)["status"].get("containerStatuses", [{}])[0]
        return st.get("state", {}).get("terminated") or st.get("lastState", {}).get("terminated")
    return wait_until(check, timeout=30, interval=0.2, what=f"{name}'s container terminated")


def test_attach_it_to_a_terminal_container_gives_its_shell(node, pod_ns):
    n = node
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(interactive(
        "tty-shell", n.images.busybox, ["sh"], restart="Never", stdin=True, tty=True)))
    wait_ready(n, pod_ns, "tty-shell")
    term = Terminal(kubectl_argv(n, "attach", "-it", "tty-shell", "-n", pod_ns),
                    terminal_env(n))
    term.expect(b"If you don't see a command prompt, try pressing enter.")
    term.send(b"\r")
    term.expect(b"# ")  # busybox sh prompts only on a terminal: it has the container's tty
    term.send(b"tty; echo answer=$((6*7)); echo $TERM\r")
    out = term.expect(b"answer=42")
    assert b"/dev/pts/0" in out or b"/dev/console" in out, out
    term.expect(b"xterm")
    # The shell is the container's main process: leaving it ends the container, and the
    # session with it.
    term.send(b"exit 3\r")
    assert term.wait() == 0
    assert terminated(n, pod_ns, "tty-shell")["exitCode"] == 3


def test_attach_without_stdin_streams_the_output(crun_node, pod_ns):
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("ticker", n.images.busybox, TICKER)))
    wait_ready(n, pod_ns, "ticker")
    watch = n.kubectl_watch("attach", "ticker", "-n", pod_ns)
    try:
        first = watch.expect(lambda line: line.startswith("tick "))
        # Live output, not a replay: the counter keeps going while attached.
        later = watch.expect(lambda line: line.startswith("tick ")
                             and int(line.split()[1]) > int(first.split()[1]) + 2)
        assert later
    finally:
        watch.stop()
    # The container ran on undisturbed by the session ending.
    assert get_pod(n, pod_ns, "ticker")["status"]["containerStatuses"][0]["restartCount"] == 0


def test_attach_it_without_a_terminal_and_bad_names_get_kubectls_errors(crun_node, pod_ns):
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("plain", n.images.busybox, ["sleep", "3600"])))
    wait_ready(n, pod_ns, "plain")
    term = Terminal(kubectl_argv(n, "attach", "-it", "plain", "-n", pod_ns), terminal_env(n))
    term.expect(b"Unable to use a TTY - container app did not allocate one")
    term.send(b"\x03")  # Ctrl-C: the session itself is fine, just not interactive
    term.wait()
    missing = n.kubectl("attach", "ghost", "-n", pod_ns, check=False)
    assert missing.returncode != 0 and 'pods "ghost" not found' in missing.stderr
    bad = n.kubectl("attach", "plain", "-c", "nope", "-n", pod_ns, check=False)
    assert bad.returncode != 0 and "container nope is not valid for pod plain" in bad.stderr


def test_stdin_once_closes_the_containers_stdin_after_the_first_session(node, pod_ns):
    n = node
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(interactive(
        "reader", n.images.busybox, ["sh", "-c", "cat; echo stdin closed"], restart="Never",
        stdin=True, stdinOnce=True)))
    wait_ready(n, pod_ns, "reader")
    out = n.kubectl("attach", "-i", "reader", "-n", pod_ns, input="line one\nline two\n")
    # kubectl's stdin ended, so the container's did: cat finished, the container exited, the
    # session ended with it.
    assert "line one\nline two\nstdin closed\n" in out.stdout, out.stdout
    assert terminated(n, pod_ns, "reader")["exitCode"] == 0


def test_stdin_stays_open_between_sessions_without_stdin_once(crun_node, pod_ns):
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(interactive(
        "echoer", n.images.busybox, ["sh", "-c", "while read l; do echo got $l; done"],
        stdin=True)))
    wait_ready(n, pod_ns, "echoer")
    watch = n.kubectl_watch("attach", "echoer", "-n", pod_ns)
    try:
        # Two sessions one after the other both reach the same, still-open stdin.
        for word in ("one", "two"):
            feed_until_seen(n, watch, pod_ns, "echoer", word)
    finally:
        watch.stop()
    assert get_pod(n, pod_ns, "echoer")["status"]["containerStatuses"][0]["state"].get("running")


def feed_until_seen(cluster, watch, ns: str, name: str, word: str) -> None:
    """Feeds `word` through `kubectl attach -i` sessions until the watching session shows
    the container's answer. The watcher sees only what is written after it joined (nothing
    is replayed) and nothing tells when kubectl has joined, so a word fed too early is fed
    again."""
    deadline = time.monotonic() + 30
    while True:
        feeder = harness_feed(cluster, ns, name, word)
        try:
            watch.expect(lambda line: line == f"got {word}", timeout=3)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        finally:
            feeder.stop()


def harness_feed(cluster, ns: str, name: str, word: str):
    """`kubectl attach -i` whose stdin is a pipe holding one line and then left open."""
    import subprocess
    argv = [str(harness.kubectl_bin()), "--kubeconfig", str(cluster.kubeconfig), "attach", "-i",
            name, "-n", ns]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=terminal_env(cluster))
    proc.stdin.write(f"{word}\n".encode())
    proc.stdin.flush()

    class Feeder:
        def stop(self):
            harness.stop(proc, grace=5)
    return Feeder()


def test_kubectl_run_it_rm_gives_a_shell_and_deletes_the_pod(crun_node, pod_ns):
    n = crun_node
    term = Terminal(kubectl_argv(n, "run", "scratch", "-n", pod_ns, "-it", "--rm",
                                 "--restart=Never", f"--image={n.images.busybox}", "--", "sh"),
                    terminal_env(n))
    term.expect(b"If you don't see a command prompt, try pressing enter.", timeout=60)
    term.send(b"\r")
    term.expect(b"# ")
    term.send(b"echo from $(hostname)\r")
    term.expect(b"from scratch")
    term.send(b"exit\r")
    term.expect(b'pod "scratch" deleted')
    assert term.wait() == 0
    gone = n.kubectl("get", "pod", "scratch", "-n", pod_ns, check=False)
    assert "NotFound" in gone.stderr


def test_python_client_attach_reads_the_output(crun_node, pod_ns):
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("py-attach", n.images.busybox, TICKER)))
    wait_ready(n, pod_ns, "py-attach")
    core = kubernetes.client.CoreV1Api(n.new_client())
    resp = stream(core.connect_get_namespaced_pod_attach, "py-attach", pod_ns,
                  stdout=True, stderr=True, stdin=False, tty=False, _preload_content=False)
    try:
        def ticks():
            resp.update(timeout=1)
            return "tick " in resp.peek_stdout()
        wait_until(ticks, timeout=20, interval=0, what="output on the attach stream")
        assert resp.read_stdout().startswith("tick ")
    finally:
        resp.close()


def test_attach_after_the_agent_was_killed_reaches_the_same_stdin(split):
    ns = split.create_namespace()
    split.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(interactive(
        "survivor", split.images.busybox, ["sh", "-c", "while read l; do echo got $l; done"],
        stdin=True)))
    before = wait_ready(split, ns, "survivor")
    split.agent.kill()
    split.agent.start()
    after = wait_ready(split, ns, "survivor")
    assert (after["status"]["containerStatuses"][0]["containerID"]
            == before["status"]["containerStatuses"][0]["containerID"])
    # The monitor held the container's stdin through the agent's death.
    watch = split.kubectl_watch("attach", "survivor", "-n", ns)
    try:
        feed_until_seen(split, watch, ns, "survivor", "still-here")
    finally:
        watch.stop()
    split.kubectl("delete", "pod", "survivor", "-n", ns, "--grace-period=1")


def test_attach_over_spdy_streams_output_and_drives_a_terminal(crun_node, pod_ns):
    # kubectl's SPDY fallback (forced by its switch), as older clients attach.
    spdy = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(pod("spdy-ticker", n.images.busybox, TICKER)))
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(interactive(
        "spdy-shell", n.images.busybox, ["sh"], restart="Never", stdin=True, tty=True)))
    wait_ready(n, pod_ns, "spdy-ticker")
    watch = n.kubectl_watch("attach", "spdy-ticker", "-n", pod_ns, env=spdy)
    try:
        first = watch.expect(lambda line: line.startswith("tick "))
        assert watch.expect(lambda line: line.startswith("tick ")
                            and int(line.split()[1]) > int(first.split()[1]) + 2)
    finally:
        watch.stop()
    wait_ready(n, pod_ns, "spdy-shell")
    term = Terminal(kubectl_argv(n, "attach", "-it", "spdy-shell", "-n", pod_ns),
                    terminal_env(n, spdy), rows=29, cols=88)
    term.expect(b"If you don't see a command prompt, try pressing enter.")
    term.send(b"\r")
    term.expect(b"# ")
    term.send(b"stty size; echo answer=$((6*7))\r")
    out = term.expect(b"answer=42")
    assert b"29 88" in out, out  # the resize stream reached the container's terminal
    term.send(b"exit 3\r")
    assert term.wait() == 0
    assert terminated(n, pod_ns, "spdy-shell")["exitCode"] == 3


def test_python_client_attach_sends_str_stdin(crun_node, pod_ns):
    """The Python client's `write_stdin` with a `str` goes in a WebSocket text frame; attach
    hands it to the container's stdin like binary input."""
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(interactive(
        "py-stdin-attach", n.images.busybox, ["sh", "-c", "while read l; do echo got $l; done"],
        stdin=True)))
    wait_ready(n, pod_ns, "py-stdin-attach")
    core = kubernetes.client.CoreV1Api(n.new_client())
    resp = stream(core.connect_get_namespaced_pod_attach, "py-stdin-attach", pod_ns,
                  stdout=True, stderr=True, stdin=True, tty=False, _preload_content=False)
    try:
        resp.write_stdin("over text\n")
        assert resp.readline_stdout(timeout=20) == "got over text"
    finally:
        resp.close()
