#!/usr/bin/env python3
"""peapod streaming benchmark: exec and logs through the API server to the node agent.

Starts a registry with the busybox-static test image and `peapod up` on loopback in a
temporary directory (stopped by PID at the end), runs one sleeping pod, then measures:

  * `kubectl exec p -- true`, end to end (process start of kubectl included);
  * the API-level exec round trip: WebSocket upgrade through the API server, the agent's
    `crun exec`, the exit status back (the Python client's stream, one connection each);
  * `kubectl logs -f` delivery: a container prints its clock every 50 ms; the time from
    that stamp to the line reaching the reader.

  * port-forward throughput: a 64 MiB file over HTTP through `kubectl port-forward`
    (SPDY over WebSocket, kubectl 1.37's default, and plain SPDY), against the same
    download straight from the pod IP, the ceiling, in the same run.

Percentiles and rates are printed, never asserted. Aims: exec round trip p50 < 30 ms at
the API level; port-forward at least 50 % of the direct throughput.
"""

from __future__ import annotations

import argparse
import calendar
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402
import harness  # noqa: E402
import images  # noqa: E402
import node as node_support  # noqa: E402

import kubernetes  # noqa: E402
from kubernetes.stream import stream  # noqa: E402


def pct(values, p):
    s = sorted(values)
    return s[max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))] if s else float("nan")


def download_rates(url: str, runs: int = 5) -> list[float]:
    """MB/s of each of `runs` downloads of `url`."""
    import urllib.request
    rates = []
    for _ in range(runs):
        t0 = time.monotonic()
        with urllib.request.urlopen(url, timeout=120) as r:
            n = 0
            while chunk := r.read(1 << 20):
                n += len(chunk)
        rates.append(n / 1e6 / (time.monotonic() - t0))
    return rates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(harness.peapod_bin()))
    ap.add_argument("--runtime", default="crun")
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    reg = images.start_registry(tmp / "registry")
    node = node_support.Node(tmp / "node", runtime=args.runtime)
    node.server.binary = Path(args.bin)
    kubectl = str(harness.kubectl_bin())
    try:
        images.push(reg.host_port, "bench/busybox", "1.0", images.busybox_image())
        image = f"{reg.host_port}/bench/busybox:1.0"
        node.start()
        kc = str(node.server.kubeconfig)

        def k(*a, **kw):
            return subprocess.run([kubectl, "--kubeconfig", kc, *a], capture_output=True,
                                  text=True, timeout=120, **kw)
        k("run", "target", f"--image={image}", "--", "sleep", "3600")
        k("run", "clock", f"--image={image}", "--", "sh", "-c",
          "while true; do echo tick; usleep 50000; done")
        k("run", "blob", f"--image={image}", "--", "sh", "-c",
          "mkdir -p /tmp/www && dd if=/dev/urandom of=/tmp/www/blob bs=1M count=64 2>/dev/null"
          " && exec httpd -f -p 80 -h /tmp/www")
        k("wait", "--for=condition=Ready", "pod/target", "pod/clock", "pod/blob", "--timeout=120s")

        e2e = []
        for _ in range(args.runs):
            t0 = time.monotonic()
            cp = k("exec", "target", "--", "true")
            e2e.append((time.monotonic() - t0) * 1000)
            assert cp.returncode == 0, cp.stderr

        core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(config_file=kc))
        api = []
        for _ in range(args.runs):
            t0 = time.monotonic()
            resp = stream(core.connect_get_namespaced_pod_exec, "target", "default",
                          command=["true"], stderr=True, stdin=False, stdout=True, tty=False,
                          _preload_content=False)
            resp.run_forever(timeout=20)
            api.append((time.monotonic() - t0) * 1000)
            resp.close()

        # The stamp is the CRI log's: when the container's monitor read the line.
        follow = subprocess.Popen([kubectl, "--kubeconfig", kc, "logs", "-f", "--tail=0",
                                   "--timestamps", "clock"], stdout=subprocess.PIPE, text=True)
        delays = []
        deadline = time.monotonic() + 15
        for line in follow.stdout:
            now = time.time_ns()
            stamp = line.split(" ", 1)[0]
            if stamp.endswith("Z") and "." in stamp:
                whole, frac = stamp[:-1].split(".")
                secs = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
                ns = int(secs) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])
                delays.append((now - ns) / 1e6)
            if len(delays) >= 150 or time.monotonic() > deadline:
                break
        harness.stop(follow, grace=5)

        blob_ip = k("get", "pod", "blob", "-o", "jsonpath={.status.podIP}").stdout.strip()
        rates = {"direct to the pod IP (ceiling)": download_rates(f"http://{blob_ip}/blob")}
        for label, env in (("kubectl port-forward (SPDY over WebSocket)", {}),
                           ("kubectl port-forward (plain SPDY)",
                            {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"})):
            pf = subprocess.Popen([kubectl, "--kubeconfig", kc, "port-forward", "pod/blob", ":80"],
                                  stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
            try:
                line = pf.stdout.readline()
                port = re.match(r"Forwarding from 127\.0\.0\.1:(\d+)", line).group(1)
                rates[label] = download_rates(f"http://127.0.0.1:{port}/blob")
            finally:
                harness.stop(pf, grace=5)
        k("delete", "pod", "target", "clock", "blob", "--grace-period=1")

        print(f"\nstreaming through the API server to the agent, runtime {args.runtime}")
        print(f"{'measure':<46}{'p50 ms':>10}{'p99 ms':>10}")
        print(f"{'kubectl exec p -- true (end to end)':<46}{pct(e2e, 50):>10.1f}{pct(e2e, 99):>10.1f}")
        print(f"{'exec round trip, API level (Python stream)':<46}{pct(api, 50):>10.1f}{pct(api, 99):>10.1f}")
        print(f"{'logs -f delivery (' + str(len(delays)) + ' lines)':<46}{pct(delays, 50):>10.1f}{pct(delays, 99):>10.1f}")
        ceiling = statistics.median(rates["direct to the pod IP (ceiling)"])
        print(f"\n{'64 MiB download':<46}{'MB/s':>10}{'of direct':>10}")
        for label, r in rates.items():
            m = statistics.median(r)
            print(f"{label:<46}{m:>10.0f}{m / ceiling:>10.0%}")
        base = f"stream/{args.runtime}"
        for name, samples in (("kubectl exec", e2e), ("exec api", api), ("logs -f", delays)):
            figures.emit(f"{base}/{name}/p50_ms", pct(samples, 50), "lower")
            figures.emit(f"{base}/{name}/p99_ms", pct(samples, 99), "lower")
        for label, r in rates.items():
            if label != "direct to the pod IP (ceiling)":
                figures.emit(f"{base}/port-forward {label}/MB_s", statistics.median(r), "higher")
        return 0
    finally:
        node.stop()
        reg.stop()


if __name__ == "__main__":
    sys.exit(main())
