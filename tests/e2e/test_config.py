"""Configuration a pod reads from the API (issue 6): environment variables from ConfigMaps
and Secrets (`env[].valueFrom`, `envFrom` with a prefix), `$(VAR)` expansion across them,
and a missing object or key as `CreateContainerConfigError` with the kubelet's message,
the container starting once the object exists. Volumes of ConfigMaps, Secrets, the
downward API and projections of them: files, modes, read-only mounts, secrets on tmpfs,
updates swapped in whole (subPath mounts keep theirs), and a missing object as
`FailedMount` until it exists."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers import rows_by_name, to_yaml, wait_until
from test_node_pods import get_pod, pod, wait_ready

SETTINGS = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
            "data": {"MODE": "fast", "level": "3"}}
CREDS = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
         "type": "Opaque", "data": {"USER": "YWxpY2U=", "PASSWORD": "czNjcmV0"}}  # alice, s3cret


def env_pod(n) -> dict:
    p = pod("env-reader", n.images.busybox, ["sh", "-c", "env | sort; sleep 3600"])
    p["spec"]["containers"][0].update({
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "APP_"},
                    {"secretRef": {"name": "creds"}}],
        "env": [{"name": "APP_MODE", "value": "override"},
                {"name": "GREETING", "value": "mode=$(APP_MODE) user=$(USER)"},
                {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                                    "key": "level"}}},
                {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                                "key": "PASSWORD"}}},
                {"name": "MAYBE", "valueFrom": {"configMapKeyRef": {
                    "name": "absent", "key": "x", "optional": True}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]})
    return p


def test_env_from_configmaps_and_secrets(crun_node, pod_ns):
    n = crun_node
    for obj in (SETTINGS, CREDS):
        n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(obj))
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(env_pod(n)))
    wait_ready(n, pod_ns, "env-reader")
    env = wait_until(lambda: (lambda out: out if "POD_NAME=" in out else None)(
        n.kubectl("logs", "env-reader", "-n", pod_ns).stdout), what="the env listing")
    lines = set(env.splitlines())
    for expected in ("APP_MODE=override", "APP_level=3", "USER=alice", "PASSWORD=s3cret",
                     "GREETING=mode=override user=alice", "LEVEL=3", "PASS=s3cret",
                     "POD_NAME=env-reader"):
        assert expected in lines, (expected, env)
    assert not any(l.startswith("MAYBE=") for l in lines)


def test_a_missing_configmap_holds_the_container_until_it_exists(crun_node, pod_ns):
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(CREDS))
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(env_pod(n)))

    def waiting():
        st = get_pod(n, pod_ns, "env-reader").get("status", {}).get("containerStatuses") or []
        w = st[0].get("state", {}).get("waiting") if st else None
        return w if w and w.get("reason") == "CreateContainerConfigError" else None
    w = wait_until(waiting, timeout=30, what="CreateContainerConfigError")
    assert w["message"] == 'configmap "settings" not found'
    row = rows_by_name(n.kubectl("get", "pods", "-n", pod_ns).stdout)["env-reader"]
    assert row["STATUS"] == "CreateContainerConfigError"
    described = n.kubectl("describe", "pod", "env-reader", "-n", pod_ns).stdout
    assert 'Error: configmap "settings" not found' in described, described
    # The object appears: the next attempt (after the backoff) starts the container.
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(SETTINGS))
    wait_ready(n, pod_ns, "env-reader", timeout=60)


def test_a_missing_secret_key_is_named(crun_node, pod_ns):
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(
        {**CREDS, "data": {"USER": "YWxpY2U="}}))
    p = pod("no-key", n.images.busybox, ["sleep", "3600"])
    p["spec"]["containers"][0]["env"] = [
        {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}}}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))

    def message():
        st = get_pod(n, pod_ns, "no-key").get("status", {}).get("containerStatuses") or []
        return (st[0].get("state", {}).get("waiting") or {}).get("message") if st else None
    assert wait_until(message, timeout=30, what="the waiting message") == \
        f"couldn't find key PASSWORD in Secret {pod_ns}/creds"


def volume_pod(n) -> dict:
    p = pod("vol-reader", n.images.busybox, ["sleep", "3600"])
    p["metadata"]["labels"] = {"app": "reader", "tier": "backend"}
    p["metadata"]["annotations"] = {"build": "42"}
    p["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "settings", "mountPath": "/etc/settings"},
        {"name": "one-setting", "mountPath": "/etc/level", "subPath": "level"},
        {"name": "creds", "mountPath": "/etc/creds"},
        {"name": "info", "mountPath": "/etc/podinfo"},
        {"name": "all", "mountPath": "/etc/all"}]
    p["spec"]["volumes"] = [
        {"name": "settings", "configMap": {"name": "settings"}},
        {"name": "one-setting", "configMap": {"name": "settings"}},
        {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400,
                                     "items": [{"key": "PASSWORD", "path": "db/password"}]}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "build", "fieldRef": {"fieldPath": "metadata.annotations['build']"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
        {"name": "all", "projected": {"sources": [
            {"configMap": {"name": "settings", "items": [{"key": "MODE", "path": "mode"}]}},
            {"secret": {"name": "creds", "items": [{"key": "USER", "path": "user"}]}},
            {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {
                "fieldPath": "metadata.namespace"}}]}}]}}]
    return p


def sh(n, ns: str, script: str) -> str:
    return n.kubectl("exec", "vol-reader", "-n", ns, "--", "sh", "-c", script).stdout


def test_configmap_secret_downward_and_projected_volumes(crun_node, pod_ns):
    n = crun_node
    for obj in (SETTINGS, CREDS):
        n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(obj))
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(volume_pod(n)))
    p = wait_ready(n, pod_ns, "vol-reader")
    assert sh(n, pod_ns, "cat /etc/settings/MODE /etc/settings/level") == "fast3"
    assert sh(n, pod_ns, "stat -L -c %a /etc/settings/MODE") == "644\n"
    assert sh(n, pod_ns, "cat /etc/creds/db/password; ls /etc/creds") == "s3cretdb\n"
    assert sh(n, pod_ns, "stat -L -c %a /etc/creds/db/password") == "400\n"
    assert sh(n, pod_ns, "cat /etc/podinfo/labels") == 'app="reader"\ntier="backend"\n'
    assert sh(n, pod_ns, "cat /etc/podinfo/build /etc/podinfo/name") == "42vol-reader"
    assert sh(n, pod_ns, "cat /etc/all/mode /etc/all/user /etc/all/ns") == f"fastalice{pod_ns}"
    # Read-only, as the kubelet mounts these whatever the mount says.
    out = n.kubectl("exec", "vol-reader", "-n", pod_ns, "--", "sh", "-c",
                    "echo x > /etc/settings/new", check=False)
    assert out.returncode != 0 and "Read-only file system" in out.stderr, out.stderr
    # Secrets never touch the node's disk: the volume is a tmpfs.
    uid = p["metadata"]["uid"]
    creds_dir = f"{n.node.data_dir}/pods/{uid}/volumes/creds"
    with open("/proc/self/mountinfo") as f:
        fstypes = [l.split(" - ")[1].split()[0] for l in f if l.split()[4] == creds_dir]
    assert fstypes == ["tmpfs"], fstypes


def test_a_configmap_change_reaches_the_volume_but_not_a_subpath_mount(crun_node, pod_ns):
    n = crun_node
    for obj in (SETTINGS, CREDS):
        n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(obj))
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(volume_pod(n)))
    wait_ready(n, pod_ns, "vol-reader")
    assert sh(n, pod_ns, "cat /etc/level") == "3"
    n.kubectl("apply", "-n", pod_ns, "-f", "-",
              input=to_yaml({**SETTINGS, "data": {"MODE": "slow", "level": "9"}}))
    wait_until(lambda: sh(n, pod_ns, "cat /etc/settings/MODE /etc/settings/level") == "slow9",
               timeout=60, interval=1, what="the updated ConfigMap in the volume")
    assert sh(n, pod_ns, "cat /etc/all/mode") == "slow"
    assert sh(n, pod_ns, "cat /etc/level") == "3"  # subPath mounts do not update (upstream)


def test_a_missing_configmap_volume_holds_the_pod_until_it_exists(crun_node, pod_ns):
    n = crun_node
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(CREDS))
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(volume_pod(n)))

    def failed_mount():
        d = n.kubectl("describe", "pod", "vol-reader", "-n", pod_ns).stdout
        return d if "FailedMount" in d else None
    described = wait_until(failed_mount, timeout=30, what="a FailedMount event")
    assert 'MountVolume.SetUp failed for volume "settings" : configmap "settings" not found' \
        in described, described
    row = rows_by_name(n.kubectl("get", "pods", "-n", pod_ns).stdout)["vol-reader"]
    assert row["STATUS"] == "ContainerCreating"
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(SETTINGS))
    wait_ready(n, pod_ns, "vol-reader", timeout=60)


def test_memory_emptydir_is_a_tmpfs_capped_by_its_size_limit(crun_node, pod_ns):
    n = crun_node
    p = pod("ram-cache", n.images.busybox, ["sh", "-c",
            "grep ' /cache ' /proc/mounts; dd if=/dev/zero of=/cache/big bs=1M count=4 2>&1;"
            " echo done; sleep 3600"])
    p["spec"]["containers"][0]["volumeMounts"] = [{"name": "cache", "mountPath": "/cache"}]
    p["spec"]["volumes"] = [{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "ram-cache")
    out = wait_until(lambda: (lambda o: o if "done" in o else None)(
        n.kubectl("logs", "ram-cache", "-n", pod_ns).stdout), what="the container's output")
    assert " /cache tmpfs " in out, out
    assert "No space left on device" in out, out


def test_host_path_types(crun_node, pod_ns, tmp_path):
    n = crun_node
    made = tmp_path / "made-by-the-node.txt"
    p = pod("host-file", n.images.busybox, ["sh", "-c", "echo hi > /mnt/f; sleep 3600"])
    p["spec"]["containers"][0]["volumeMounts"] = [{"name": "f", "mountPath": "/mnt/f"}]
    p["spec"]["volumes"] = [{"name": "f", "hostPath": {"path": str(made), "type": "FileOrCreate"}}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
    wait_ready(n, pod_ns, "host-file")
    wait_until(lambda: made.exists() and made.read_text() == "hi\n", what="the host file written")
    wrong = pod("wrong-type", n.images.busybox, ["sleep", "3600"])
    wrong["spec"]["containers"][0]["volumeMounts"] = [{"name": "d", "mountPath": "/mnt/d"}]
    wrong["spec"]["volumes"] = [{"name": "d", "hostPath": {"path": str(made), "type": "Directory"}}]
    n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(wrong))

    def failed_mount():
        d = n.kubectl("describe", "pod", "wrong-type", "-n", pod_ns).stdout
        return d if "FailedMount" in d else None
    described = wait_until(failed_mount, timeout=30, what="a FailedMount event")
    assert f"hostPath type check failed: {made} is not a directory" in described, described


def test_mount_propagation_host_to_container_and_bidirectional(node, pod_ns, tmp_path):
    n = node
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "later").mkdir()
    (shared / "back").mkdir()
    mounted: list[Path] = []

    def run(*argv):
        subprocess.run(argv, check=True, capture_output=True, timeout=30)

    try:
        # The host side must be a shared mount for anything to propagate (as upstream asks
        # of a hostPath used with propagation).
        run("mount", "--bind", str(shared), str(shared))
        mounted.append(shared)
        run("mount", "--make-rshared", str(shared))
        host = {"name": "host", "hostPath": {"path": str(shared), "type": "Directory"}}
        p = pod("propagation", n.images.busybox, ["sleep", "3600"])
        base = p["spec"]["containers"][0]
        p["spec"]["volumes"] = [host]
        p["spec"]["containers"] = [
            {**base, "name": "private", "volumeMounts": [{"name": "host", "mountPath": "/h"}]},
            {**base, "name": "slave", "volumeMounts": [
                {"name": "host", "mountPath": "/h", "mountPropagation": "HostToContainer"}]},
            {**base, "name": "shared", "securityContext": {"privileged": True},
             "volumeMounts": [{"name": "host", "mountPath": "/h",
                               "mountPropagation": "Bidirectional"}]},
        ]
        n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p))
        wait_ready(n, pod_ns, "propagation")

        # A mount the host makes after the containers started.
        run("mount", "-t", "tmpfs", "-o", "size=1m", "later", str(shared / "later"))
        mounted.append(shared / "later")
        (shared / "later" / "marker").write_text("from the host")

        def sees(container: str) -> bool:
            r = n.kubectl("exec", "-n", pod_ns, "propagation", "-c", container, "--",
                          "cat", "/h/later/marker", check=False)
            return r.returncode == 0 and "from the host" in r.stdout
        wait_until(lambda: sees("slave"), timeout=10, what="the host's mount in the container")
        assert sees("shared")
        assert not sees("private")

        # A mount a Bidirectional container makes reaches the host.
        n.kubectl("exec", "-n", pod_ns, "propagation", "-c", "shared", "--",
                  "mount", "-t", "tmpfs", "back", "/h/back")
        if n.node.runtime == "crun" and os.path.ismount("/sys/fs/cgroup/unified"):
            # On a hybrid-cgroup host crun runs in a mount namespace of its own
            # (ARCHITECTURE.md), a slave of the host's: mounts flow in, not out.
            return
        wait_until(lambda: os.path.ismount(shared / "back"), timeout=10,
                   what="the container's mount on the host")
        mounted.append(shared / "back")
    finally:
        # `sleep` as PID 1 ignores SIGTERM: no point waiting out 30 s of grace.
        n.kubectl("delete", "pod", "propagation", "-n", pod_ns, "--grace-period=1",
                  "--wait=true", check=False, timeout=60)
        for m in [shared / "back", *reversed(mounted)]:
            subprocess.run(["umount", "-l", str(m)], capture_output=True, timeout=30)


def test_bidirectional_propagation_needs_a_privileged_container(crun_node, pod_ns):
    n = crun_node
    p = pod("bidi", n.images.busybox, ["sleep", "3600"])
    p["spec"]["volumes"] = [{"name": "d", "emptyDir": {}}]
    p["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "d", "mountPath": "/d", "mountPropagation": "Bidirectional"}]
    r = n.kubectl("apply", "-n", pod_ns, "-f", "-", input=to_yaml(p), check=False)
    assert r.returncode != 0
    assert ("spec.containers[0].volumeMounts[0].mountPropagation: Forbidden: Bidirectional "
            "mount propagation is available only to privileged containers") in r.stderr, r.stderr
