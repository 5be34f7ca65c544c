"""batch/v1 Job and CronJob, policy/v1 PodDisruptionBudget served as upstream (issue 14):
discovery with short names and categories, defaults in `-o yaml`, the generated Job
selector and pod labels, tables (and `-o wide`), `kubectl explain`, and the 422s for a
bad schedule, time zone or restart policy. kubectl 1.37 and the Python client; the API
only: the CronJobs here fire on 29 February, so the CronJob controller leaves them alone
during the test (test_cronjob.py drives the controller), and the Job controller's own
behaviour is test_job.py's.
"""

from __future__ import annotations

import json
import re

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import rows_by_name, table, to_yaml, wait_until

PEAPOD_ARGS = ["--no-scheduler"]


def job(name: str, **spec) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "pi", "image": "busybox", "command": ["true"]}],
            }},
            **spec,
        },
    }


def cron_job(name: str, schedule: str = "0 0 29 2 *", **spec) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure",
                "containers": [{"name": "hello", "image": "busybox", "command": ["date"]}],
            }}}},
            **spec,
        },
    }


def test_discovery_short_names_categories_and_explain(cluster):
    out = cluster.kubectl("api-resources").stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    assert ["cronjobs", "cj", "batch/v1", "true", "CronJob"] in rows, out
    assert ["jobs", "batch/v1", "true", "Job"] in rows, out
    assert ["poddisruptionbudgets", "pdb", "policy/v1", "true", "PodDisruptionBudget"] in rows, out

    out = cluster.kubectl("api-resources", "--categories=all", "-o", "name").stdout.split()
    assert "jobs.batch" in out and "cronjobs.batch" in out, out
    assert "poddisruptionbudgets.policy" not in out, out

    out = cluster.kubectl("explain", "cronjob.spec.timeZone").stdout
    assert re.search(r"^KIND:\s+CronJob$", out, re.M), out
    assert re.search(r"^GROUP:\s+batch$", out, re.M), out
    out = cluster.kubectl("explain", "pdb.spec").stdout
    assert re.search(r"^\s+maxUnavailable\s+<IntOrString>", out, re.M), out
    out = cluster.kubectl("explain", "job.spec.backoffLimit").stdout
    assert re.search(r"^FIELD:\s+backoffLimit <integer>$", out, re.M), out


def test_job_defaults_selector_and_labels(cluster, ns):
    # The create's answer: the Job controller writes the status right after.
    obj = json.loads(cluster.kubectl("-n", ns, "create", "-f", "-", "-o", "json",
                                     input=to_yaml(job("pi"))).stdout)
    uid = obj["metadata"]["uid"]
    spec = obj["spec"]
    assert spec["completions"] == 1 and spec["parallelism"] == 1
    assert spec["backoffLimit"] == 6
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert spec["manualSelector"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    want = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "pi",
            "controller-uid": uid, "job-name": "pi"}
    assert spec["template"]["metadata"]["labels"] == want
    assert obj["metadata"]["labels"] == want
    assert obj["metadata"]["generation"] == 1
    assert obj["status"] == {}
    # Pod spec defaults inside the template.
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    assert spec["template"]["spec"]["dnsPolicy"] == "ClusterFirst"

    # The selector and template are immutable; parallelism is not.
    cp = cluster.kubectl("-n", ns, "patch", "job", "pi", "--type=merge", "-p",
                         '{"spec":{"template":{"spec":{"containers":[{"name":"pi","image":"x"}]}}}}',
                         check=False)
    assert cp.returncode != 0
    assert "spec.template: Invalid value" in cp.stderr and "field is immutable" in cp.stderr, cp.stderr
    cluster.kubectl("-n", ns, "patch", "job", "pi", "--type=merge", "-p", '{"spec":{"parallelism":3}}')
    obj = json.loads(cluster.kubectl("-n", ns, "get", "job", "pi", "-o", "json").stdout)
    assert obj["spec"]["parallelism"] == 3 and obj["metadata"]["generation"] == 2


def test_job_and_cronjob_tables(cluster, ns):
    cluster.kubectl("-n", ns, "create", "-f", "-",
                    input=to_yaml(job("pi", completions=3, parallelism=2),
                                  job("sleepy", suspend=True),
                                  cron_job("hello"),
                                  cron_job("zoned", "0 9 * * 1-5", timeZone="Europe/Paris")))
    out = cluster.kubectl("-n", ns, "get", "jobs").stdout
    assert table(out)[0] == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"], out
    rows = rows_by_name(out)
    assert rows["pi"]["STATUS"] == "Running" and rows["pi"]["COMPLETIONS"] == "0/3", out
    assert rows["sleepy"]["COMPLETIONS"] == "0/1", out
    wide = cluster.kubectl("-n", ns, "get", "job", "pi", "-o", "wide").stdout
    header, [row] = table(wide)
    assert header == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE", "CONTAINERS",
                      "IMAGES", "SELECTOR"], wide
    # DURATION is empty until the Job starts, so count from the end.
    assert row[-3:-1] == ["pi", "busybox"], wide
    assert re.fullmatch(r"batch\.kubernetes\.io/controller-uid=[0-9a-f-]{36}", row[-1]), wide

    out = cluster.kubectl("-n", ns, "get", "cj").stdout
    assert table(out)[0] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE",
                             "LAST SCHEDULE", "AGE"], out
    rows = rows_by_name(out)
    assert rows["hello"]["SCHEDULE"] == "0 0 29 2 *", out
    assert rows["hello"]["TIMEZONE"] == "<none>" and rows["zoned"]["TIMEZONE"] == "Europe/Paris", out
    assert rows["hello"]["SUSPEND"] == "False" and rows["hello"]["ACTIVE"] == "0", out
    assert rows["hello"]["LAST SCHEDULE"] == "<none>", out
    wide = cluster.kubectl("-n", ns, "get", "cronjobs", "hello", "-o", "wide").stdout
    header, [row] = table(wide)
    assert header[-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"], wide
    assert row[-3:] == ["hello", "busybox", "<none>"], wide

    # Jobs select on `status.successful` too, as upstream's field label conversion allows.
    out = cluster.kubectl("-n", ns, "get", "jobs", "-o", "name",
                          "--field-selector", "status.successful=0").stdout.split()
    assert sorted(out) == ["job.batch/pi", "job.batch/sleepy"], out
    cp = cluster.kubectl("-n", ns, "get", "jobs", "--field-selector", "spec.x=1", check=False)
    assert cp.returncode != 0 and "field label not supported: spec.x" in cp.stderr, cp.stderr

    # `kubectl get all` lists them through the `all` category.
    out = cluster.kubectl("-n", ns, "get", "all", "-o", "name").stdout.split()
    assert {"job.batch/pi", "cronjob.batch/hello"} <= set(out), out


def test_cronjob_defaults_through_the_python_client(cluster, ns):
    batch = client.BatchV1Api(cluster.client)
    body = client.V1CronJob(
        metadata=client.V1ObjectMeta(name="nightly"),
        spec=client.V1CronJobSpec(
            schedule="@daily",
            job_template=client.V1JobTemplateSpec(spec=client.V1JobSpec(
                template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[client.V1Container(name="c", image="busybox")]))))))
    got = batch.create_namespaced_cron_job(ns, body)
    assert got.spec.concurrency_policy == "Allow"
    assert got.spec.suspend is False
    assert got.spec.successful_jobs_history_limit == 3
    assert got.spec.failed_jobs_history_limit == 1
    assert got.metadata.generation == 1
    # The job template's own Job fields are not defaulted (upstream defaults Jobs only).
    assert got.spec.job_template.spec.backoff_limit is None
    assert [c.metadata.name for c in batch.list_namespaced_cron_job(ns).items] == ["nightly"]


def status_of(call, *args) -> tuple[int, dict]:
    with pytest.raises(ApiException) as e:
        call(*args)
    return e.value.status, json.loads(e.value.body)


def causes(body: dict) -> list[tuple[str, str]]:
    return [(c.get("field", ""), c["message"]) for c in body["details"]["causes"]]


def test_bad_schedule_time_zone_and_restart_policy_are_422(cluster, ns):
    batch = client.BatchV1Api(cluster.client)
    code, body = status_of(batch.create_namespaced_cron_job, ns, cron_job("bad", "61 * * * *"))
    assert code == 422 and body["reason"] == "Invalid"
    assert ("spec.schedule",
            'Invalid value: "61 * * * *": end of range (61) above maximum (59): 61') in causes(body)

    code, body = status_of(batch.create_namespaced_cron_job, ns,
                           cron_job("tz", "CRON_TZ=UTC 0 * * * *"))
    assert code == 422
    assert ("spec.schedule", 'Invalid value: "CRON_TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ '
            "in schedule, use timeZone field instead") in causes(body)

    code, body = status_of(batch.create_namespaced_cron_job, ns,
                           cron_job("zone", timeZone="Mars/Olympus_Mons"))
    assert code == 422
    assert ("spec.timeZone",
            'Invalid value: "Mars/Olympus_Mons": unknown time zone Mars/Olympus_Mons') in causes(body)

    bad = job("always")
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    code, body = status_of(batch.create_namespaced_job, ns, bad)
    assert code == 422
    assert body["message"].startswith('Job.batch "always" is invalid: ')
    assert ("spec.template.spec.restartPolicy",
            'Required value: valid values: "OnFailure", "Never"') in causes(body)

    cp = cluster.kubectl("-n", ns, "create", "-f", "-",
                         input=to_yaml(cron_job("x" * 53)), check=False)
    assert cp.returncode != 0 and "must be no more than 52 characters" in cp.stderr, cp.stderr


def test_pdb_defaults_table_and_validation(cluster, ns):
    policy = client.PolicyV1Api(cluster.client)
    cluster.kubectl("-n", ns, "create", "pdb", "web", "--selector=app=web", "--min-available=50%")
    cluster.kubectl("-n", ns, "create", "pdb", "db", "--selector=app=db", "--max-unavailable=1")
    got = policy.read_namespaced_pod_disruption_budget("web", ns)
    assert got.metadata.generation == 1
    # Upstream's status counters are written out as zero until the controller fills them.
    raw = json.loads(cluster.kubectl("-n", ns, "get", "pdb", "web", "-o", "json").stdout)
    for field in ("currentHealthy", "desiredHealthy", "disruptionsAllowed", "expectedPods"):
        assert field in raw["status"], raw["status"]

    out = cluster.kubectl("-n", ns, "get", "pdb").stdout
    assert table(out)[0] == ["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS",
                             "AGE"], out
    rows = rows_by_name(out)
    assert (rows["web"]["MIN AVAILABLE"], rows["web"]["MAX UNAVAILABLE"]) == ("50%", "N/A"), out
    assert (rows["db"]["MIN AVAILABLE"], rows["db"]["MAX UNAVAILABLE"]) == ("N/A", "1"), out

    both = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "both"},
            "spec": {"minAvailable": 1, "maxUnavailable": "150%", "selector": {}}}
    code, body = status_of(policy.create_namespaced_pod_disruption_budget, ns, both)
    assert code == 422
    msgs = [m for _, m in causes(body)]
    assert any(m.endswith("minAvailable and maxUnavailable cannot be both set") for m in msgs), msgs
    assert ("spec.maxUnavailable", 'Invalid value: "150%": must not be greater than 100%') \
        in causes(body)


def test_kubectl_create_job_and_cronjob(cluster, ns):
    # kubectl's generators post protobuf bodies.
    cluster.kubectl("-n", ns, "create", "cronjob", "tick", "--image=busybox",
                    "--schedule=*/1 * * * *", "--", "date")
    cluster.kubectl("-n", ns, "create", "job", "once", "--image=busybox", "--", "true")
    cj = json.loads(cluster.kubectl("-n", ns, "get", "cj", "tick", "-o", "json").stdout)
    assert cj["spec"]["schedule"] == "*/1 * * * *"
    assert cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    job = json.loads(cluster.kubectl("-n", ns, "get", "job", "once", "-o", "json").stdout)
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["template"]["metadata"]["labels"]["job-name"] == "once"



def test_pdb_over_pods_of_a_controller_without_scale_fails_safe(cluster, ns):
    """A percentage budget needs the pods' controllers' scale; a Job has none, so the
    disruption controller records SyncFailed and allows no disruption, as upstream."""
    # Managed by another controller, so the Job controller leaves the pod to it.
    cluster.kubectl("-n", ns, "create", "-f", "-",
                    input=to_yaml(job("owner", managedBy="example.com/other")))
    uid = json.loads(cluster.kubectl("-n", ns, "get", "job", "owner", "-o", "json").stdout)[
        "metadata"]["uid"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "owned", "labels": {"app": "owned"}, "ownerReferences": [{
               "apiVersion": "batch/v1", "kind": "Job", "name": "owner", "uid": uid,
               "controller": True}]},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "half"},
           "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "owned"}}}}
    cluster.kubectl("-n", ns, "create", "-f", "-", input=to_yaml(pod, pdb))

    def failed():
        obj = json.loads(cluster.kubectl("-n", ns, "get", "pdb", "half", "-o", "json").stdout)
        conds = obj["status"].get("conditions") or []
        return conds[0] if conds and conds[0]["reason"] == "SyncFailed" else None
    cond = wait_until(failed, timeout=30, interval=0.2, what="SyncFailed condition")
    assert (cond["type"], cond["status"]) == ("DisruptionAllowed", "False")
    assert cond["message"] == "jobs.batch does not implement the scale subresource", cond
