"""Events expire after --event-ttl (kube-apiserver's default is 1 h; here 3 s)."""

from __future__ import annotations

import datetime
import time

import pytest
from kubernetes import client

import harness
from conftest import Cluster

DEADLINE = 20  # seconds to wait for the expiry sweep (runs every ttl / 6)


@pytest.fixture
def short_ttl_server(tmp_path):
    s = harness.Peapod(tmp_path, extra_args=["--event-ttl", "3s"])
    try:
        yield s.start()
    finally:
        s.stop()


def test_events_expire_after_ttl(short_ttl_server):
    c = Cluster(short_ttl_server, short_ttl_server.workdir)
    core = client.CoreV1Api(c.client)
    now = datetime.datetime.now(datetime.timezone.utc)
    core.create_namespaced_event("default", {
        "metadata": {"name": "short-lived"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Testing", "message": "expires soon", "type": "Normal",
        "firstTimestamp": now.isoformat(), "lastTimestamp": now.isoformat(),
        "source": {"component": "e2e"},
    })
    assert [e.metadata.name for e in core.list_namespaced_event("default").items] == ["short-lived"]
    deadline = time.monotonic() + DEADLINE
    while core.list_namespaced_event("default").items:
        assert time.monotonic() < deadline, "event still there long after its TTL"
        time.sleep(0.2)
    c.close()
