"""Fixtures for the e2e suite: a shared etcd, and one `peapod server` per module and backend.

Every test module that asks for `cluster` runs once against the SQLite backend and once
against etcd. Each test works in its own namespace (`ns`), so tests do not see each other.
"""

from __future__ import annotations

import os
import queue
import secrets
import subprocess
import threading
import time
from pathlib import Path

import kubernetes
import pytest

import harness

KUBECTL_TIMEOUT = 90  # seconds; any single kubectl call taking longer is a failure
CLIENT_TIMEOUT = (5, 60)  # (connect, read) seconds for every Python client request


@pytest.fixture(scope="session")
def etcd(tmp_path_factory):
    """A single-member etcd on free loopback ports, shared by every etcd-backed cluster
    (each cluster uses its own key prefix)."""
    e = harness.Etcd(tmp_path_factory.mktemp("etcd"))
    try:
        e.start()
        yield e
    finally:
        e.stop()


def with_default_timeout(api_client: kubernetes.client.ApiClient) -> kubernetes.client.ApiClient:
    """Give every request a timeout unless the caller chose one, so a hung server fails the
    test instead of hanging the suite."""
    rest = api_client.rest_client
    request = rest.request

    def request_with_timeout(*args, _request_timeout=None, **kwargs):
        return request(*args, _request_timeout=_request_timeout or CLIENT_TIMEOUT, **kwargs)

    rest.request = request_with_timeout
    return api_client


class Cluster:
    """A running control plane, driven the way a user drives one."""

    def __init__(self, server: harness.Peapod, workdir: Path):
        self.server = server
        self.backend = server.backend
        self.workdir = workdir
        self._client = None

    @property
    def kubeconfig(self) -> Path:
        return self.server.kubeconfig

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = KUBECTL_TIMEOUT,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run the real kubectl 1.37 against this cluster; `env` adds variables (e.g.
        kubectl's feature switches)."""
        argv = [str(harness.kubectl_bin()), "--kubeconfig", str(self.kubeconfig),
                "--cache-dir", str(self.workdir / "kube-cache"), *args]
        try:
            cp = subprocess.run(argv, input=input, capture_output=True, text=True,
                                timeout=timeout, env={**kubectl_env(self.workdir), **(env or {})})
        except subprocess.TimeoutExpired as e:
            raise AssertionError(
                f"kubectl {' '.join(args)} did not finish in {timeout}s\n"
                f"stdout:\n{e.stdout}\nstderr:\n{e.stderr}") from None
        if check and cp.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {cp.returncode}\n"
                f"stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}")
        return cp

    def kubectl_watch(self, *args: str, env: dict[str, str] | None = None) -> "Streamed":
        """Start a long-running kubectl (e.g. `get -w`) whose stdout is read line by line;
        `env` adds variables (e.g. kubectl's feature switches)."""
        argv = [str(harness.kubectl_bin()), "--kubeconfig", str(self.kubeconfig),
                "--cache-dir", str(self.workdir / "kube-cache"), *args]
        return Streamed(argv, {**kubectl_env(self.workdir), **(env or {})})

    @property
    def client(self) -> kubernetes.client.ApiClient:
        if self._client is None:
            self._client = self.new_client()
        return self._client

    def new_client(self) -> kubernetes.client.ApiClient:
        return with_default_timeout(
            kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig)))

    def create_namespace(self, name: str | None = None) -> str:
        name = name or f"e2e-{secrets.token_hex(4)}"
        kubernetes.client.CoreV1Api(self.client).create_namespace(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def kubectl_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env["HOME"] = str(workdir)  # no ~/.kube of the machine leaks in
    return env


class Streamed:
    """A subprocess whose stdout lines arrive on a queue; `expect` waits with a deadline."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.stderr = ""
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, predicate, timeout: float = 20.0) -> str:
        """The first new stdout line satisfying predicate, or AssertionError after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self.proc.wait(timeout=10)
                self.stderr = self.proc.stderr.read()
                raise AssertionError(
                    f"{' '.join(self.argv[3:])} exited {self.proc.returncode} before the "
                    f"expected line; stdout so far:\n" + "\n".join(self.seen) +
                    f"\nstderr:\n{self.stderr}")
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no expected line within {timeout}s from {' '.join(self.argv[3:])};"
                             f" stdout so far:\n" + "\n".join(self.seen))

    def stop(self) -> str:
        """Stops the process; returns what it wrote to stderr."""
        harness.stop(self.proc, grace=5)
        if self.proc.stderr and not self.proc.stderr.closed:
            self.stderr += self.proc.stderr.read()
        return self.stderr


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def cluster(request, tmp_path_factory):
    """`peapod server` on a free loopback port with a fresh data dir, one per module and
    backend, stopped by PID at teardown. A module's `PEAPOD_ARGS` list is added to the
    command line (e.g. `--no-scheduler`)."""
    backend = request.param
    etcd = request.getfixturevalue("etcd") if backend == "etcd" else None
    workdir = tmp_path_factory.mktemp(f"peapod-{backend}")
    server = harness.Peapod(workdir, backend=backend, etcd=etcd,
                            extra_args=getattr(request.module, "PEAPOD_ARGS", None))
    c = None
    try:
        server.start()
        c = Cluster(server, workdir)
        yield c
    finally:
        if c is not None:
            c.close()
        server.stop()


@pytest.fixture
def ns(cluster):
    """A fresh namespace for one test; deleted afterwards (best effort: a failing namespace
    deletion is reported by the tests that cover it, not by every test's teardown)."""
    name = cluster.create_namespace()
    yield name
    try:
        kubernetes.client.CoreV1Api(cluster.client).delete_namespace(name)
    except Exception:
        pass


@pytest.fixture
def core(cluster):
    return kubernetes.client.CoreV1Api(cluster.client)


TESTDATA = Path(__file__).parent / "testdata"


@pytest.fixture
def testdata():
    return TESTDATA


# ---------------------------------------------------------------------------------------
# Real pods: a local registry with busybox-static images, and `peapod up` nodes.

import images  # noqa: E402
import node as node_support  # noqa: E402


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """Debian's docker-registry on a free loopback port, holding the test images."""
    reg = images.start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield reg
    finally:
        reg.stop()


class TestImages:
    """Image references the tests use, all pushed to the session's registry."""

    def __init__(self, host: str):
        self.host = host
        self.busybox = f"{host}/e2e/busybox:1.0"
        self.web = f"{host}/e2e/web:1.0"
        self.tls_client = f"{host}/e2e/tls-client:1.0"


@pytest.fixture(scope="session")
def test_images(registry):
    host = registry.host_port
    images.push(host, "e2e/busybox", "1.0", images.busybox_image())
    images.push(host, "e2e/web", "1.0", images.demo_web_image())
    images.push(host, "e2e/tls-client", "1.0", images.tls_client_image())
    return TestImages(host)


def _run_node(tmp_path_factory, test_images, runtime: str, extra_args=None,
              node_ip: str = "127.0.0.1"):
    """`peapod up` with a node agent on `runtime`; at teardown every pod is deleted and the
    node must have given back everything it made."""
    n = node_support.Node(tmp_path_factory.mktemp(f"node-{runtime}"), runtime=runtime,
                          extra_args=extra_args, node_ip=node_ip)
    c = None
    try:
        n.start()
        c = Cluster(n.server, n.workdir)
        c.node = n
        c.images = test_images
        yield c
        c.kubectl("delete", "pods", "--all", "-A", "--grace-period=1", "--wait=true",
                  timeout=120)
        n.wait_clean()
    finally:
        if c is not None:
            c.close()
        n.stop()


@pytest.fixture(scope="module", params=["crun", "runc"])
def node(request, tmp_path_factory, test_images):
    """A one-node cluster, once per runtime (crun, runc)."""
    yield from _run_node(tmp_path_factory, test_images, request.param,
                         getattr(request.module, "NODE_ARGS", None))


@pytest.fixture(scope="module")
def crun_node(request, tmp_path_factory, test_images):
    """A one-node cluster on crun only, for behaviour that does not depend on the runtime."""
    yield from _run_node(tmp_path_factory, test_images, "crun",
                         getattr(request.module, "NODE_ARGS", None))


@pytest.fixture(scope="module")
def addressed_node(tmp_path_factory, test_images):
    """A crun node whose address is on an interface of its own (`node.host_address`), for
    NodePorts reached from the host."""
    with node_support.host_address("ppna") as addr:
        yield from _run_node(tmp_path_factory, test_images, "crun", node_ip=addr)


@pytest.fixture
def pod_ns(request):
    """A namespace for one node test; its pods are deleted and the node checked clean after.

    A module whose tests make controllers names them in `OWNERS` (kubectl resource list,
    cascade), e.g. `("deploy,rs", "orphan")`: they are deleted first, so that no controller
    re-creates the pods deleted after them."""
    which = next((f for f in ("node", "addressed_node") if f in request.fixturenames), "crun_node")
    node = request.getfixturevalue(which)
    name = node.create_namespace()
    yield name
    owners = getattr(request.module, "OWNERS", None)
    if owners:
        kinds, cascade = owners
        node.kubectl("delete", kinds, "--all", "-n", name, f"--cascade={cascade}",
                     "--wait=true", timeout=120)
    node.kubectl("delete", "pods", "--all", "-n", name, "--grace-period=1", "--wait=true",
                 timeout=120)
    node.node.wait_clean()
    try:
        kubernetes.client.CoreV1Api(node.client).delete_namespace(name)
    except Exception:
        pass


@pytest.fixture(scope="module")
def split(tmp_path_factory, test_images):
    """`peapod server` plus a separate `peapod agent` (the multi-node shape), so the agent can
    be killed alone; after the module, every pod is deleted and the agent must be clean."""
    workdir = tmp_path_factory.mktemp("split")
    services = node_support.ServiceRange()
    server = harness.Peapod(workdir / "server", extra_args=["--service-cidr", services.cidr])
    (workdir / "server").mkdir()
    agent = node_support.Agent(workdir, server, services=services)
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


# ---------------------------------------------------------------------------------------
# Test hosts (network namespaces joined through the host) for multi-node clusters.

import testhost  # noqa: E402


def _lan(routed: bool):
    lan = testhost.Lan(routed=routed)
    try:
        yield lan
    finally:
        lan.close()
        if lan.found_at_close:
            # Pods the test left running: close() removed them by force.
            print("\ntest hosts still held at teardown (removed by force):\n"
                  + "\n".join(lan.found_at_close))
    left = lan.leaks()
    assert not left, "the lan left behind on the host:\n" + "\n".join(left)


@pytest.fixture
def lan():
    """A bridged Lan (one shared subnet); every host, agent, bridge and route it made is
    removed after the test, also when it fails."""
    yield from _lan(routed=False)


@pytest.fixture
def routed_lan():
    """A routed Lan (a /30 per test host, the host routes between them)."""
    yield from _lan(routed=True)


@pytest.fixture
def cluster_server(request, tmp_path):
    """`peapod server` listening on 0.0.0.0:<free port> with a service range and a cluster
    CIDR of its own (`.services`, `.cluster_cidr`); with a `lan`/`routed_lan` fixture in the
    test, `--advertise-address` is the Lan's gateway (where pods and test hosts reach it, and
    a name its serving certificate carries). Stopped by PID after the test."""
    lan = next((request.getfixturevalue(f) for f in ("lan", "routed_lan")
                if f in request.fixturenames), None)
    services = node_support.ServiceRange()
    cluster_cidr = testhost.ClusterCidr()
    args = ["--service-cidr", services.cidr]
    if lan is not None:
        args += ["--advertise-address", lan.gateway]
    server = harness.Peapod(tmp_path / "server", listen_host="0.0.0.0", extra_args=args)
    if testhost.server_has_ipam(server):
        server.extra_args += ["--cluster-cidr", cluster_cidr.cidr]
    server.services = services
    server.cluster_cidr = cluster_cidr
    try:
        server.start()
        yield server
    finally:
        server.stop()
