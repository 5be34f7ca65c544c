"""The CronJob controller (issue 14): a `*/1 * * * *` CronJob makes a Job named
`<cronjob>-<minutes since the epoch>` at each minute, controlled by it and annotated with
its scheduled time (in the CronJob's time zone), lists it in `status.active` and sets
`lastScheduleTime`; `Forbid` starts nothing while a Job runs, `Replace` deletes the running
one first, `suspend` stops scheduling; finished Jobs past the history limits are deleted
oldest first; upstream's events; `kubectl create job --from=cronjob/x`; the `kubectl get cj`
table.

The minute boundary is what it is, so every minute-bound case runs in one test over the same
two boundaries. Where the Job controller is absent, the test finishes Jobs itself by writing
their status (a Job it finds already finished is left alone).
"""

from __future__ import annotations

import datetime
import json
import re
import time

import kubernetes

from helpers import rows_by_name, table, to_yaml, wait_until

MINUTE_WAIT = 100  # a schedule minute plus a loaded machine's delay
TIMEOUT = 60
ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"


# Deleted before the pods at the end of each test (conftest.py `pod_ns`).
OWNERS = ("cronjobs,jobs", "background")


def cron_job(n, name: str, schedule: str = "*/1 * * * *", command=None, **spec) -> dict:
    command = command or ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    return {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"labels": {"cron": name}, "annotations": {"note": name}},
                "spec": {"backoffLimit": 0, "template": {"spec": {
                    "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": n.images.busybox,
                                    "command": command}]}}}},
            **spec,
        },
    }


def get_json(n, *args: str) -> dict:
    return json.loads(n.kubectl("get", *args, "-o", "json").stdout)


def jobs_of(n, ns: str, cj: str) -> dict[str, dict]:
    """The Jobs named for `cj`'s schedule times, by name."""
    items = get_json(n, "jobs", "-n", ns)["items"]
    return {j["metadata"]["name"]: j for j in items
            if re.fullmatch(rf"{cj}-\d+", j["metadata"]["name"])}


def minute(job_name: str) -> int:
    return int(job_name.rsplit("-", 1)[1])


def events(n, ns: str, name: str) -> list[tuple[str, str, str]]:
    items = get_json(n, "events", "-n", ns,
                     "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["type"], e["reason"], e["message"]) for e in items]


def wait_event(n, ns: str, name: str, reason: str, message: str | None = None):
    def seen():
        return [e for e in events(n, ns, name)
                if e[1] == reason and (message is None or e[2] == message)]
    return wait_until(seen, timeout=TIMEOUT, interval=0.5,
                      what=f"event {reason} {message or ''} on {name}")


def finish(n, ns: str, name: str, condition: str) -> None:
    """Marks a Job finished through its status, as the Job controller would (unless it
    already did)."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for _ in range(5):
        cp = n.kubectl("get", "job", name, "-n", ns, "-o", "json", check=False)
        if cp.returncode != 0 and "NotFound" in cp.stderr:
            return  # finished and pruned already
        job = json.loads(cp.stdout)
        status = job.get("status") or {}
        if any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
               for c in status.get("conditions") or []):
            return
        target = "SuccessCriteriaMet" if condition == "Complete" else "FailureTarget"
        conds = [{"type": t, "status": "True", "reason": "Test", "message": "Test",
                  "lastProbeTime": now, "lastTransitionTime": now}
                 for t in (target, condition)]
        body = {"metadata": {"resourceVersion": job["metadata"]["resourceVersion"]},
                "status": {"conditions": conds, "startTime": now, "active": 0,
                           **({"succeeded": 1, "completionTime": now}
                              if condition == "Complete" else {"failed": 1})}}
        cp = n.kubectl("patch", "job", name, "-n", ns, "--subresource=status",
                       "--type=merge", "-p", json.dumps(body), check=False)
        if cp.returncode == 0:
            return
        assert "modified" in cp.stderr or "NotFound" in cp.stderr, cp.stderr
    raise AssertionError(f"could not finish job {name}")


def test_cronjobs_schedule_replace_forbid_suspend_and_prune(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(
        cron_job(n, "basic"),
        cron_job(n, "zoned", timeZone="Asia/Tokyo", suspend=False),
        cron_job(n, "forbid", concurrencyPolicy="Forbid"),
        cron_job(n, "replace", concurrencyPolicy="Replace"),
        cron_job(n, "paused", suspend=True),
        cron_job(n, "history", successfulJobsHistoryLimit=1, failedJobsHistoryLimit=0),
        cron_job(n, "failing", command=["false"], failedJobsHistoryLimit=0),
    ))
    cjs = {c["metadata"]["name"]: c for c in get_json(n, "cj", "-n", ns)["items"]}
    scheduled = ["basic", "zoned", "forbid", "replace", "history"]

    # First boundary: one Job each, named for the minute. (The failing one's Job may fail
    # and be pruned at once where the Job controller runs it: its event tells.)
    def first():
        found = {cj: jobs_of(n, ns, cj) for cj in scheduled}
        return found if all(len(v) == 1 for v in found.values()) else None
    found = wait_until(first, timeout=MINUTE_WAIT, interval=0.5, what="a Job per CronJob")
    names = {cj: next(iter(v)) for cj, v in found.items()}
    created = wait_event(n, ns, "failing", "SuccessfulCreate")
    names["failing"] = created[0][2].removeprefix("Created job ")
    at = datetime.datetime.fromtimestamp(minute(names["basic"]) * 60, datetime.timezone.utc)

    job = found["basic"][names["basic"]]
    meta = job["metadata"]
    # Made at the schedule time by the controller's timer, not by a poll or a resync.
    created = datetime.datetime.strptime(meta["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    skew = created.replace(tzinfo=datetime.timezone.utc) - at
    print(f"basic: job created {skew.total_seconds():.0f} s after its schedule time")
    assert datetime.timedelta(0) <= skew < datetime.timedelta(seconds=20), skew
    assert meta["ownerReferences"] == [{
        "apiVersion": "batch/v1", "kind": "CronJob", "name": "basic",
        "uid": cjs["basic"]["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    assert meta["annotations"][ANNOTATION] == at.strftime("%Y-%m-%dT%H:%M:%SZ"), meta
    assert meta["annotations"]["note"] == "basic" and meta["labels"]["cron"] == "basic", meta
    zoned = found["zoned"][names["zoned"]]["metadata"]["annotations"][ANNOTATION]
    tokyo = datetime.datetime.fromtimestamp(minute(names["zoned"]) * 60, datetime.timezone.utc)
    tokyo = tokyo.astimezone(datetime.timezone(datetime.timedelta(hours=9)))
    assert zoned == tokyo.strftime("%Y-%m-%dT%H:%M:%S+09:00"), zoned

    def listed(cj, want):
        status = get_json(n, "cj", cj, "-n", ns).get("status", {})
        got = [(r["kind"], r["name"], r["apiVersion"]) for r in status.get("active") or []]
        return status if got == [("Job", w, "batch/v1") for w in want] else None
    status = wait_until(lambda: listed("basic", [names["basic"]]), timeout=TIMEOUT,
                        what="basic's Job active")
    assert status["lastScheduleTime"] == at.strftime("%Y-%m-%dT%H:%M:%SZ"), status
    wait_event(n, ns, "basic", "SuccessfulCreate", f"Created job {names['basic']}")
    row = wait_until(lambda: (r := rows_by_name(n.kubectl("get", "cj", "-n", ns).stdout)["basic"])
                     ["ACTIVE"] == "1" and r, timeout=TIMEOUT, what="ACTIVE 1")
    assert row["LAST SCHEDULE"] != "<none>" and row["SUSPEND"] == "False", row

    # Suspending stops scheduling (checked at the next boundary).
    n.kubectl("patch", "cj", "basic", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    suspended_at = time.time()

    # Finished Jobs: the completed one kept (limit 1), the failed one deleted (limit 0).
    finish(n, ns, names["history"], "Complete")
    finish(n, ns, names["failing"], "Failed")
    status = wait_until(lambda: (s := listed("history", [])) and s.get("lastSuccessfulTime")
                        and s, timeout=TIMEOUT, what="history's Job off the active list")
    wait_event(n, ns, "history", "SawCompletedJob",
               f"Saw completed job: {names['history']}, condition: Complete")
    wait_until(lambda: not jobs_of(n, ns, "failing"), timeout=TIMEOUT,
               what="the failed Job deleted")
    # Deleted by the cleanup that opens the sync, so never seen completed (as upstream).
    wait_event(n, ns, "failing", "SuccessfulDelete", f"Deleted job {names['failing']}")
    assert names["history"] in jobs_of(n, ns, "history")

    # Second boundary: Replace deletes its running Job for the new one; Forbid waits.
    second = f"replace-{minute(names['replace']) + 1}"
    wait_until(lambda: list(jobs_of(n, ns, "replace")) == [second], timeout=MINUTE_WAIT,
               interval=0.5, what=f"{names['replace']} replaced by {second}")
    wait_until(lambda: listed("replace", [second]), timeout=TIMEOUT, what="replace's new Job active")
    wait_event(n, ns, "replace", "SuccessfulDelete", f"Deleted job {names['replace']}")
    wait_event(n, ns, "forbid", "JobAlreadyActive",
               "Not starting job because prior execution is running and concurrency policy is Forbid")
    assert list(jobs_of(n, ns, "forbid")) == [names["forbid"]]
    assert listed("forbid", [names["forbid"]])

    # History: the second completed Job pushes the first one out.
    h2 = f"history-{minute(names['history']) + 1}"
    wait_until(lambda: h2 in jobs_of(n, ns, "history"), timeout=TIMEOUT, what=h2)
    finish(n, ns, h2, "Complete")
    wait_until(lambda: list(jobs_of(n, ns, "history")) == [h2], timeout=TIMEOUT,
               what=f"{names['history']} pruned")
    wait_event(n, ns, "history", "SuccessfulDelete", f"Deleted job {names['history']}")

    # Suspended ones made nothing after being suspended.
    assert jobs_of(n, ns, "paused") == {}
    assert "lastScheduleTime" not in get_json(n, "cj", "paused", "-n", ns).get("status", {})
    late = [j for j in jobs_of(n, ns, "basic") if minute(j) * 60 > suspended_at]
    assert late == [], late


def test_kubectl_create_job_from_cronjob(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    n.kubectl("apply", "-n", ns, "-f", "-",
              input=to_yaml(cron_job(n, "nightly", schedule="0 3 * * *", suspend=True)))
    uid = get_json(n, "cj", "nightly", "-n", ns)["metadata"]["uid"]
    n.kubectl("create", "job", "by-hand", "--from=cronjob/nightly", "-n", ns)
    meta = get_json(n, "job", "by-hand", "-n", ns)["metadata"]
    assert meta["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual", meta
    assert meta["annotations"]["note"] == "nightly", meta
    assert meta["labels"]["cron"] == "nightly", meta
    assert meta["ownerReferences"] == [{
        # kubectl's own reference: no blockOwnerDeletion.
        "apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": uid,
        "controller": True}], meta
    # A running Job it controls but did not list: upstream warns.
    wait_event(n, ns, "nightly", "UnexpectedJob",
               "Saw a job that the controller did not create or forgot: by-hand")


def test_get_cronjob_columns(crun_node, pod_ns):
    n, ns = crun_node, pod_ns
    n.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(
        cron_job(n, "yearly", schedule="@yearly", timeZone="Europe/Paris")))
    out = n.kubectl("get", "cj", "-n", ns).stdout
    assert table(out)[0] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE",
                             "LAST SCHEDULE", "AGE"], out
    row = rows_by_name(out)["yearly"]
    assert (row["SCHEDULE"], row["TIMEZONE"], row["SUSPEND"], row["ACTIVE"],
            row["LAST SCHEDULE"]) == ("@yearly", "Europe/Paris", "False", "0", "<none>"), out
    wide = n.kubectl("get", "cj", "yearly", "-n", ns, "-o", "wide").stdout
    header, [cells] = table(wide)
    assert header == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE",
                      "AGE", "CONTAINERS", "IMAGES", "SELECTOR"], wide
    assert cells[-3:] == ["c", n.images.busybox, "<none>"], wide
