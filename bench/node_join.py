#!/usr/bin/env python3
"""peapod node join benchmark: time from `ip netns exec H peapod agent` to the node's Ready.

Starts its own pieces in a temporary directory and stops them by PID: a `peapod server`
listening on 0.0.0.0 (the control plane on the host) and, N times, a fresh test host on a
bridged Lan (tests/e2e/testhost.py: a network namespace with a veth to the host bridge)
running an agent that joins the server. Per run it measures

  * start -> "peapod agent ready" (the agent's own readiness line on stdout);
  * start -> Node Ready=True as a client sees it (read every 10 ms);
  * restart -> "peapod agent ready" for the same agent under a new `ip netns exec`
    (kill -9, start again: re-registration on an existing Node and data dir).

then stops the agent, deletes the Node and the test host. Every address is inside the
Lan's namespaces or on the host's Lan bridge. Numbers are printed (p50, p90, max) with
`figure` lines, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402
import harness  # noqa: E402
import node as node_support  # noqa: E402
import testhost  # noqa: E402

import kubernetes  # noqa: E402


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))]


def node_ready(core, name: str) -> bool:
    try:
        node = core.read_node(name, _request_timeout=5)
    except kubernetes.client.ApiException:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", type=Path, default=harness.peapod_bin())
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="node-join-") as tmp:
        work = Path(tmp)
        lan = testhost.Lan()
        services = node_support.ServiceRange()
        server = harness.Peapod(work / "server", binary=args.bin, listen_host="0.0.0.0",
                                extra_args=["--service-cidr", services.cidr,
                                            "--advertise-address", lan.gateway])
        server.services, server.cluster_cidr = services, testhost.ClusterCidr()
        if testhost.server_has_ipam(server):
            server.extra_args += ["--cluster-cidr", server.cluster_cidr.cidr]
        agent_ready, node_ready_s, restart_ready = [], [], []
        try:
            server.start()
            api = kubernetes.config.new_client_from_config(config_file=str(server.kubeconfig))
            core = kubernetes.client.CoreV1Api(api)
            for i in range(args.runs):
                host = lan.add_host()
                agent = testhost.JoinedAgent(work / f"agent-{i}", host, server)
                agent.start()
                agent_ready.append(agent.ready_seconds)
                while not node_ready(core, agent.name):
                    if time.monotonic() - agent.started_at > 90:
                        raise RuntimeError(f"node {agent.name} not Ready after 90s")
                    time.sleep(0.01)
                node_ready_s.append(time.monotonic() - agent.started_at)
                agent.kill()
                agent.start()
                restart_ready.append(agent.ready_seconds)
                agent.close()
                core.delete_node(agent.name)
                host.close()
        finally:
            lan.close()
            server.stop()
    print(f"node join under ip netns exec, {args.runs} runs (seconds)")
    print(f"{'':34} {'p50':>7} {'p90':>7} {'max':>7}")
    for label, key, values in (
            ("start -> agent ready", "agent_ready", agent_ready),
            ("start -> Node Ready (client)", "node_ready", node_ready_s),
            ("restart -> agent ready", "restart_ready", restart_ready)):
        print(f"{label:34} {pct(values, 50):7.3f} {pct(values, 90):7.3f} {max(values):7.3f}")
        for p in (50, 90):
            figures.emit(f"node_join/{key}/p{p}_ms", pct(values, p) * 1000, "lower")


if __name__ == "__main__":
    main()
