"""Supervision: a node agent outlives its API server. While `peapod server` is down the
agent keeps its pods running and logs a bounded number of lines (its watchers back off
instead of retrying in a hot loop); once the server is back on the same data dir and port,
the agent reconnects by itself: the node stays Ready, its lease is renewed, new pods start.
"""

from __future__ import annotations

import json
import time

from helpers import to_yaml, wait_until
from test_node_pods import get_pod, pod, wait_ready

OUTAGE_SECONDS = 20
# What the agent may write to its stderr during the outage: the first failure of each
# connection it holds (pod watch, lease, events, pod workers' requests), then at most one
# line a minute each. Without backoff and outage logging it wrote 220,477.
MAX_OUTAGE_LINES = 40


def container_identity(cluster, ns: str, name: str) -> tuple[str, str, int, str]:
    """Container ID, start time and restart count as reported, and the start time of the
    container's PID 1 as the kernel has it (field 22 of /proc/1/stat, in clock ticks since
    boot): the same value means the very same process."""
    p = get_pod(cluster, ns, name)
    s = p["status"]["containerStatuses"][0]
    stat = cluster.kubectl("exec", name, "-n", ns, "--", "cat", "/proc/1/stat").stdout
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    starttime = stat.rsplit(")", 1)[1].split()[19]
    return s["containerID"], s["state"]["running"]["startedAt"], s["restartCount"], starttime


def node_ready(cluster, name: str) -> bool:
    node = json.loads(cluster.kubectl("get", "node", name, "-o", "json").stdout)
    conds = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
    return conds.get("Ready") == "True"


def lease_renew_time(cluster, name: str) -> str:
    return cluster.kubectl("get", "lease", name, "-n", "kube-node-lease", "-o",
                           "jsonpath={.spec.renewTime}").stdout


def test_agent_rides_out_an_api_server_outage(split):
    ns = split.create_namespace()
    split.kubectl("apply", "-n", ns, "-f", "-",
                  input=to_yaml(pod("survivor", split.images.busybox, ["sleep", "3600"])))
    wait_ready(split, ns, "survivor")
    before = container_identity(split, ns, "survivor")
    assert before[2] == 0
    renewed_before = lease_renew_time(split, split.agent.name)

    log_offset = split.agent.log.stat().st_size
    split.server.kill()
    time.sleep(OUTAGE_SECONDS)  # the outage itself: nothing to poll while the server is gone
    outage = split.agent.log.read_bytes()[log_offset:].decode(errors="replace").splitlines()
    assert split.agent.proc.poll() is None, "the agent died with its API server:\n" + \
        "\n".join(outage[-20:])
    print(f"agent wrote {len(outage)} lines during a {OUTAGE_SECONDS} s outage")
    assert len(outage) < MAX_OUTAGE_LINES, \
        f"{len(outage)} lines in {OUTAGE_SECONDS} s:\n" + "\n".join(outage[:60])

    split.server.start()
    split.close()  # the old client's pooled connections went with the old server

    # Reconnected by itself: the lease is renewed again and the node is Ready.
    wait_until(lambda: lease_renew_time(split, split.agent.name) != renewed_before,
               timeout=30, interval=0.5, what="the node lease renewed after the outage")
    assert node_ready(split, split.agent.name)
    # It follows pods again: a new pod bound to the node starts.
    split.kubectl("apply", "-n", ns, "-f", "-",
                  input=to_yaml(pod("newcomer", split.images.busybox, ["sleep", "3600"])))
    wait_ready(split, ns, "newcomer")
    # And the pod that ran through the outage is the very same process, never restarted.
    wait_ready(split, ns, "survivor")
    assert container_identity(split, ns, "survivor") == before
    after = split.agent.log.read_bytes()[log_offset:].decode(errors="replace")
    assert "pod watch recovered" in after, after[-4000:]

    split.kubectl("delete", "pod", "--all", "-n", ns, "--grace-period=1")
