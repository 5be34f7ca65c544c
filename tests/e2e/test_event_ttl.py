"""Events expire after --event-ttl (kube-apiserver's default is 1 h; here 3 s), counted from
when they were written, as upstream's etcd leases count, not from the times they report."""

from __future__ import annotations

import datetime
import time

import pytest
from kubernetes import client

import harness
from conftest import Cluster

TTL = 3  # seconds
DEADLINE = 20  # seconds to wait for the expiry sweep (runs every ttl / 6)


@pytest.fixture
def short_ttl_server(tmp_path):
    s = harness.Peapod(tmp_path, extra_args=["--event-ttl", f"{TTL}s"])
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


def test_an_event_reported_late_lives_a_ttl_after_its_write(short_ttl_server):
    c = Cluster(short_ttl_server, short_ttl_server.workdir)
    core = client.CoreV1Api(c.client)
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
    core.create_namespaced_event("default", {
        "metadata": {"name": "reported-late"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Testing", "message": "happened two hours ago", "type": "Normal",
        "firstTimestamp": long_ago.isoformat(), "lastTimestamp": long_ago.isoformat(),
        "source": {"component": "e2e"},
    })
    written = time.monotonic()

    def present() -> bool:
        return "reported-late" in [e.metadata.name for e in
                                   core.list_namespaced_event("default").items]
    # Sweeps run every ttl / 6; the ones before a TTL has passed since the write keep it.
    while time.monotonic() - written < TTL * 0.8:
        assert present(), f"expired {time.monotonic() - written:.1f}s after its write"
        time.sleep(0.1)
    deadline = written + DEADLINE
    while present():
        assert time.monotonic() < deadline, "event still there long after its TTL"
        time.sleep(0.1)
    assert time.monotonic() - written >= TTL - 0.5
    c.close()
