"""A real cluster on test hosts: a `peapod server` on the host and agents joined from network
namespaces (`tests/e2e/testhost.py`), each started under `ip netns exec` with a cgroup root of
its own. Covers what issue 16 asks of the nodes themselves: registration with distinct
podCIDRs, pod addresses from the node's range, spreading, DaemonSets following nodes, drain
and uncordon across nodes, re-adoption by an agent restarted under a new `ip netns exec`, and
nothing left behind on the host or inside the test hosts. (Pod-to-pod across nodes is
test_podnet's.)"""

from __future__ import annotations

import ipaddress
import json
import time

import pytest

import harness
import node as node_support
import testhost
from conftest import Cluster
from helpers import to_yaml, wait_until

POD_TIMEOUT = 120


def node_ready_seconds(c: Cluster, agent: testhost.JoinedAgent, timeout: float = 90) -> float:
    """Seconds from the agent's start to its Node's Ready=True (polled every 20 ms)."""
    def ready():
        cp = c.kubectl("get", "node", agent.name, "-o", "json", check=False)
        if cp.returncode != 0:
            return False
        conds = {x["type"]: x["status"] for x in json.loads(cp.stdout)["status"].get(
            "conditions", [])}
        return conds.get("Ready") == "True"
    wait_until(ready, timeout=timeout, interval=0.02, what=f"node {agent.name} Ready")
    return time.monotonic() - agent.started_at


def get(c: Cluster, *args: str) -> dict:
    return json.loads(c.kubectl("get", *args, "-o", "json").stdout)


def running(p: dict) -> bool:
    conds = {x["type"]: x["status"] for x in p.get("status", {}).get("conditions", [])}
    return p.get("status", {}).get("phase") == "Running" and conds.get("Ready") == "True"


def pods(c: Cluster, ns: str, selector: str) -> list[dict]:
    return get(c, "pods", "-n", ns, "-l", selector)["items"]


def wait_running(c: Cluster, ns: str, selector: str, count: int) -> list[dict]:
    def check():
        items = pods(c, ns, selector)
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        return live if len(live) == count and all(running(p) for p in live) else None
    return wait_until(check, timeout=POD_TIMEOUT, interval=0.5,
                      what=f"{count} running pods {selector} in {ns}")


def web_pod(c: Cluster, name: str, labels: dict[str, str], node: str | None = None) -> dict:
    spec = {"containers": [{"name": "web", "image": c.images.web,
                            "ports": [{"containerPort": 80}]}],
            "terminationGracePeriodSeconds": 1}
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": spec}


def sleeper_template(labels: dict[str, str]) -> dict:
    return {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": "app", "image": "{busybox}",
                                     "command": ["sh", "-c",
                                                 "trap 'exit 0' TERM; sleep 3600 & wait"]}],
                     "terminationGracePeriodSeconds": 1}}


def with_image(doc: dict, c: Cluster) -> dict:
    return json.loads(json.dumps(doc).replace("{busybox}", c.images.busybox))


def http_from(host: testhost.TestHost, ip: str, port: int = 80) -> str:
    """GET / on ip:port from inside a test host (the node reaches its own pods directly)."""
    cp = host.run(["python3", "-c",
                   "import sys, urllib.request; "
                   f"print(urllib.request.urlopen('http://{ip}:{port}/', timeout=5).status)"],
                  timeout=30)
    return cp.stdout.strip() or cp.stderr.strip()


def assert_clean(agents: list[testhost.JoinedAgent], lan: testhost.Lan) -> None:
    """Every pod gone: nothing of theirs on the host or in the test hosts (the agents still
    run; their bridge, their pod network's vxlan device and the routes on them are theirs by
    design)."""
    for a in agents:
        a.wait_clean()
    for h in lan.hosts:
        left = wait_until_clean(lambda: h.leaks(allow_links=("peapod0", "peapod.1")))
        assert not left, f"{h.name} left behind:\n" + "\n".join(left)


def wait_until_clean(leaks, timeout: float = 30):
    deadline = time.monotonic() + timeout
    left = leaks()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = leaks()
    return left


class TwoNodes:
    def __init__(self, c: Cluster, lan: testhost.Lan, server: harness.Peapod,
                 agents: list[testhost.JoinedAgent], workdir):
        self.c, self.lan, self.server, self.agents, self.workdir = c, lan, server, agents, workdir
        self.ready_seconds = []

    def add_agent(self) -> testhost.JoinedAgent:
        host = self.lan.add_host()
        agent = testhost.JoinedAgent(self.workdir / f"agent-{len(self.agents)}", host,
                                     self.server).start()
        self.agents.append(agent)
        self.ready_seconds.append(node_ready_seconds(self.c, agent))
        return agent


@pytest.fixture(scope="module")
def two(tmp_path_factory, test_images):
    """A server and two agents on test hosts of a bridged Lan; at the end every pod is
    deleted and nothing may be left on the host or the test hosts, agents stopped, the Lan
    closed and checked."""
    workdir = tmp_path_factory.mktemp("cluster")
    lan = testhost.Lan()
    lan.forward_loopback(int(test_images.host.rsplit(":", 1)[1]))
    services = node_support.ServiceRange()
    cluster_cidr = testhost.ClusterCidr()
    server = harness.Peapod(workdir / "server", listen_host="0.0.0.0",
                            extra_args=["--service-cidr", services.cidr,
                                        "--advertise-address", lan.gateway])
    if testhost.server_has_ipam(server):
        server.extra_args += ["--cluster-cidr", cluster_cidr.cidr]
    server.services, server.cluster_cidr = services, cluster_cidr
    c = t = None
    try:
        server.start()
        c = Cluster(server, workdir)
        c.images = test_images
        t = TwoNodes(c, lan, server, [], workdir)
        t.add_agent()
        t.add_agent()
        yield t
        c.kubectl("delete", "deploy,ds,rs", "--all", "-A", "--wait=true", timeout=120)
        c.kubectl("delete", "pods", "--all", "-A", "--grace-period=1", "--wait=true",
                  timeout=120)
        assert_clean([a for a in t.agents if a.running], lan)
        print(f"\nagent start -> node Ready under ip netns exec: "
              f"{', '.join(f'{s:.2f}s' for s in t.ready_seconds)}")
    finally:
        if c is not None:
            c.close()
        try:
            lan.close()
        finally:
            server.stop()
    agents = t.agents if t is not None else []
    left = lan.leaks() + [x for a in agents for x in a.leaks()]
    left += [f"cgroup {d}" for a in agents for d in testhost.cgroup_dirs(a.cgroup_root)]
    assert not left, "teardown left behind:\n" + "\n".join(left)


@pytest.fixture
def ns(two):
    name = new_namespace(two.c)
    yield name
    two.c.kubectl("delete", "deploy,ds,rs", "--all", "-n", name, "--wait=true", timeout=120)
    two.c.kubectl("delete", "pods", "--all", "-n", name, "--grace-period=1", "--wait=true",
                  timeout=120)
    two.c.kubectl("delete", "namespace", name, "--wait=false", check=False)


def new_namespace(c: Cluster) -> str:
    """A fresh namespace, once its `default` ServiceAccount exists (pods need it)."""
    name = c.create_namespace()
    wait_until(lambda: c.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
               timeout=30, what=f"serviceaccount {name}/default")
    return name


def test_both_nodes_ready_with_distinct_pod_cidrs_inside_the_cluster_cidr(two):
    nodes = {n["metadata"]["name"]: n for n in get(two.c, "nodes")["items"]}
    assert set(nodes) == {a.name for a in two.agents}
    cidrs = []
    for a in two.agents:
        n = nodes[a.name]
        conds = {x["type"]: x["status"] for x in n["status"]["conditions"]}
        assert conds["Ready"] == "True", n["status"]["conditions"]
        assert {x["type"]: x["address"] for x in n["status"]["addresses"]}["InternalIP"] == a.host.ip
        cidr = n["spec"]["podCIDR"]
        assert two.server.cluster_cidr.contains(cidr), (cidr, two.server.cluster_cidr.cidr)
        assert n["spec"]["podCIDRs"] == [cidr]
        cidrs.append(ipaddress.ip_network(cidr))
    assert not cidrs[0].overlaps(cidrs[1]), cidrs
    wide = two.c.kubectl("get", "nodes", "-o", "wide").stdout
    for a in two.agents:
        assert a.host.ip in wide, wide


def test_pods_get_addresses_from_their_nodes_range_and_answer(two, ns):
    c = two.c
    for i, a in enumerate(two.agents):
        c.kubectl("apply", "-n", ns, "-f", "-",
                  input=to_yaml(web_pod(c, f"web-{i}", {"app": f"web-{i}"}, node=a.name)))
    for i, a in enumerate(two.agents):
        p = wait_running(c, ns, f"app=web-{i}", 1)[0]
        assert p["spec"]["nodeName"] == a.name
        cidr = get(c, "node", a.name)["spec"]["podCIDR"]
        assert ipaddress.ip_address(p["status"]["podIP"]) in ipaddress.ip_network(cidr), \
            (p["status"]["podIP"], cidr)
        assert p["status"]["hostIP"] == a.host.ip
        # The pod's node reaches it on its bridge (inside the test host's netns).
        assert http_from(a.host, p["status"]["podIP"]) == "200"


def test_scheduler_spreads_a_deployments_pods_over_both_nodes(two, ns):
    c = two.c
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "spread"},
              "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "spread"}},
                       "template": sleeper_template({"app": "spread"})}}
    c.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(with_image(deploy, c)))
    items = wait_running(c, ns, "app=spread", 4)
    per_node = {a.name: 0 for a in two.agents}
    for p in items:
        per_node[p["spec"]["nodeName"]] += 1
    assert min(per_node.values()) >= 1, per_node


def test_daemon_set_runs_one_pod_per_node_and_follows_a_third_node(two, ns):
    c = two.c
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "everywhere"},
          "spec": {"selector": {"matchLabels": {"app": "everywhere"}},
                   "template": sleeper_template({"app": "everywhere"})}}
    c.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(with_image(ds, c)))
    items = wait_running(c, ns, "app=everywhere", 2)
    assert sorted(p["spec"]["nodeName"] for p in items) == sorted(a.name for a in two.agents)

    third = two.add_agent()
    try:
        items = wait_running(c, ns, "app=everywhere", 3)
        assert sorted(p["spec"]["nodeName"] for p in items) == \
            sorted(a.name for a in two.agents)
        status = get(c, "ds", "everywhere", "-n", ns)["status"]
        assert status["desiredNumberScheduled"] == 3
        wait_until(lambda: get(c, "ds", "everywhere", "-n", ns)["status"].get(
            "numberReady") == 3, timeout=60, what="numberReady 3")
    finally:
        # The third node leaves again: its pods go first, then the agent and the Node.
        c.kubectl("delete", "ds", "everywhere", "-n", ns, "--wait=true", timeout=120)
        wait_until(lambda: not pods(c, ns, "app=everywhere"), timeout=POD_TIMEOUT,
                   what="daemon pods gone")
        third.wait_clean()
        third.stop()
        two.agents.remove(third)
        c.kubectl("delete", "node", third.name)


def test_drain_moves_pods_to_the_other_node_and_uncordon_reopens(two, ns):
    c = two.c
    a, b = two.agents[:2]
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "movers"},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "movers"}},
                       "template": sleeper_template({"app": "movers"})}}
    c.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(with_image(deploy, c)))
    items = wait_running(c, ns, "app=movers", 2)
    assert {p["spec"]["nodeName"] for p in items} == {a.name, b.name}
    try:
        out = c.kubectl("drain", a.name, "--ignore-daemonsets", "--timeout=90s",
                        timeout=120).stdout
        assert f"node/{a.name} drained" in out, out
        assert get(c, "node", a.name)["spec"]["unschedulable"] is True
        items = wait_running(c, ns, "app=movers", 2)
        assert {p["spec"]["nodeName"] for p in items} == {b.name}, \
            [(p["metadata"]["name"], p["spec"]["nodeName"]) for p in items]
        a.wait_clean()
        printed = c.kubectl("get", "node", a.name).stdout
        assert "Ready,SchedulingDisabled" in printed, printed
    finally:
        c.kubectl("uncordon", a.name)
    assert "unschedulable" not in get(c, "node", a.name)["spec"]
    # Schedulable again: a pod pinned there by selector runs there.
    c.kubectl("apply", "-n", ns, "-f", "-",
              input=to_yaml(web_pod(c, "back", {"app": "back"}, node=a.name)))
    assert wait_running(c, ns, "app=back", 1)[0]["spec"]["nodeName"] == a.name


def test_agent_restarted_under_a_new_ip_netns_exec_readopts_its_pods(two, ns):
    c = two.c
    a = two.agents[0]
    c.kubectl("apply", "-n", ns, "-f", "-",
              input=to_yaml(web_pod(c, "kept", {"app": "kept"}, node=a.name)))
    before = wait_running(c, ns, "app=kept", 1)[0]
    ip = before["status"]["podIP"]
    assert http_from(a.host, ip) == "200"
    status = before["status"]["containerStatuses"][0]
    pids_before = {pid for pid, _ in testhost._processes_naming(str(a.data_dir))}

    a.kill()  # as a crash: the pod keeps running without its agent
    assert http_from(a.host, ip) == "200"
    a.start()
    # The restarted agent reports the same container, never restarted, still answering.
    def readopted():
        p = get(c, "pod", "kept", "-n", ns)
        s = p["status"]["containerStatuses"][0]
        return p if running(p) and s["containerID"] == status["containerID"] else None
    after = wait_until(readopted, timeout=60, what="pod re-adopted")
    s = after["status"]["containerStatuses"][0]
    assert s["restartCount"] == status["restartCount"] == 0
    assert s["state"]["running"]["startedAt"] == status["state"]["running"]["startedAt"]
    assert after["status"]["podIP"] == ip
    assert http_from(a.host, ip) == "200"
    # The same shim and container processes: nothing was started again.
    assert pids_before <= {pid for pid, _ in testhost._processes_naming(str(a.data_dir))}
    # ... and the re-adopted pod is torn down cleanly by the new agent.
    c.kubectl("delete", "pod", "kept", "-n", ns, "--grace-period=1", "--wait=true",
              timeout=120)
    a.wait_clean()


@pytest.mark.parametrize("runtime", ["crun", "runc"])
def test_teardown_leaves_nothing_on_the_host_or_the_test_hosts(lan, cluster_server, tmp_path,
                                                               test_images, runtime):
    """The shared fixtures end to end on a bridged Lan: two agents, a pod on each, an agent
    restart, then everything deleted and stopped; the fixtures' own checks run after."""
    teardown_leaves_nothing(lan, cluster_server, tmp_path, test_images, runtime)


def test_teardown_leaves_nothing_on_a_routed_lan(routed_lan, cluster_server, tmp_path,
                                                 test_images):
    teardown_leaves_nothing(routed_lan, cluster_server, tmp_path, test_images, "crun")


def teardown_leaves_nothing(lan, cluster_server, tmp_path, test_images, runtime):
    lan.forward_loopback(int(test_images.host.rsplit(":", 1)[1]))
    c = Cluster(cluster_server, tmp_path)
    c.images = test_images
    try:
        agents = [testhost.JoinedAgent(tmp_path / f"a{i}", lan.add_host(), cluster_server,
                                       runtime=runtime).start()
                  for i in range(2)]
        ns = new_namespace(c)
        for i, a in enumerate(agents):
            c.kubectl("apply", "-n", ns, "-f", "-",
                      input=to_yaml(web_pod(c, f"p{i}", {"app": "p"}, node=a.name)))
        wait_running(c, ns, "app=p", 2)
        # The leak check sees running pods (so its silence later means something): their
        # mounts, their cgroups in every hierarchy, shims, runtime state and netns pins.
        hierarchies = len(testhost.cgroup_dirs(agents[0].cgroup_root))
        assert hierarchies >= 1
        for a in agents:
            kinds = {}
            for entry in a.leaks():
                kinds.setdefault(entry.split()[0], []).append(entry)
            assert {"mount", "cgroup", "process", "runtime", "netns"} <= set(kinds), kinds
            assert len(kinds["cgroup"]) == hierarchies, kinds["cgroup"]
        agents[1].stop()
        agents[1].start()
        c.kubectl("delete", "pods", "--all", "-n", ns, "--grace-period=1", "--wait=true",
                  timeout=120)
        assert_clean(agents, lan)
        roots = [a.cgroup_root for a in agents]
        hosts = list(lan.hosts)
        for a in agents:
            a.stop()
        for h in hosts:
            # A stopped node keeps its pod-network routes and vxlan device (pods keep talking
            # through an agent restart); `cleanup-network` is what removes them.
            assert h.run([str(cluster_server.binary), "cleanup-network"]).returncode == 0
            assert not h.leaks(allow_links=("peapod0",)), h.leaks()
        lan.close()
        left = lan.leaks() + [x for a in agents for x in a.leaks()]
        left += [f"cgroup {d}" for r in roots for d in testhost.cgroup_dirs(r)]
        assert not left, "left behind:\n" + "\n".join(left)
    finally:
        c.close()



def test_a_failed_tests_running_pods_are_cleaned_up_by_the_lan(lan, cluster_server, tmp_path,
                                                              test_images):
    """A test that fails with pods running (agent killed, nothing deleted) still leaves
    nothing: Lan.close() kills the pods' processes (their cgroups, the shims), unmounts
    under the agent's data dir and removes its cgroups, then the netns and links."""
    try:
        lan.forward_loopback(int(test_images.host.rsplit(":", 1)[1]))
        c = Cluster(cluster_server, tmp_path)
        c.images = test_images
        a = testhost.JoinedAgent(tmp_path / "a", lan.add_host(), cluster_server).start()
        ns = new_namespace(c)
        c.kubectl("apply", "-n", ns, "-f", "-",
                  input=to_yaml(web_pod(c, "orphan", {"app": "o"}, node=a.name)))
        wait_running(c, ns, "app=o", 1)
        c.close()
        a.kill()
        assert a.leaks(), "a running pod shows in the leak check"
    finally:
        lan.close()
    left = lan.leaks() + a.leaks() + [f"cgroup {d}" for d in testhost.cgroup_dirs(a.cgroup_root)]
    assert not left, "left behind:\n" + "\n".join(left)
