"""One node on loopback for the benchmarks that run real pods (pod_startup.py,
workload_bench.py): a `docker-registry` serving the busybox-static test image as
`bench/busybox:1.0`, `peapod server`, and `peapod agent` as a separate process (so the
agent's CPU and RSS are read apart from the control plane's), all in a temporary directory,
stopped by PID when the `with` block ends — after the bench's own cleanup has let the agent
release the pods it made."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
import harness  # noqa: E402
import images  # noqa: E402
import node as node_support  # noqa: E402

import kubernetes  # noqa: E402


@dataclass
class OneNode:
    tmp: Path
    image: str
    server: harness.Peapod
    agent: object  # subprocess.Popen
    api: kubernetes.client.ApiClient


def helper_pids(data_dir: Path) -> list[int]:
    """The per-pod helpers (pause, monitor) an agent with this data directory runs."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"peapod-shim" in cmd and str(data_dir).encode() in cmd:
            out.append(int(pid))
    return out


def pod_mounts(data_dir: Path) -> list[str]:
    """What pods of the agent with this data directory still have mounted (netns, shm,
    volumes, rootfs): empty once it has torn every sandbox down."""
    prefix = str(data_dir) + "/"
    with open("/proc/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]


@contextlib.contextmanager
def one_node(binary: Path, runtime: str, prefix: str,
             cleanup: Callable[[OneNode], None]) -> Iterator[OneNode]:
    """Starts the pieces, yields them, and on the way out (even on failure) calls `cleanup`
    while the agent still runs, then stops everything."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    reg = images.start_registry(tmp / "registry")
    server = harness.Peapod(tmp / "server", binary=binary, extra_args=[])
    (tmp / "server").mkdir()
    agent = None
    agent_dir = tmp / "agent"
    agent_dir.mkdir()
    cidr, bridge = node_support.unique_network()
    started = None
    try:
        images.push(reg.host_port, "bench/busybox", "1.0", images.busybox_image())
        server.start()
        pki = server.data_dir / "pki"
        out = agent_dir / "stdout"
        agent = harness.spawn([str(binary), "agent", "--server", f"https://127.0.0.1:{server.port}",
                               "--token-file", str(pki / "admin.token"), "--ca-file", str(pki / "ca.crt"),
                               "--node-name", "bench-node", "--node-ip", "127.0.0.1",
                               "--pod-cidr", cidr, "--cluster-cidr", cidr, "--cni-bridge", bridge,
                               "--cgroup-root", node_support.cgroup_root(bridge), "--runtime", runtime,
                               "--proxy-table", node_support.proxy_table(bridge),
                               "--kubelet-port", "0", "--data-dir", str(agent_dir / "data"),
                               "--resolv-conf", str(node_support.resolv_conf(agent_dir))],
                              agent_dir / "agent.log", stdout=out)
        deadline = time.monotonic() + 60
        while "peapod agent ready" not in out.read_text():
            if agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("agent did not start:\n" + harness.tail(agent_dir / "agent.log"))
            time.sleep(0.05)
        api = kubernetes.config.new_client_from_config(config_file=str(server.kubeconfig))
        started = OneNode(tmp=tmp, image=f"{reg.host_port}/bench/busybox:1.0", server=server,
                          agent=agent, api=api)
        yield started
    finally:
        if started is not None and agent is not None and agent.poll() is None:
            try:  # the agent releases what it made before it stops
                cleanup(started)
                # A pod deleted with no grace leaves the API at once; its containers and
                # sandbox go after. Stopping the agent before they have would leave them.
                deadline = time.monotonic() + 120
                while pod_mounts(agent_dir / "data") and time.monotonic() < deadline:
                    time.sleep(0.1)
            except Exception as e:  # noqa: BLE001 - report and go on stopping things
                print(f"cleanup: {e}", file=sys.stderr)
        harness.stop(agent)
        server.stop()
        reg.stop()
        node_support.remove_network(cidr, bridge)
