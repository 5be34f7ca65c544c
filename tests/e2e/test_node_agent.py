"""`peapod agent` as its own process joining `peapod server` (the multi-node shape): it
registers, runs pods, and after a kill -9 during which a pod was force-deleted, the restarted
agent releases everything that pod held (processes, mounts, netns, veth, IP lease, cgroup)."""

from __future__ import annotations

import pytest

import harness
import node as node_support
from conftest import Cluster
from helpers import to_yaml, wait_until
from test_node_pods import pod, wait_ready


@pytest.fixture(scope="module")
def split(tmp_path_factory, test_images):
    workdir = tmp_path_factory.mktemp("split")
    server = harness.Peapod(workdir / "server")
    (workdir / "server").mkdir()
    agent = node_support.Agent(workdir, server)
    c = None
    try:
        server.start()
        agent.start()
        c = Cluster(server, workdir)
        c.agent = agent
        c.images = test_images
        yield c
        c.kubectl("delete", "pods", "--all", "-A", "--grace-period=1", "--wait=true",
                  timeout=120)
        node_support.wait_clean(agent.data_dir, agent.bridge)
    finally:
        if c is not None:
            c.close()
        agent.stop()
        server.stop()


def test_agent_joins_and_cleans_up_a_pod_deleted_while_it_was_down(split):
    ns = split.create_namespace()
    split.kubectl("get", "node", split.agent.name)
    p = pod("orphan", split.images.busybox, ["sleep", "3600"])
    keep = pod("keeper", split.images.busybox, ["sleep", "3600"])
    split.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(p, keep))
    wait_ready(split, ns, "orphan")
    before = wait_ready(split, ns, "keeper")
    assert node_support.leaks(split.agent.data_dir, split.agent.bridge)  # pods hold things

    split.agent.kill()
    split.kubectl("delete", "pod", "orphan", "-n", ns, "--grace-period=0", "--force")
    split.agent.start()

    # The keeper is re-adopted untouched; everything the orphan held is given back.
    def orphan_released():
        held = node_support.leaks(split.agent.data_dir, split.agent.bridge)
        netns = [x for x in held if x.startswith("netns")]
        return len(netns) == 1
    wait_until(orphan_released, timeout=30, what="the force-deleted pod's sandbox released")
    after = wait_ready(split, ns, "keeper")
    assert (after["status"]["containerStatuses"][0]["containerID"]
            == before["status"]["containerStatuses"][0]["containerID"])
    split.kubectl("delete", "pod", "keeper", "-n", ns, "--grace-period=1")
    node_support.wait_clean(split.agent.data_dir, split.agent.bridge)
