"""Termination messages (issue 5): `state.terminated.message` comes from the file the
container wrote at its `terminationMessagePath` (default `/dev/termination-log`, a
per-container file bind-mounted there) or, with `terminationMessagePolicy:
FallbackToLogsOnError`, from the last 80 lines of its log when the file is empty and the
container failed."""

from __future__ import annotations

import re

from helpers import to_yaml
from test_node_pods import pod, wait_phase


def test_termination_messages_from_the_file_and_from_the_log(crun_node, pod_ns):
    n = crun_node
    from_file = pod("msg-file", n.images.busybox,
                    ["sh", "-c", "printf 'bye from file' > /dev/termination-log"],
                    restartPolicy="Never")
    custom = pod("msg-custom", n.images.busybox,
                 ["sh", "-c", "echo custom > /tmp/why; exit 4"], restartPolicy="Never")
    custom["spec"]["containers"][0]["terminationMessagePath"] = "/tmp/why"
    # Not root: the file must still be writable.
    custom["spec"]["containers"][0]["securityContext"] = {"runAsUser": 1000}
    from_log = pod("msg-log", n.images.busybox,
                   ["sh", "-c", "for i in $(seq 1 100); do echo line-$i; done; "
                    "echo oops >&2; exit 2"], restartPolicy="Never")
    from_log["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    ok_log = pod("msg-ok", n.images.busybox, ["sh", "-c", "echo fine"], restartPolicy="Never")
    ok_log["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    plain = pod("msg-none", n.images.busybox, ["sh", "-c", "echo ignored; exit 1"],
                restartPolicy="Never")
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml(from_file, custom, from_log, ok_log, plain))

    def terminated(name: str, phase: str) -> dict:
        p = wait_phase(n, pod_ns, name, phase, timeout=30)
        return p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated("msg-file", "Succeeded")["message"] == "bye from file"
    t = terminated("msg-custom", "Failed")
    assert t["message"] == "custom\n" and t["exitCode"] == 4
    msg = terminated("msg-log", "Failed")["message"]
    # The last 80 lines of the log: line-22 .. line-100 and the stderr line.
    assert msg.startswith("line-22\n") and msg.endswith("line-99\nline-100\noops\n"), msg
    assert "message" not in terminated("msg-ok", "Succeeded")
    assert "message" not in terminated("msg-none", "Failed")
    out = n.kubectl("describe", "pod", "msg-file", "-n", pod_ns).stdout
    assert re.search(r"Message:\s+bye from file", out), out
