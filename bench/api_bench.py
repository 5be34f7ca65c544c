#!/usr/bin/env python3
"""peapod API benchmark: pod create, get, list of 10k pods and watch delivery latency over
HTTPS keep-alive, at 1 and 16 concurrent clients, SQLite and etcd backends side by side.

By default it starts its own etcd (Debian etcd-server) and one `peapod server` per backend on
free loopback ports, in a temporary directory, and stops them by PID when done. With
--kubeconfig it measures an already running server instead.

Client: by default the Rust load client `api-bench` (bench/api-bench; built with
`cargo build --release -p api-bench` when missing), one keep-alive HTTPS connection per
client (or, with --http2, one shared h2 connection), all clients on one thread, so that the
clients take little of the cores they share with the server. With --python-client, the
previous client: Python's http.client, one keep-alive HTTPS connection per client, each
client its own process (multiprocessing). The output states which client ran, the server's
CPU time per operation (from /proc/PID/stat) and the cores the clients used. Every loop is
bounded in time and in count; traffic goes to loopback only.

Targets (reported, never asserted): >= 5,000 pod creates/s with 16 clients on SQLite,
a list of 10k pods < 150 ms, watch delivery p99 < 10 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing as mp
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
import harness  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402

CTX = mp.get_context("fork")
MAX_OPS_PER_CLIENT = 200_000  # a count bound on every loop, on top of the time bound


# --- one client ---------------------------------------------------------------------------


class Client:
    """One keep-alive HTTPS connection with the admin token."""

    def __init__(self, kubeconfig: str):
        info = harness.KubeconfigInfo(Path(kubeconfig))
        host, port = info.host_port()
        self.conn = http.client.HTTPSConnection(host, port, context=info.ssl_context(),
                                                timeout=120)
        self.headers = {"Authorization": f"Bearer {info.token}", "Accept": "application/json",
                        "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: bytes | None = None,
             ok: tuple[int, ...] = (200, 201)) -> bytes:
        self.conn.request(method, path, body=body, headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status not in ok:
            raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")
        return data

    def close(self) -> None:
        self.conn.close()


def pod_body(name: str) -> bytes:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "load"}},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36",
                                 "command": ["sleep", "3600"],
                                 "ports": [{"containerPort": 8080}],
                                 "resources": {"requests": {"cpu": "100m",
                                                            "memory": "64Mi"}}}]},
    }).encode()


def pods_path(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/pods"


# --- workers (each in its own process) -----------------------------------------------------


def worker(kind: str, kubeconfig: str, wid: int, params: dict, barrier, results) -> None:
    """Run one client: connect, wait for all clients, then loop until the deadline or the
    count bound. Reports (latencies in s, start, end, acks) where acks maps name -> ack time."""
    try:
        c = Client(kubeconfig)
        c.call("GET", "/version")  # TLS handshake and keep-alive set up before timing
        ns, duration, count = params["ns"], params["duration"], params.get("count",
                                                                           MAX_OPS_PER_CLIENT)
        lat: list[float] = []
        acks: dict[str, int] = {}
        rng = random.Random(wid)
        barrier.wait()
        start = time.monotonic()
        deadline = start + duration
        i = 0
        while i < count and time.monotonic() < deadline:
            if kind in ("create", "watch-writer"):
                name = f"{params['prefix']}-{wid}-{i}"
                t = time.monotonic_ns()
                c.call("POST", pods_path(ns), pod_body(name))
                done = time.monotonic_ns()
                if kind == "watch-writer":
                    acks[name] = done
            elif kind == "get":
                name = rng.choice(params["names"])
                t = time.monotonic_ns()
                c.call("GET", f"{pods_path(ns)}/{name}")
                done = time.monotonic_ns()
            elif kind == "list":
                t = time.monotonic_ns()
                c.call("GET", pods_path(ns))
                done = time.monotonic_ns()
            else:
                raise ValueError(kind)
            lat.append((done - t) / 1e9)
            i += 1
        end = time.monotonic()
        c.close()
        results.put((wid, lat, start, end, acks, None))
    except Exception as e:  # reported by the parent
        barrier.abort()
        results.put((wid, [], 0.0, 0.0, {}, f"{type(e).__name__}: {e}"))


def run_clients(kind: str, kubeconfig: str, clients: int, params: dict) -> dict:
    barrier = CTX.Barrier(clients)
    results = CTX.Queue()
    procs = [CTX.Process(target=worker, args=(kind, kubeconfig, w, params, barrier, results))
             for w in range(clients)]
    for p in procs:
        p.start()
    out = [results.get(timeout=params["duration"] + 600) for _ in procs]  # bounded wait
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    errors = [e for *_, e in out if e]
    if errors:
        raise RuntimeError(f"{kind} x{clients}: {errors[0]}")
    lat = sorted(x for _, l, *_ in out for x in l)
    wall = max(o[3] for o in out) - min(o[2] for o in out)
    acks = {k: v for o in out for k, v in o[4].items()}
    return {"ops": len(lat), "wall": wall, "ops_s": len(lat) / wall if wall else 0.0,
            "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3, "acks": acks}


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    # nearest rank
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[min(k, len(sorted_values) - 1)]


# --- watch delivery -----------------------------------------------------------------------


def watcher(kubeconfig: str, ns: str, rv: str, ready, stop_at: float, results) -> None:
    """Hold one watch open and record when each pod's ADDED event arrives."""
    try:
        c = Client(kubeconfig)
        c.conn.request("GET", f"{pods_path(ns)}?watch=1&resourceVersion={rv}", headers=c.headers)
        resp = c.conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"watch: {resp.status} {resp.read()[:300]!r}")
        arrivals: dict[str, int] = {}
        while time.monotonic() < stop_at:
            line = resp.readline()
            if not line:
                break
            now = time.monotonic_ns()
            ev = json.loads(line)
            name = ev["object"]["metadata"]["name"]
            if name == "warmup":
                ready.set()
            elif ev["type"] == "ADDED":
                arrivals[name] = now
            if name == "stop":
                break
        results.put((arrivals, None))
    except Exception as e:
        results.put(({}, f"{type(e).__name__}: {e}"))


def watch_latency(kubeconfig: str, ns: str, clients: int, duration: float) -> dict:
    ctl = Client(kubeconfig)
    rv = json.loads(ctl.call("GET", pods_path(ns) + "?limit=1"))["metadata"]["resourceVersion"]
    ready, results = CTX.Event(), CTX.Queue()
    w = CTX.Process(target=watcher, args=(kubeconfig, ns, rv, ready, time.monotonic() +
                                          duration + 120, results))
    w.start()
    try:
        ctl.call("POST", pods_path(ns), pod_body("warmup"))
        if not ready.wait(timeout=30):
            raise RuntimeError("watch did not deliver the warm-up event within 30s")
        r = run_clients("watch-writer", kubeconfig, clients,
                        {"ns": ns, "duration": duration, "prefix": f"w{clients}"})
        ctl.call("POST", pods_path(ns), pod_body("stop"))
        arrivals, err = results.get(timeout=120)
        if err:
            raise RuntimeError(err)
    finally:
        w.join(timeout=30)
        if w.is_alive():
            w.kill()
        for name in ("warmup", "stop"):
            ctl.call("DELETE", f"{pods_path(ns)}/{name}", ok=(200, 202, 404))
        ctl.close()
    acks = r.pop("acks")
    lat = sorted(max(0, arrivals[n] - t) / 1e9 for n, t in acks.items() if n in arrivals)
    missing = len(acks) - len(lat)
    return {"ops": len(lat), "ops_s": r["ops_s"], "p50_ms": pct(lat, 50) * 1e3,
            "p99_ms": pct(lat, 99) * 1e3, "missing": missing}


# --- the Rust client (bench/api-bench) -------------------------------------------------------


def api_bench_bin(args) -> Path:
    """The api-bench binary: --api-bench, else $CARGO_TARGET_DIR (or ./target)/release, built
    with cargo when missing."""
    if args.api_bench:
        if not args.api_bench.exists():
            raise SystemExit(f"{args.api_bench} not found")
        return args.api_bench
    target = Path(os.environ.get("CARGO_TARGET_DIR", harness.REPO / "target"))
    path = target / "release" / "api-bench"
    if not path.exists():
        print(f"building {path}: cargo build --release -p api-bench", flush=True)
        subprocess.run(["cargo", "build", "--release", "-p", "api-bench"], cwd=harness.REPO,
                       check=True, timeout=1800)
        if not path.exists():
            raise SystemExit(f"cargo built, but {path} is not there")
    return path


def rust_run(args, kubeconfig: str, op: str, ns: str, clients: int, duration: float,
             max_ops: int) -> dict:
    """One api-bench run; its JSON line in the shape of the Python path's results."""
    argv = [str(args.api_bench_bin), "--kubeconfig", kubeconfig, "--namespace", ns,
            "--op", op, "--clients", str(clients), "--duration-secs", str(duration),
            "--max-ops", str(max_ops), "--list-size", str(args.list_pods),
            "--fill-timeout-secs", str(args.fill_timeout), "--json"]
    if args.http2:
        argv.append("--http2")
    p = subprocess.run(argv, capture_output=True, text=True,
                       timeout=duration + args.fill_timeout + 300)
    if p.returncode != 0:
        raise RuntimeError(f"api-bench --op {op} x{clients}: exit {p.returncode}: "
                           f"{p.stderr.strip()[-400:]}")
    lines = p.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"api-bench --op {op} x{clients}: no output")
    r = json.loads(lines[-1])
    nan = float("nan")
    out = {"ops": r["ops"], "wall": r["wall_s"], "ops_s": r["ops_s"],
           "p50_ms": r["p50_ms"] if r["p50_ms"] is not None else nan,
           "p99_ms": r["p99_ms"] if r["p99_ms"] is not None else nan,
           "max_ms": r["max_ms"] if r["max_ms"] is not None else nan}
    for k in ("missing", "items"):
        if k in r:
            out[k] = r[k]
    return out


# --- CPU accounting -----------------------------------------------------------------------


def proc_cpu_s(pid: int | None) -> float | None:
    """utime + stime of a process, in seconds, from /proc/PID/stat (None if unavailable)."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": fields from 3 on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> list[int] | None:
    """The machine-wide CPU counters (user nice system idle iowait irq softirq steal ...)."""
    try:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None


def children_cpu_s() -> float:
    """CPU of the finished children of this process (the clients of either path)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# --- one backend --------------------------------------------------------------------------


def phase(out: dict, key: str, pids: dict, fn, *args) -> dict | None:
    """Run one measurement; a failure is recorded in its row and the run goes on. Records the
    CPU the server (and etcd) spent per operation and the cores the clients used."""
    before = {k: proc_cpu_s(p) for k, p in pids.items()}
    client0, machine0, t0 = children_cpu_s(), machine_cpu(), time.monotonic()
    try:
        r = fn(*args)
    except Exception as e:
        out[key] = {"error": str(e)[:200]}
        print(f"    {key}: error: {str(e)[:300]}", flush=True)
        return None
    elapsed = time.monotonic() - t0
    r.pop("acks", None)
    ops = r.get("ops") or 0
    for k, p in pids.items():
        after = proc_cpu_s(p)
        if before[k] is not None and after is not None and ops:
            r[f"{k}_cpu_us_op"] = (after - before[k]) * 1e6 / ops
            r[f"{k}_cores"] = (after - before[k]) / elapsed
    r["client_cores"] = (children_cpu_s() - client0) / elapsed
    machine1 = machine_cpu()
    if machine0 and machine1 and len(machine1) >= 8:
        # Cores the hypervisor gave to other guests (steal) and cores left idle.
        hz = os.sysconf("SC_CLK_TCK")
        r["steal_cores"] = (machine1[7] - machine0[7]) / hz / elapsed
        r["idle_cores"] = (machine1[3] + machine1[4] - machine0[3] - machine0[4]) / hz / elapsed
    out[key] = r
    return r


def bench_namespaces(ctl: "Client") -> dict[str, str]:
    """One fresh namespace per phase group, so phases do not see each other's pods."""
    suffix = f"{os.getpid()}-{int(time.time())}"
    nss = {k: f"bench-{k}-{suffix}" for k in ("create", "list", "watch")}
    for ns in nss.values():
        ctl.call("POST", "/api/v1/namespaces", json.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}).encode())
    return nss


def bench_server(kubeconfig: str, args, pids: dict[str, int | None]) -> dict[str, dict]:
    if not args.python_client:
        return bench_server_rust(kubeconfig, args, pids)
    ctl = Client(kubeconfig)
    nss = bench_namespaces(ctl)
    out: dict[str, dict] = {}
    d = args.duration
    for n in args.clients:
        phase(out, f"create pod|{n}", pids, run_clients, "create", kubeconfig, n,
              {"ns": nss["create"], "duration": d, "prefix": f"c{n}"})
    page = json.loads(ctl.call("GET", pods_path(nss["create"]) + "?limit=500"))
    created = [p["metadata"]["name"] for p in page["items"]]
    for n in args.clients:
        phase(out, f"get pod|{n}", pids, run_clients, "get", kubeconfig, n,
              {"ns": nss["create"], "duration": d, "names": created})

    # Fill a namespace with --list-pods pods (16 writers, bounded in time), then list it whole.
    per = -(-args.list_pods // 16)
    fill = phase(out, "create pod (fill)|16", pids, run_clients, "create", kubeconfig, 16,
                 {"ns": nss["list"], "duration": args.fill_timeout, "count": per, "prefix": "l"})
    label = f"list {fill['ops'] if fill else '?'} pods"
    for n in args.clients:
        phase(out, f"{label}|{n}", pids, run_clients, "list", kubeconfig, n,
              {"ns": nss["list"], "duration": d, "count": 50})

    for n in args.clients:
        phase(out, f"watch delivery|{n}", pids, watch_latency, kubeconfig, nss["watch"], n, d)
    ctl.close()
    return out


def bench_server_rust(kubeconfig: str, args, pids: dict[str, int | None]) -> dict[str, dict]:
    """The same phases as bench_server, measured by api-bench."""
    ctl = Client(kubeconfig)
    nss = bench_namespaces(ctl)
    ctl.close()
    out: dict[str, dict] = {}
    d = args.duration
    for n in args.clients:
        phase(out, f"create pod|{n}", pids, rust_run, args, kubeconfig, "create",
              nss["create"], n, d, MAX_OPS_PER_CLIENT * n)
    for n in args.clients:
        phase(out, f"get pod|{n}", pids, rust_run, args, kubeconfig, "get", nss["create"], n, d,
              MAX_OPS_PER_CLIENT * n)
    # Fill a namespace with --list-pods pods (16 writers, bounded in time), then list it whole.
    fill = phase(out, "create pod (fill)|16", pids, rust_run, args, kubeconfig, "create",
                 nss["list"], 16, args.fill_timeout, args.list_pods)
    label = f"list {fill['ops'] if fill else '?'} pods"
    for n in args.clients:
        phase(out, f"{label}|{n}", pids, rust_run, args, kubeconfig, "list", nss["list"], n, d,
              50 * n)
    for n in args.clients:
        phase(out, f"watch delivery|{n}", pids, rust_run, args, kubeconfig, "watch",
              nss["watch"], n, d, MAX_OPS_PER_CLIENT * n)
    return out


def start_and_bench(backend: str, workdir: Path, etcd, args) -> dict[str, dict]:
    # Without the scheduler: no node exists, so it would try every benchmark pod once and
    # record it unschedulable (a status patch, an event and two watch deliveries each, about
    # 1.5 ms of server CPU a pod), and the list phase that follows a 10,000-pod fill would
    # measure that backlog instead of the list. The scheduler has its own benchmark.
    server = harness.Peapod(workdir / backend, backend=backend, etcd=etcd, binary=args.bin,
                            extra_args=["--no-scheduler"])
    server.workdir.mkdir(parents=True, exist_ok=True)
    try:
        server.start()
        pids = {"server": server.proc.pid if server.proc else None}
        if backend == "etcd" and etcd is not None and etcd.proc is not None:
            pids["etcd"] = etcd.proc.pid
        return bench_server(str(server.kubeconfig), args, pids)
    finally:
        server.stop()


# --- report -------------------------------------------------------------------------------


def report(results: dict[str, dict[str, dict]], args) -> str:
    backends = list(results)
    rows = []
    errors: list[str] = []
    keys = []
    for b in backends:
        for k in results[b]:
            if k not in keys:
                keys.append(k)
    head = f"{'operation':<22}{'clients':>8}" + "".join(
        f" | {b + ' ops/s':>13}{'p50 ms':>9}{'p99 ms':>9}" for b in backends)
    rows.append(f"client: {client_label(args)}")
    rows.append(head)
    rows.append("-" * len(head))
    for k in keys:
        op, clients = k.split("|")
        line = f"{op:<22}{clients:>8}"
        for b in backends:
            r = results[b].get(k)
            if r is None:
                line += f" | {'-':>13}{'':>9}{'':>9}"
                continue
            if "error" in r:
                line += f" | {'error':>13}{'':>9}{'':>9}"
                errors.append(f"{b} {op} x{clients}: {r['error']}")
                continue
            p50 = f"{r['p50_ms']:.2f}" if "p50_ms" in r else ""
            p99 = f"{r['p99_ms']:.2f}" if "p99_ms" in r else ""
            note = f" ({r['missing']} missing)" if r.get("missing") else ""
            line += f" | {r['ops_s']:>13,.0f}{p50:>9}{p99:>9}{note}"
        rows.append(line)
    rows += [f"  {e}" for e in errors]

    # CPU: the server's (and etcd's) CPU time per operation, and the cores each side used.
    rows.append("")
    rows.append("server CPU per operation (µs) [etcd's]; cores used during each phase by the "
                "server [etcd] and the clients; cores idle and stolen by the hypervisor")
    head = f"{'operation':<22}{'clients':>8}" + "".join(
        f" | {b + ' µs/op':>16}{'srv cores':>13}{'clients':>9}{'idle':>6}{'steal':>6}"
        for b in backends)
    rows.append(head)
    rows.append("-" * len(head))
    for k in keys:
        op, clients = k.split("|")
        line = f"{op:<22}{clients:>8}"
        for b in backends:
            r = results[b].get(k) or {}
            if "server_cpu_us_op" not in r:
                line += f" | {'-':>16}{'':>13}{'':>9}{'':>6}{'':>6}"
                continue
            us = f"{r['server_cpu_us_op']:,.0f}"
            cores = f"{r['server_cores']:.2f}"
            if "etcd_cpu_us_op" in r:
                us += f" [{r['etcd_cpu_us_op']:,.0f}]"
                cores += f" [{r['etcd_cores']:.2f}]"
            line += f" | {us:>16}{cores:>13}{r['client_cores']:>9.2f}"
            line += "".join(f"{r[k]:>6.2f}" if k in r else f"{'':>6}"
                            for k in ("idle_cores", "steal_cores"))
        rows.append(line)
    return "\n".join(rows)


def client_label(args) -> str:
    if args.python_client:
        return (f"Python {platform.python_version()} http.client, one keep-alive HTTPS "
                f"connection per client, each client a separate process")
    proto = ("HTTP/2, all clients multiplexed on one connection" if args.http2
             else "HTTP/1.1, one keep-alive HTTPS connection per client")
    return f"api-bench (Rust, tokio + hyper, one thread), {proto}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = Path(os.environ.get("CARGO_TARGET_DIR", harness.REPO / "target"))
    ap.add_argument("--bin", type=Path, default=target / "release" / "peapod")
    ap.add_argument("--backends", default="sqlite,etcd")
    ap.add_argument("--kubeconfig", help="measure this running server instead of starting one")
    ap.add_argument("--clients", default="1,16")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per timed phase")
    ap.add_argument("--list-pods", type=int, default=10_000)
    ap.add_argument("--fill-timeout", type=float, default=300.0)
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--python-client", action="store_true",
                    help="measure with the Python client (one process per client) instead of "
                         "api-bench, for comparison")
    ap.add_argument("--http2", action="store_true",
                    help="api-bench: multiplex all clients over one HTTP/2 connection")
    ap.add_argument("--api-bench", type=Path,
                    help="the api-bench binary (default: $CARGO_TARGET_DIR/release/api-bench, "
                         "built when missing)")
    ap.add_argument("--server-pid", type=int,
                    help="with --kubeconfig: the server's PID, to report its CPU per operation")
    args = ap.parse_args()
    args.clients = [int(x) for x in args.clients.split(",")]
    if args.python_client and args.http2:
        ap.error("--http2 is an api-bench option; the Python client speaks HTTP/1.1")
    if not args.python_client:
        args.api_bench_bin = api_bench_bin(args)

    print(f"client: {client_label(args)}; "
          f"machine: {os.cpu_count()} cores shared by clients and server")
    results: dict[str, dict[str, dict]] = {}
    if args.kubeconfig:
        print(f"server: running, {args.kubeconfig}")
        results["server"] = bench_server(args.kubeconfig, args, {"server": args.server_pid})
    else:
        print(f"server: {args.bin} (own processes on loopback)")
        backends = args.backends.split(",")
        with tempfile.TemporaryDirectory(prefix="peapod-bench-") as tmp:
            workdir = Path(tmp)
            etcd = None
            try:
                if "etcd" in backends:
                    (workdir / "etcd").mkdir()
                    etcd = harness.Etcd(workdir / "etcd").start()
                for b in backends:
                    print(f"... {b}", flush=True)
                    results[b] = start_and_bench(b, workdir, etcd, args)
            finally:
                if etcd:
                    etcd.stop()
    print()
    print(report(results, args))
    print()
    print("targets (not asserted): >= 5,000 creates/s at 16 clients on sqlite; "
          "list of 10k pods < 150 ms; watch delivery p99 < 10 ms")
    print("watch delivery = time from a create's HTTP response to its ADDED event on an "
          "open watch (one watcher, its own connection), 0 when the event arrived first; "
          "ops/s there is the writers' rate")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    emit_figures(results)
    return 0


def emit_figures(results: dict[str, dict[str, dict]]) -> None:
    """The machine-readable figures `make bench` compares with the recorded ones."""
    for backend, phases in results.items():
        for key, r in phases.items():
            if "error" in r:
                continue
            op, clients = key.split("|")
            base = f"api/{backend}/{op}/x{clients}"
            for field, better in (("ops_s", "higher"), ("p50_ms", "lower"), ("p99_ms", "lower"),
                                  ("server_cpu_us_op", "lower")):
                if field in r:
                    figures.emit(f"{base}/{field}", r[field], better)


if __name__ == "__main__":
    sys.exit(main())
