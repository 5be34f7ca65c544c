"""Security context (issue 6): the user, group, supplemental groups and fsGroup a container
runs with (`id`, volume ownership), capabilities (a plain container cannot reconfigure the
network, one with NET_ADMIN or a privileged one can; privileged gets every capability),
a read-only root filesystem, and runAsNonRoot refusing a root image with the kubelet's
message."""

from __future__ import annotations

import re

from helpers import to_yaml, wait_until
from test_node_pods import get_pod, pod, wait_ready


def logs(n, ns: str, name: str, container: str, marker: str) -> str:
    return wait_until(lambda: (lambda out: out if marker in out else None)(
        n.kubectl("logs", name, "-n", ns, "-c", container).stdout), what=f"{container}'s output")


def test_user_groups_and_fs_group(crun_node, pod_ns):
    n = crun_node
    p = pod("ids", n.images.busybox, ["sh", "-c",
            "id; stat -c 'dir-group=%g' /data; touch /data/f; stat -c 'file-group=%g' /data/f;"
            " echo done; sleep 3600"])
    p["spec"]["securityContext"] = {"runAsUser": 1000, "runAsGroup": 3000,
                                    "supplementalGroups": [4000], "fsGroup": 2000}
    p["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    p["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "ids")
    out = logs(n, pod_ns, "ids", "app", "done")
    m = re.search(r"uid=(\d+).* gid=(\d+).* groups=([\d,()a-z]+)", out)
    assert m and m.group(1) == "1000" and m.group(2) == "3000", out
    groups = set(re.findall(r"\d+", m.group(3)))
    assert {"2000", "4000"} <= groups, out
    assert "dir-group=2000" in out and "file-group=2000" in out, out


def test_capabilities_and_privileged_mode(node, pod_ns):
    n = node
    probe = ["sh", "-c", "grep CapEff /proc/self/status; ip link set lo mtu 1400"
             " && echo network=changed || echo network=refused; sleep 3600"]
    p = pod("caps", n.images.busybox, probe)
    base = p["spec"]["containers"][0]
    p["spec"]["containers"] = [
        {**base, "name": "plain"},
        {**base, "name": "netadmin", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
        {**base, "name": "privileged", "securityContext": {"privileged": True}}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "caps")
    assert "network=refused" in logs(n, pod_ns, "caps", "plain", "network=")
    assert "network=changed" in logs(n, pod_ns, "caps", "netadmin", "network=")
    privileged = logs(n, pod_ns, "caps", "privileged", "network=")
    assert "network=changed" in privileged
    # Every capability the node's agent holds (as containerd: a runtime cannot grant more).
    with open(f"/proc/{n.server.proc.pid}/status") as f:
        agent = int(re.search(r"CapEff:\s*([0-9a-f]+)", f.read()).group(1), 16)
    eff = int(re.search(r"CapEff:\s*([0-9a-f]+)", privileged).group(1), 16)
    assert eff == agent, privileged


def test_read_only_root_filesystem(crun_node, pod_ns):
    n = crun_node
    p = pod("ro-root", n.images.busybox, ["sh", "-c", "touch /x 2>&1; echo done; sleep 3600"])
    p["spec"]["containers"][0]["securityContext"] = {"readOnlyRootFilesystem": True}
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "ro-root")
    assert "Read-only file system" in logs(n, pod_ns, "ro-root", "app", "done")


def test_run_as_non_root_refuses_a_root_image(crun_node, pod_ns):
    n = crun_node
    p = pod("must-not-be-root", n.images.busybox, ["sleep", "3600"])
    p["spec"]["securityContext"] = {"runAsNonRoot": True}
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))

    def waiting():
        st = get_pod(n, pod_ns, "must-not-be-root").get("status", {}).get("containerStatuses")
        w = (st[0].get("state", {}).get("waiting") or {}) if st else {}
        return w if w.get("reason") == "CreateContainerConfigError" else None
    w = wait_until(waiting, timeout=30, what="CreateContainerConfigError")
    assert w["message"].startswith("container has runAsNonRoot and image will run as root"), w
    described = n.kubectl("describe", "pod", "must-not-be-root", "-n", pod_ns).stdout
    assert "container has runAsNonRoot and image will run as root" in described


def test_safe_sysctls_apply_and_unsafe_ones_are_refused(crun_node, pod_ns):
    n = crun_node
    p = pod("tuned", n.images.busybox, ["sh", "-c",
            "cat /proc/sys/net/ipv4/ip_local_port_range; echo done; sleep 3600"])
    p["spec"]["securityContext"] = {"sysctls": [
        {"name": "net.ipv4.ip_local_port_range", "value": "20000 30000"}]}
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "tuned")
    assert "20000\t30000" in logs(n, pod_ns, "tuned", "app", "done")
    bad = pod("untuned", n.images.busybox, ["sleep", "3600"])
    bad["spec"]["securityContext"] = {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(bad))

    def waiting():
        st = get_pod(n, pod_ns, "untuned").get("status", {}).get("containerStatuses")
        return ((st[0].get("state", {}).get("waiting") or {}).get("message") or None) if st else None
    assert wait_until(waiting, timeout=30, what="the refusal") == \
        'forbidden sysctl: "kernel.msgmax" not allowlisted'


def test_seccomp_profiles_runtime_default_unconfined_and_localhost(node, pod_ns):
    n = node
    # A Localhost profile lives under the node's DATA/seccomp, as the kubelet's <root>/seccomp.
    profiles = n.node.data_dir / "seccomp"
    profiles.mkdir(exist_ok=True)
    (profiles / "no-mkdir.json").write_text(
        '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"],'
        ' "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}')
    probe = ["sh", "-c", "grep '^Seccomp:' /proc/self/status;"
             " unshare -U true && echo userns=made || echo userns=refused;"
             " mkdir /tmp/d && echo mkdir=ok || echo mkdir=refused; echo done; sleep 3600"]
    p = pod("seccomp", n.images.busybox, probe)
    base = p["spec"]["containers"][0]
    p["spec"]["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
    p["spec"]["containers"] = [
        {**base, "name": "default"},
        {**base, "name": "unconfined",
         "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
        {**base, "name": "localhost", "securityContext": {
            "seccompProfile": {"type": "Localhost", "localhostProfile": "no-mkdir.json"}}},
        # As containerd, a privileged container runs without a filter.
        {**base, "name": "privileged", "securityContext": {"privileged": True}}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "seccomp")
    out = {c: logs(n, pod_ns, "seccomp", c, "done")
           for c in ("default", "unconfined", "localhost", "privileged")}
    assert re.search(r"Seccomp:\s+2", out["default"]), out["default"]
    assert "userns=refused" in out["default"] and "mkdir=ok" in out["default"]
    assert re.search(r"Seccomp:\s+0", out["unconfined"]), out["unconfined"]
    assert "userns=made" in out["unconfined"]
    assert re.search(r"Seccomp:\s+2", out["localhost"]) and "mkdir=refused" in out["localhost"]
    assert re.search(r"Seccomp:\s+0", out["privileged"]), out["privileged"]

    # A profile that is not there: the container cannot be created, and says why.
    q = pod("no-profile", n.images.busybox, ["sleep", "3600"])
    q["spec"]["securityContext"] = {
        "seccompProfile": {"type": "Localhost", "localhostProfile": "absent.json"}}
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(q))

    def waiting():
        s = (get_pod(n, pod_ns, "no-profile").get("status", {}).get("containerStatuses")
             or [{}])[0]
        return (s.get("state") or {}).get("waiting", {}).get("message")
    message = wait_until(lambda: (lambda m: m if m and "seccomp" in m else None)(waiting()),
                         timeout=30, what="the missing profile's error")
    assert "absent.json" in message


def test_proc_mount_needs_a_user_namespace_which_this_node_refuses(crun_node, pod_ns):
    n = crun_node
    p = pod("unmasked", n.images.busybox, ["sleep", "3600"])
    p["spec"]["containers"][0]["securityContext"] = {"procMount": "Unmasked"}
    r = n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p), check=False)
    assert r.returncode != 0
    assert ('spec.containers[0].securityContext.procMount: Invalid value: "Unmasked": '
            '`hostUsers` must be false to use `Unmasked`') in r.stderr, r.stderr
    p["spec"]["containers"][0]["securityContext"] = {"procMount": "Default"}
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "unmasked")
    # The node has no user namespaces: such a pod is refused where upstream's runtime
    # would refuse it, at sandbox creation, and says so.
    q = pod("userns", n.images.busybox, ["sleep", "3600"], hostUsers=False)
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(q))
    wait_until(lambda: "hostUsers: false) are not supported" in n.kubectl(
        "describe", "pod", "userns", "-n", pod_ns).stdout, timeout=30,
        what="FailedCreatePodSandBox")
    assert get_pod(n, pod_ns, "userns")["status"]["phase"] == "Pending"


def test_fs_group_owns_secret_volumes_so_a_non_root_user_can_read_them(crun_node, pod_ns):
    n = crun_node
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
              "stringData": {"password": "s3cret"}}
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(secret))
    p = pod("reader", n.images.busybox, ["sh", "-c",
            "stat -L -c 'mode=%a group=%g' /creds/password; cat /creds/password && echo;"
            " echo done; sleep 3600"])
    p["spec"]["securityContext"] = {"runAsUser": 1000, "fsGroup": 2000}
    p["spec"]["containers"][0]["volumeMounts"] = [{"name": "creds", "mountPath": "/creds"}]
    p["spec"]["volumes"] = [{"name": "creds", "secret": {"secretName": "creds",
                                                         "defaultMode": 0o400}}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "reader")
    out = logs(n, pod_ns, "reader", "app", "done")
    # 0400 plus the group's read bit, owned by the fsGroup: the kubelet's volume ownership.
    assert "mode=440 group=2000" in out, out
    assert "s3cret" in out, out
