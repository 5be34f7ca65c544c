"""The Job and TTL-after-finished controllers (issue 14) on real pods: a Job runs to
`Complete` (`kubectl wait`, `kubectl logs job/x`, the `kubectl get jobs` row, upstream's
conditions and events), never runs more than `parallelism` pods, fails with
`BackoffLimitExceeded` after the pod failure backoff, with `DeadlineExceeded` past
`activeDeadlineSeconds` (its pods killed), or by a `FailJob` pod failure policy rule;
Indexed Jobs give each pod its index, a success policy ends one early and
`backoffLimitPerIndex` fails only the failing index; `suspend` deletes the pods and
resuming starts them; orphans are adopted; `podReplacementPolicy` decides whether a
terminating pod is replaced; `ttlSecondsAfterFinished` removes a finished Job and its
pods."""

from __future__ import annotations

import json
import re
import threading

import kubernetes
import pytest

from helpers import rows_by_name, table, to_yaml, wait_until

SUFFIX = "[bcdfghjklmnpqrstvwxz2456789]{5}"
TIMEOUT = 120


# Deleted before the pods at the end of each test (conftest.py `pod_ns`).
OWNERS = ("jobs", "background")


def job(n, name: str, script: str, **spec) -> dict:
    pod_spec = spec.pop("pod_spec", {})
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"template": {"spec": {
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": n.images.busybox,
                            "command": ["sh", "-c", script]}], **pod_spec}},
            **spec},
    }


def create(n, ns: str, body: dict) -> None:
    n.kubectl("create", "-n", ns, "-f", "-", input=to_yaml(body))


def get_json(n, *args: str) -> dict:
    return json.loads(n.kubectl("get", *args, "-o", "json").stdout)


def status(n, ns: str, name: str) -> dict:
    return get_json(n, "job", name, "-n", ns).get("status", {})


def conditions(st: dict) -> list[tuple[str, str, str, str]]:
    return [(c["type"], c["status"], c.get("reason", ""), c.get("message", ""))
            for c in st.get("conditions", [])]


def job_pods(n, ns: str, name: str) -> list[dict]:
    return get_json(n, "pods", "-n", ns, "-l", f"batch.kubernetes.io/job-name={name}")["items"]


def events(n, ns: str, name: str) -> list[tuple[str, str, str]]:
    items = get_json(n, "events", "-n", ns,
                     "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["type"], e["reason"], e["message"]) for e in items]


def wait_condition(n, ns: str, name: str, type_: str) -> dict:
    def check():
        st = status(n, ns, name)
        return st if any(c[0] == type_ and c[1] == "True" for c in conditions(st)) else None
    return wait_until(check, timeout=TIMEOUT, interval=0.5, what=f"job {name} {type_}")


def test_a_job_completes_with_upstreams_status_events_and_table(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    create(n, ns, job(n, "hello", "echo hello from the job"))
    n.kubectl("wait", "--for=condition=complete", "job/hello", "-n", ns,
              f"--timeout={TIMEOUT}s", timeout=TIMEOUT + 10)
    assert "hello from the job" in n.kubectl("logs", "job/hello", "-n", ns).stdout

    st = status(n, ns, "hello")
    assert st["succeeded"] == 1 and "failed" not in st and "active" not in st, st
    assert (st["ready"], st["terminating"]) == (0, 0), st
    assert st["uncountedTerminatedPods"] == {}, st
    assert st["startTime"] <= st["completionTime"], st
    assert conditions(st) == [
        ("SuccessCriteriaMet", "True", "CompletionsReached",
         "Reached expected number of succeeded pods"),
        ("Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
    ], st

    [pod] = job_pods(n, ns, "hello")
    name = pod["metadata"]["name"]
    assert re.fullmatch(f"hello-{SUFFIX}", name), name
    assert pod["status"]["phase"] == "Succeeded"
    # Counted, so the tracking finalizer is gone.
    assert "batch.kubernetes.io/job-tracking" not in pod["metadata"].get("finalizers", [])
    ref = pod["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("Job", "hello", True)

    evs = events(n, ns, "hello")
    assert ("Normal", "SuccessfulCreate", f"Created pod: {name}") in evs, evs
    assert ("Normal", "Completed", "Job completed") in evs, evs

    out = n.kubectl("get", "jobs", "-n", ns).stdout
    assert table(out)[0] == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"], out
    row = rows_by_name(out)["hello"]
    assert (row["STATUS"], row["COMPLETIONS"]) == ("Complete", "1/1"), out
    assert re.fullmatch(r"\d+s", row["DURATION"]), out


def test_parallelism_bounds_active_pods(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    core = kubernetes.client.CoreV1Api(n.new_client())
    seen_max = [0]
    live: dict[str, bool] = {}
    stop = threading.Event()
    w = kubernetes.watch.Watch()

    def watch():
        try:
            for ev in w.stream(core.list_namespaced_pod, ns, timeout_seconds=TIMEOUT):
                p = ev["object"]
                running = (ev["type"] != "DELETED" and p.metadata.deletion_timestamp is None
                           and p.status.phase not in ("Succeeded", "Failed"))
                live[p.metadata.name] = running
                seen_max[0] = max(seen_max[0], sum(live.values()))
                if stop.is_set():
                    break
        except Exception:
            if not stop.is_set():
                raise

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    create(n, ns, job(n, "par", "sleep 2; echo done", completions=3, parallelism=2))
    st = wait_condition(n, ns, "par", "Complete")
    stop.set()
    w.stop()
    t.join(timeout=10)
    assert len(live) == 3, live
    assert st["succeeded"] == 3 and "failed" not in st, st
    assert len(job_pods(n, ns, "par")) == 3
    assert seen_max[0] == 2, seen_max
    row = rows_by_name(n.kubectl("get", "jobs", "-n", ns).stdout)["par"]
    assert row["COMPLETIONS"] == "3/3", row


def test_backoff_limit_fails_the_job_after_the_pod_failure_backoff(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    create(n, ns, job(n, "fail", "exit 1", backoffLimit=1))
    st = wait_condition(n, ns, "fail", "Failed")
    assert st["failed"] == 2 and "succeeded" not in st, st
    assert conditions(st) == [
        ("FailureTarget", "True", "BackoffLimitExceeded",
         "Job has reached the specified backoff limit"),
        ("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
    ], st
    assert "completionTime" not in st
    pods = job_pods(n, ns, "fail")
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods), pods
    # The second pod waited out the 10 s backoff after the first failed.
    finished = sorted(p["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
                      for p in pods)
    created = sorted(p["metadata"]["creationTimestamp"] for p in pods)
    from datetime import datetime
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    assert (parse(created[1]) - parse(finished[0])).total_seconds() >= 9, (created, finished)
    evs = events(n, ns, "fail")
    assert ("Warning", "BackoffLimitExceeded",
            "Job has reached the specified backoff limit") in evs, evs
    row = rows_by_name(n.kubectl("get", "jobs", "-n", ns).stdout)["fail"]
    assert (row["STATUS"], row["COMPLETIONS"]) == ("Failed", "0/1"), row


def test_active_deadline_kills_the_pods(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    create(n, ns, job(n, "slow", "trap 'exit 0' TERM; sleep 3600 & wait",
                      activeDeadlineSeconds=5, parallelism=2, completions=2))
    wait_until(lambda: len(job_pods(n, ns, "slow")) == 2, timeout=TIMEOUT, what="2 pods")
    st = wait_condition(n, ns, "slow", "Failed")
    assert conditions(st) == [
        ("FailureTarget", "True", "DeadlineExceeded",
         "Job was active longer than specified deadline"),
        ("Failed", "True", "DeadlineExceeded", "Job was active longer than specified deadline"),
    ], st
    assert st["failed"] == 2 and "active" not in st and st["terminating"] == 0, st
    # Failed is written only once the pods stopped.
    wait_until(lambda: all(p["status"]["phase"] in ("Failed", "Succeeded")
                           for p in job_pods(n, ns, "slow")),
               timeout=TIMEOUT, what="pods stopped")
    evs = events(n, ns, "slow")
    assert ("Warning", "DeadlineExceeded",
            "Job was active longer than specified deadline") in evs, evs
    assert sum(1 for e in evs if e[1] == "SuccessfulDelete") == 2, evs


def test_indexed_job_pods_see_their_index(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    create(n, ns, job(n, "idx", "echo index=$JOB_COMPLETION_INDEX host=$(hostname)",
                      completions=3, parallelism=3, completionMode="Indexed"))
    st = wait_condition(n, ns, "idx", "Complete")
    assert st["completedIndexes"] == "0-2" and st["succeeded"] == 3, st
    pods = job_pods(n, ns, "idx")
    assert len(pods) == 3
    for p in pods:
        ix = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == ix
        name = p["metadata"]["name"]
        assert re.fullmatch(f"idx-{ix}-{SUFFIX}", name), name
        assert p["spec"]["hostname"] == f"idx-{ix}"
        env = p["spec"]["containers"][0]["env"]
        assert env == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "apiVersion": "v1",
            "fieldPath": "metadata.labels['batch.kubernetes.io/job-completion-index']"}}}], env
        out = n.kubectl("logs", name, "-n", ns).stdout
        assert f"index={ix} host=idx-{ix}" in out, out


def test_suspend_and_resume(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    create(n, ns, job(n, "later", "echo ran", suspend=True))
    st = wait_condition(n, ns, "later", "Suspended")
    assert conditions(st) == [("Suspended", "True", "JobSuspended", "Job suspended")], st
    assert "startTime" not in st and job_pods(n, ns, "later") == []
    n.kubectl("patch", "job", "later", "-n", ns, "--type=merge", "-p",
              '{"spec":{"suspend":false}}')
    st = wait_condition(n, ns, "later", "Complete")
    assert ("Suspended", "False", "JobResumed", "Job resumed") in conditions(st), st
    assert "startTime" in st
    evs = events(n, ns, "later")
    assert ("Normal", "Suspended", "Job suspended") in evs, evs
    assert ("Normal", "Resumed", "Job resumed") in evs, evs

    # A running Job suspended loses its pods, which are not counted as failed.
    create(n, ns, job(n, "busy", "trap 'exit 0' TERM; sleep 3600 & wait"))
    wait_until(lambda: status(n, ns, "busy").get("active") == 1, timeout=TIMEOUT,
               what="an active pod")
    # Not yet counted: the pod carries the tracking finalizer.
    [running] = job_pods(n, ns, "busy")
    assert running["metadata"]["finalizers"] == ["batch.kubernetes.io/job-tracking"], running
    n.kubectl("patch", "job", "busy", "-n", ns, "--type=merge", "-p",
              '{"spec":{"suspend":true}}')
    st = wait_condition(n, ns, "busy", "Suspended")
    wait_until(lambda: job_pods(n, ns, "busy") == [], timeout=TIMEOUT, what="pods gone")
    st = status(n, ns, "busy")
    assert "active" not in st and "failed" not in st, st
    row = rows_by_name(n.kubectl("get", "jobs", "-n", ns).stdout)["busy"]
    assert row["STATUS"] == "Suspended", row


def test_pod_failure_policy_fails_the_job_on_an_exit_code(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    create(n, ns, job(n, "pfp", "exit 42", backoffLimit=6, podFailurePolicy={"rules": [
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In",
                                               "values": [42]}},
    ]}))
    st = wait_condition(n, ns, "pfp", "Failed")
    [pod] = job_pods(n, ns, "pfp")
    message = (f"Container main for pod {ns}/{pod['metadata']['name']} failed with exit code "
               "42 matching FailJob rule at index 1")
    assert conditions(st) == [("FailureTarget", "True", "PodFailurePolicy", message),
                              ("Failed", "True", "PodFailurePolicy", message)], st
    assert st["failed"] == 1, st


def test_ttl_after_finished_removes_the_job_and_its_pods(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    batch = kubernetes.client.BatchV1Api(n.client)
    create(n, ns, job(n, "gone", "echo bye", ttlSecondsAfterFinished=0))
    create(n, ns, job(n, "soon", "echo bye", ttlSecondsAfterFinished=3))

    def absent(name):
        try:
            batch.read_namespaced_job(name, ns)
            return False
        except kubernetes.client.ApiException as e:
            return e.status == 404
    wait_until(lambda: absent("gone"), timeout=TIMEOUT, interval=0.3, what="job gone deleted")
    st = wait_condition(n, ns, "soon", "Complete")
    assert st["succeeded"] == 1
    wait_until(lambda: absent("soon"), timeout=TIMEOUT, interval=0.3, what="job soon deleted")
    wait_until(lambda: job_pods(n, ns, "gone") == [] and job_pods(n, ns, "soon") == [],
               timeout=TIMEOUT, what="their pods deleted")


def test_success_policy_ends_an_indexed_job_early(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    script = ('trap \'exit 0\' TERM; '
              'if [ "$JOB_COMPLETION_INDEX" = 0 ]; then exit 0; fi; sleep 3600 & wait')
    create(n, ns, job(n, "lead", script, completions=3, parallelism=3,
                      completionMode="Indexed",
                      successPolicy={"rules": [{"succeededIndexes": "0"}]}))
    st = wait_condition(n, ns, "lead", "Complete")
    assert conditions(st) == [
        ("SuccessCriteriaMet", "True", "SuccessPolicy", "Matched rules at index 0"),
        ("Complete", "True", "SuccessPolicy", "Matched rules at index 0"),
    ], st
    # The other indexes' pods were deleted, not counted as failed.
    assert st["completedIndexes"] == "0" and st["succeeded"] == 1 and "failed" not in st, st
    assert "active" not in st and st["terminating"] == 0, st
    evs = events(n, ns, "lead")
    assert sum(1 for e in evs if e[1] == "SuccessfulDelete") == 2, evs


def test_backoff_limit_per_index_fails_only_that_index(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    create(n, ns, job(n, "per", '[ "$JOB_COMPLETION_INDEX" = 0 ]', completions=2,
                      parallelism=2, completionMode="Indexed", backoffLimitPerIndex=1))
    st = wait_condition(n, ns, "per", "Failed")
    assert conditions(st) == [
        ("FailureTarget", "True", "FailedIndexes", "Job has failed indexes"),
        ("Failed", "True", "FailedIndexes", "Job has failed indexes"),
    ], st
    assert (st["completedIndexes"], st["failedIndexes"]) == ("0", "1"), st
    assert (st["succeeded"], st["failed"]) == (1, 2), st
    counts = sorted(
        p["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"]
        for p in job_pods(n, ns, "per")
        if p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1")
    assert counts == ["0", "1"], counts


def test_a_job_adopts_a_matching_orphan_pod(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    orphan = {"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "early", "labels": {"app": "adopt"}},
              "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
                       "containers": [{"name": "main", "image": n.images.busybox,
                                       "command": ["sh", "-c", "sleep 3; echo adopted"]}]}}
    create(n, ns, orphan)
    # Long enough for every cache to hold it before the Job exists.
    wait_until(lambda: get_json(n, "pod", "early", "-n", ns)["status"].get("phase") == "Running",
               timeout=TIMEOUT, what="the orphan running")
    body = job(n, "adopter", "echo not me", manualSelector=True,
               selector={"matchLabels": {"app": "adopt"}})
    body["spec"]["template"]["metadata"] = {"labels": {"app": "adopt"}}
    create(n, ns, body)
    st = wait_condition(n, ns, "adopter", "Complete")
    assert st["succeeded"] == 1, st
    pods = get_json(n, "pods", "-n", ns, "-l", "app=adopt")["items"]
    assert [p["metadata"]["name"] for p in pods] == ["early"], pods
    [ref] = pods[0]["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("Job", "adopter", True)
    assert "batch.kubernetes.io/job-tracking" not in pods[0]["metadata"].get("finalizers", [])


@pytest.mark.parametrize("policy", ["TerminatingOrFailed", "Failed"])
def test_pod_replacement_policy(crun_node, pod_ns, policy):
    """The default replaces a deleted pod while it still terminates; `Failed` waits for it
    to fail (both after the failure backoff)."""
    n, ns = crun_node, pod_ns
    grace = 30 if policy == "TerminatingOrFailed" else 3
    create(n, ns, job(n, "rep", "sleep 3600 & wait", podReplacementPolicy=policy,
                      pod_spec={"terminationGracePeriodSeconds": grace}))
    wait_until(lambda: status(n, ns, "rep").get("ready") == 1, timeout=TIMEOUT,
               what="a ready pod")
    [first] = job_pods(n, ns, "rep")
    n.kubectl("delete", "pod", first["metadata"]["name"], "-n", ns, "--wait=false")

    def replaced():
        pods = job_pods(n, ns, "rep")
        return [p for p in pods if p["metadata"]["name"] != first["metadata"]["name"]]
    if policy == "Failed":
        st = wait_until(lambda: (s := status(n, ns, "rep")).get("terminating") == 1 and s,
                        timeout=TIMEOUT, what="a terminating pod")
        assert "active" not in st, st
    [new] = wait_until(replaced, timeout=TIMEOUT, what="a replacement pod")
    old = [p for p in job_pods(n, ns, "rep") if p["metadata"]["name"] == first["metadata"]["name"]]
    if policy == "TerminatingOrFailed":
        # The old pod is still terminating (30 s grace) when its replacement comes.
        assert old and old[0]["metadata"].get("deletionTimestamp"), old
    else:
        assert not old or old[0]["status"]["phase"] == "Failed", old
    st = wait_until(lambda: (s := status(n, ns, "rep")).get("failed") == 1 and s,
                    timeout=TIMEOUT, what="the deleted pod counted as failed")
    n.kubectl("delete", "job", "rep", "-n", ns, "--wait=true", timeout=120)
    # Not worth waiting out the old pod's 30 s grace period.
    n.kubectl("delete", "pods", "--all", "-n", ns, "--grace-period=0", "--force",
              "--wait=true", timeout=120)
