"""The test-host harness itself (tests/e2e/testhost.py): Lans carry TCP between test hosts
and to the host's gateway in both shapes, despite br_netfilter passing bridged frames
through the host's netfilter; Lans side by side get their own subnets; the loopback forward
reaches the host; and closing removes everything, also after a failure."""

from __future__ import annotations

import ipaddress
import socket
import threading
from pathlib import Path

import pytest

import testhost
from helpers import wait_until


def serve_once(host: testhost.TestHost, port: int, log: Path):
    """A one-shot TCP server inside the test host answering b"hi"."""
    proc = host.spawn(["python3", "-c",
                       "import socket; s = socket.socket(); "
                       "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                       f"s.bind(('{host.ip}', {port})); s.listen(); print('up', flush=True); "
                       "c, _ = s.accept(); c.sendall(b'hi'); c.close()"], log, stdout=log)
    wait_until(lambda: "up" in log.read_text() or proc.poll() is not None, timeout=20,
               interval=0.02, what="server in the test host")
    assert proc.poll() is None, log.read_text()
    return proc


def fetch(host: testhost.TestHost, ip: str, port: int) -> str:
    cp = host.run(["python3", "-c",
                   f"import socket; print(socket.create_connection(('{ip}', {port}), "
                   "timeout=5).recv(10).decode())"], timeout=30)
    return cp.stdout.strip() or cp.stderr.strip()


@pytest.mark.parametrize("routed", [False, True], ids=["bridged", "routed"])
def test_hosts_reach_each_other_and_the_gateway(routed, tmp_path):
    with testhost.Lan(routed=routed) as lan:
        a, b = lan.add_host(), lan.add_host()
        net = ipaddress.ip_network(lan.subnet)
        assert ipaddress.ip_address(a.ip) in net and ipaddress.ip_address(b.ip) in net
        assert net.subnet_of(ipaddress.ip_network("172.16.0.0/12"))
        same_subnet = a.run(["ip", "-4", "route"]).stdout
        # Bridged: one subnet (host-gw material); routed: each its own /30 (vxlan material).
        assert (b.ip.rsplit(".", 1)[0] + ".0/24" in same_subnet) == (not routed), same_subnet
        proc = serve_once(b, 8080, tmp_path / "b.log")
        assert fetch(a, b.ip, 8080) == "hi"
        proc.wait(timeout=10)
        # The host's side: a listener on the gateway address.
        srv = socket.create_server((lan.gateway, 0))
        port = srv.getsockname()[1]
        threading.Thread(target=lambda: srv.accept()[0].sendall(b"gw"), daemon=True).start()
        try:
            assert fetch(a, lan.gateway, port) == "gw"
        finally:
            srv.close()
        assert a.leaks() == [] and b.leaks() == []
    assert lan.leaks() == []


def test_lans_side_by_side_get_their_own_subnets():
    lans = []
    try:
        for routed in (False, True, False):
            lans.append(testhost.Lan(routed=routed))
        nets = [ipaddress.ip_network(lan.subnet) for lan in lans]
        assert not any(x.overlaps(y) for i, x in enumerate(nets) for y in nets[i + 1:]), nets
        assert len({lan.link for lan in lans}) == 3
    finally:
        for lan in lans:
            lan.close()
    assert [x for lan in lans for x in lan.leaks()] == []


def test_loopback_forward_reaches_the_host():
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    threading.Thread(target=lambda: srv.accept()[0].sendall(b"registry"), daemon=True).start()
    try:
        with testhost.Lan() as lan:
            lan.forward_loopback(port)
            host = lan.add_host()  # added after the forward: gets it too
            assert fetch(host, "127.0.0.1", port) == "registry"
    finally:
        srv.close()


def test_close_removes_everything_after_a_failure(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with testhost.Lan() as lan:
            host = lan.add_host()
            # Something left running in the netns (as a failed test's would be).
            proc = host.spawn(["sleep", "600"], tmp_path / "sleep.log")
            assert host.leaks() and "process" in host.leaks()[0]
            raise RuntimeError("boom")
    assert proc.wait(timeout=10) is not None
    assert lan.leaks() == []
    lan.close()  # idempotent
