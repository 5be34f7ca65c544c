"""Configuration a pod reads from the API (issue 6): environment variables from ConfigMaps
and Secrets (`env[].valueFrom`, `envFrom` with a prefix), `$(VAR)` expansion across them,
and a missing object or key as `CreateContainerConfigError` with the kubelet's message,
the container starting once the object exists."""

from __future__ import annotations

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
