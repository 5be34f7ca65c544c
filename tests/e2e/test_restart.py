"""Durability: what the API acknowledged survives a crash (kill -9) and a restart."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from kubernetes import client

import harness
from conftest import Cluster
from helpers import pod_manifest

PODS = 100


@pytest.fixture
def server(request, tmp_path):
    """A server of its own (this module stops and restarts it), killed by PID at the end."""
    backend = getattr(request, "param", "sqlite")
    etcd = request.getfixturevalue("etcd") if backend == "etcd" else None
    s = harness.Peapod(tmp_path, backend=backend, etcd=etcd)
    try:
        yield s
    finally:
        s.stop()


def test_kill9_loses_no_acknowledged_pod(server):
    server.start()
    kubeconfig_before = server.kubeconfig.read_text()
    c = Cluster(server, server.workdir)
    core = client.CoreV1Api(c.client)
    ns = c.create_namespace("durable")
    acknowledged = []
    for i in range(PODS):
        core.create_namespaced_pod(ns, pod_manifest(f"pod-{i:03d}"))
        acknowledged.append(f"pod-{i:03d}")
    server.kill()  # right after the last create was acknowledged
    c.close()

    server.start()
    assert server.kubeconfig.read_text() == kubeconfig_before, \
        "a restart keeps the CA, address and token a user's kubeconfig holds"
    core = client.CoreV1Api(c.client)
    names = sorted(p.metadata.name for p in core.list_namespaced_pod(ns).items)
    assert names == acknowledged
    # The restarted server keeps serving writes on top of the recovered state.
    core.create_namespaced_pod(ns, pod_manifest("after-restart"))
    assert len(core.list_namespaced_pod(ns).items) == PODS + 1
    c.close()


@pytest.mark.parametrize("server", ["sqlite", "etcd"], indirect=True)
def test_sigterm_stops_promptly_and_restart_keeps_state(server):
    server.start()
    c = Cluster(server, server.workdir)
    core = client.CoreV1Api(c.client)
    ns = c.create_namespace("kept")
    core.create_namespaced_pod(ns, pod_manifest("survivor", {"app": "kept"}))
    c.close()
    os.kill(server.proc.pid, signal.SIGTERM)
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("peapod did not exit within 15s of SIGTERM")
    server.proc = None

    server.start()
    core = client.CoreV1Api(c.client)
    pod = core.read_namespaced_pod("survivor", ns)
    assert pod.metadata.labels == {"app": "kept"}
    c.close()
