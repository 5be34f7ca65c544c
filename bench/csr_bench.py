#!/usr/bin/env python3
"""How long a node waits for its client certificate: time from POSTing a
`kubernetes.io/kube-apiserver-client-kubelet` CertificateSigningRequest to reading the
issued certificate in its status (auto-approval by csrapproving, then csrsigning), as the
joining agent sees it. Starts its own `peapod server` (SQLite) on a free loopback port in a
temporary directory and stops it by PID. Prints percentiles; asserts nothing.

    PEAPOD_BIN=target/debug/peapod .venv/bin/python bench/csr_bench.py [--count 50]
"""

from __future__ import annotations

import argparse
import base64
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
import harness  # noqa: E402
import kubernetes  # noqa: E402


def request(workdir: Path, i: int) -> str:
    key = workdir / f"n{i}.key"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
                    "-out", str(key)], check=True, capture_output=True, timeout=30)
    return subprocess.run(["openssl", "req", "-new", "-key", str(key), "-subj",
                           f"/O=system:nodes/CN=system:node:bench-{i}"],
                          check=True, capture_output=True, text=True, timeout=30).stdout


def percentile(sorted_ms: list[float], p: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(round(p / 100 * (len(sorted_ms) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="csr-bench-") as tmp:
        workdir = Path(tmp)
        requests = [request(workdir, i) for i in range(args.count)]
        server = harness.Peapod(workdir)
        try:
            server.start()
            client = kubernetes.config.new_client_from_config(config_file=str(server.kubeconfig))
            api = kubernetes.client.CertificatesV1Api(client)
            took = []
            for i, req in enumerate(requests):
                body = {"apiVersion": "certificates.k8s.io/v1",
                        "kind": "CertificateSigningRequest",
                        "metadata": {"name": f"bench-{i}"},
                        "spec": {"request": base64.b64encode(req.encode()).decode(),
                                 "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                                 "usages": ["digital signature", "client auth"]}}
                start = time.monotonic()
                api.create_certificate_signing_request(body)
                deadline = start + 30
                while time.monotonic() < deadline:
                    csr = api.read_certificate_signing_request(f"bench-{i}")
                    if csr.status and csr.status.certificate:
                        break
                    time.sleep(0.002)
                else:
                    raise SystemExit(f"bench-{i} not issued within 30s")
                took.append((time.monotonic() - start) * 1000)
            took.sort()
            print(f"CSR create -> certificate issued, {len(took)} requests, one at a time "
                  f"(2 ms polling): p50 {percentile(took, 50):.1f} ms, "
                  f"p90 {percentile(took, 90):.1f} ms, p99 {percentile(took, 99):.1f} ms, "
                  f"max {took[-1]:.1f} ms")
            client.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
