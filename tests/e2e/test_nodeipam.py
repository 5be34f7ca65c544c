"""Node IPAM end to end: `peapod agent` without `--pod-cidr` registers its Node, waits for the
podCIDR the control plane's range allocator writes into it, and then runs pods in that range
(its CNI bridge, cluster DNS address and masquerade rule follow the assigned CIDR).

The server's `--cluster-cidr` is the test's own /24 (`node.unique_network()`), cut in /24s:
its only subnet goes to the agent, so no address of the default 10.42.0.0/16 appears on the
host."""

from __future__ import annotations

import ipaddress
import json
import re

import pytest

import harness
import node as node_support
from conftest import Cluster
from helpers import to_yaml
from test_node_pods import pod, wait_ready

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def ipam_split(tmp_path_factory, test_images):
    workdir = tmp_path_factory.mktemp("ipam")
    services = node_support.ServiceRange()
    agent = node_support.Agent(workdir, None, services=services, pod_cidr_from_ipam=True)
    server = harness.Peapod(workdir / "server", extra_args=[
        "--service-cidr", services.cidr, "--cluster-cidr", agent.pod_cidr,
        "--node-cidr-mask-size", "24"])
    agent.server = server
    (workdir / "server").mkdir()
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


def test_agent_without_pod_cidr_takes_the_one_node_ipam_assigns(ipam_split):
    agent = ipam_split.agent
    log = ANSI.sub("", agent.log.read_text(errors="replace"))
    assert "waiting for podCIDR" in log, log[-3000:]
    node = json.loads(ipam_split.kubectl("get", "node", agent.name, "-o", "json").stdout)
    assert node["spec"]["podCIDR"] == agent.pod_cidr
    assert node["spec"]["podCIDRs"] == [agent.pod_cidr]
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "True", ready
    server_log = ANSI.sub("", ipam_split.server.log.read_text(errors="replace"))
    assert "set node PodCIDR" in server_log

    ns = ipam_split.create_namespace()
    ipam_split.kubectl("apply", "-n", ns, "-f", "-",
                       input=to_yaml(pod("in-range", ipam_split.images.busybox,
                                         ["sleep", "3600"])))
    running = wait_ready(ipam_split, ns, "in-range")
    ip = ipaddress.ip_address(running["status"]["podIP"])
    assert ip in ipaddress.ip_network(agent.pod_cidr), (ip, agent.pod_cidr)


def test_a_restarted_agent_keeps_its_pod_cidr(ipam_split):
    agent = ipam_split.agent
    harness.stop(agent.proc)
    agent.proc = None
    agent.start()
    log = ANSI.sub("", agent.log.read_text(errors="replace"))
    assert "node has podCIDR" in log, log[-3000:]
    spec = json.loads(ipam_split.kubectl("get", "node", agent.name, "-o", "json").stdout)["spec"]
    assert spec["podCIDRs"] == [agent.pod_cidr]
