//! Upstream's `disruption` controller (`pkg/controller/disruption`): every
//! PodDisruptionBudget's status — `expectedPods`, `currentHealthy`, `desiredHealthy`,
//! `disruptionsAllowed`, `observedGeneration`, the `DisruptionAllowed` condition — from the
//! pods its selector matches, and the expiry of `disruptedPods` entries the eviction
//! handler recorded for pods that were then not deleted.
//!
//! ```text
//!  PDB applied ──────────────┐
//!  pod applied/deleted ──────┴─▶ reconcile(pdb) ─▶ pods of its namespace it selects
//!      (to the PDBs of its        ─▶ expected_count (minAvailable int: the pods;
//!       namespace selecting it)       otherwise Σ scale of the pods' controllers,
//!                                     read through their `scale` subresource)
//!                                 ─▶ compute_status (pure) ─▶ PUT .../status if changed
//!                                 ─▶ requeue when the oldest disruptedPods entry expires
//!  failure ─▶ failSafe: disruptionsAllowed 0, DisruptionAllowed=False SyncFailed, backoff
//! ```
//!
//! A disruptedPods entry lives for [`DELETION_TIMEOUT`] (2 minutes): a pod the eviction
//! handler admitted but that is still there after it counts as healthy again.
//!
//! Departure: upstream also emits `NoPods`, `UnmanagedPods` and
//! `CalculateExpectedPodCountFailed` events; peapod logs them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::informer::{applied, touched, Informer};
use crate::RESYNC;

/// How long an eviction's `disruptedPods` entry waits for the pod's deletion.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("found no controllers for pod {0:?}")]
    NoController(String),
    #[error("{0} does not implement the scale subresource")]
    NoScale(String),
    #[error("{0}")]
    Scale(String),
    #[error("updating the status of PodDisruptionBudget {namespace}/{name}: {source}")]
    Update {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// The pods of `pdb`'s namespace its selector matches (`getPodsForPdb`: an empty selector
/// matches all, a missing one none).
pub fn pods_for_pdb<'a>(pdb: &PodDisruptionBudget, pods: &'a [Arc<Pod>]) -> Vec<&'a Pod> {
    let sel = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
    let Ok(sel) = api::LabelSelector::from_label_selector(sel) else {
        return Vec::new();
    };
    pods.iter()
        .filter(|p| p.metadata.namespace == pdb.metadata.namespace)
        .filter(|p| sel.matches(&p.metadata.labels.clone().unwrap_or_default()))
        .map(|p| p.as_ref())
        .collect()
}

/// `metav1.GetControllerOf`.
pub fn controller_of(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// `getExpectedPodCount`: `(expectedPods, desiredHealthy, unmanaged pod names)`. `scale`
/// answers a controller's desired replicas (`None`: not the controller it claims to be).
/// An integer `minAvailable` counts the matched pods; otherwise the controllers' scales
/// add up, and pods without a controller count for nothing (upstream warns about them).
pub fn expected_count(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    mut scale: impl FnMut(&OwnerReference) -> Result<Option<i32>, Error>,
) -> Result<(i32, i32, Vec<String>), Error> {
    let spec = pdb.spec.clone().unwrap_or_default();
    let mut expected_scale = |pods: &[&Pod]| -> Result<(i32, Vec<String>), Error> {
        let mut by_uid: BTreeMap<String, i32> = BTreeMap::new();
        let mut unmanaged = Vec::new();
        for pod in pods {
            let Some(r) = controller_of(pod) else {
                unmanaged.push(pod.name_any());
                continue;
            };
            if by_uid.contains_key(&r.uid) {
                continue;
            }
            match scale(r)? {
                Some(n) => {
                    by_uid.insert(r.uid.clone(), n);
                }
                None => return Err(Error::NoController(pod.name_any())),
            }
        }
        Ok((by_uid.values().sum(), unmanaged))
    };
    let scaled = |v: &IntOrString, total: i32| {
        api::workload::scaled_value(v, total, true).map_err(Error::Scale)
    };
    if let Some(max) = &spec.max_unavailable {
        let (expected, unmanaged) = expected_scale(pods)?;
        let desired = (expected - scaled(max, expected)?).max(0);
        return Ok((expected, desired, unmanaged));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((
            i32::try_from(pods.len()).unwrap_or(i32::MAX),
            *n,
            Vec::new(),
        )),
        Some(min @ IntOrString::String(_)) => {
            let (expected, unmanaged) = expected_scale(pods)?;
            Ok((expected, scaled(min, expected)?, unmanaged))
        }
        None => Ok((0, 0, Vec::new())),
    }
}

/// What a sync of one PDB comes to: its new status (`None` when the stored one is up to
/// date) and when to look again (the earliest disruptedPods expiry).
#[derive(Debug, Clone, PartialEq)]
pub struct Sync {
    pub status: Option<PodDisruptionBudgetStatus>,
    pub recheck: Option<Duration>,
}

fn since(t: &Time, now: jiff::Timestamp) -> Duration {
    now.duration_since(t.0).try_into().unwrap_or(Duration::ZERO)
}

/// `buildDisruptedPodMap`, `countHealthyPods` and `updatePdbStatus` as one pure step.
pub fn compute_status(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    expected: i32,
    desired: i32,
    now: jiff::Timestamp,
) -> Sync {
    let old = pdb.status.clone().unwrap_or_default();
    // Entries of pods still there and not yet overdue; others are dropped.
    let mut disrupted = BTreeMap::new();
    let mut recheck: Option<Duration> = None;
    if let Some(entries) = &old.disrupted_pods {
        for pod in pods {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(t) = entries.get(&pod.name_any()) else {
                continue;
            };
            let age = since(t, now);
            if age > DELETION_TIMEOUT {
                warn!(pod = %pod.name_any(), pdb = %pdb.name_any(), "pod was expected by the PDB to be deleted but it wasn't");
            } else {
                let left = DELETION_TIMEOUT - age;
                recheck = Some(recheck.map_or(left, |r| r.min(left)));
                disrupted.insert(pod.name_any(), t.clone());
            }
        }
    }
    let healthy = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .filter(|p| api::policy::is_pod_ready(p))
        .count();
    let current = i32::try_from(healthy).unwrap_or(i32::MAX);
    // A PDB matching no expected pods stays safe until its pods are seen.
    let mut allowed = current - desired;
    if expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let generation = pdb.metadata.generation;
    let disrupted = (!disrupted.is_empty()).then_some(disrupted);
    let condition_up_to_date = old.conditions.iter().flatten().any(|c| {
        c.type_ == api::policy::DISRUPTION_ALLOWED_CONDITION
            && c.observed_generation == old.observed_generation
            && c.status
                == if old.disruptions_allowed.unwrap_or(0) > 0 {
                    "True"
                } else {
                    "False"
                }
            && c.reason != api::policy::SYNC_FAILED_REASON
    });
    let unchanged = old.current_healthy == Some(current)
        && old.desired_healthy == Some(desired)
        && old.expected_pods == Some(expected)
        && old.disruptions_allowed == Some(allowed)
        && old.disrupted_pods.as_ref().filter(|d| !d.is_empty()) == disrupted.as_ref()
        && old.observed_generation == generation
        && condition_up_to_date;
    if unchanged {
        return Sync {
            status: None,
            recheck,
        };
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: Some(current),
        desired_healthy: Some(desired),
        expected_pods: Some(expected),
        disruptions_allowed: Some(allowed),
        disrupted_pods: disrupted,
        observed_generation: generation,
        conditions: old.conditions,
    };
    api::policy::update_disruption_allowed_condition(&mut status, now);
    Sync {
        status: Some(status),
        recheck,
    }
}

/// `failSafe`: no disruptions, and why.
pub fn fail_safe(
    pdb: &PodDisruptionBudget,
    message: &str,
    now: jiff::Timestamp,
) -> PodDisruptionBudgetStatus {
    let mut status = pdb.status.clone().unwrap_or_else(api::policy::zero_status);
    status.disruptions_allowed = Some(0);
    api::policy::set_condition(
        &mut status,
        "False",
        api::policy::SYNC_FAILED_REASON,
        message,
        now,
    );
    status
}

struct Ctx {
    client: Client,
    pods: Store<Pod>,
    backoff: Backoff,
}

/// The controller, subscribed to the informers (so call this before they run).
pub fn controller(
    client: Client,
    pdbs: &Informer<PodDisruptionBudget>,
    pods: &Informer<Pod>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (pdb_changes, pdb_lagged) = pdbs.subscribe();
    let (pod_changes, pod_lagged) = pods.subscribe();
    let ctx = Arc::new(Ctx {
        client,
        pods: pods.store(),
        backoff: Backoff::controller_default(),
    });
    let pdb_store = pdbs.store();
    let lookup = pdb_store.clone();
    let controller = Controller::for_stream(applied(pdb_changes), pdb_store)
        .watches_stream(touched(pod_changes), move |pod: Pod| {
            // Every PDB of the pod's namespace that selects it.
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            lookup
                .state()
                .into_iter()
                .filter(|p| p.metadata.namespace == pod.metadata.namespace)
                .filter(|p| {
                    let sel = p.spec.as_ref().and_then(|s| s.selector.as_ref());
                    api::LabelSelector::from_label_selector(sel).is_ok_and(|s| s.matches(&labels))
                })
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .reconcile_all_on(futures::stream::select_all([
            pdb_lagged.boxed(),
            pod_lagged.boxed(),
            crate::ticks(RESYNC).boxed(),
        ]))
        .graceful_shutdown_on(shutdown.cancelled_owned());
    // The informer's own signal: other controllers wait for the pod cache at the same time
    // (kube-runtime's `wait_until_ready` wakes only one of several waiters).
    let pods_ready = pods.synced();
    async move {
        // A budget computed from a half-filled pod cache would allow too much.
        if !pods_ready.await {
            return;
        }
        info!("starting the disruption controller");
        controller
            .run(reconcile, error_policy, ctx)
            .for_each(|result| async move { crate::log_result("disruption", result) })
            .await;
    }
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = pdb.namespace().unwrap_or_default();
    let all = ctx.pods.state();
    let pods = pods_for_pdb(&pdb, &all);
    if pods.is_empty() {
        debug!(pdb = %pdb.name_any(), namespace = %ns, "no matching pods found");
    }
    // Owners' scales, read before the pure step (the API is async, the step is not).
    let mut scales: BTreeMap<String, Option<i32>> = BTreeMap::new();
    for pod in &pods {
        if let Some(r) = controller_of(pod) {
            if !scales.contains_key(&r.uid) {
                let got = owner_scale(&ctx.client, &ns, r).await;
                match got {
                    Ok(v) => {
                        scales.insert(r.uid.clone(), v);
                    }
                    Err(e) => return fail(&ctx, &pdb, e).await,
                }
            }
        }
    }
    let counted = expected_count(&pdb, &pods, |r| Ok(scales.get(&r.uid).copied().flatten()));
    let (expected, desired, unmanaged) = match counted {
        Ok(v) => v,
        Err(e) => return fail(&ctx, &pdb, e).await,
    };
    if !unmanaged.is_empty()
        && pdb
            .spec
            .as_ref()
            .is_some_and(|s| !matches!(s.min_available, Some(IntOrString::Int(_))))
    {
        debug!(pdb = %pdb.name_any(), pods = ?unmanaged, "pods selected by the PDB have no controller");
    }
    let sync = compute_status(&pdb, &pods, expected, desired, jiff::Timestamp::now());
    if let Some(status) = sync.status {
        write_status(&ctx.client, &pdb, status).await?;
    }
    ctx.backoff.forget(&key(&pdb));
    Ok(match sync.recheck {
        Some(d) => Action::requeue(d + Duration::from_millis(100)),
        None => Action::await_change(),
    })
}

/// Records a sync failure on the PDB (no disruptions allowed), then reports it for backoff.
async fn fail(ctx: &Ctx, pdb: &PodDisruptionBudget, e: Error) -> Result<Action, Error> {
    warn!(pdb = %pdb.name_any(), error = %e, "failed to sync PDB");
    let status = fail_safe(pdb, &e.to_string(), jiff::Timestamp::now());
    if Some(&status) != pdb.status.as_ref() {
        write_status(&ctx.client, pdb, status).await?;
    }
    Err(e)
}

fn key(pdb: &PodDisruptionBudget) -> String {
    format!("{}/{}", pdb.namespace().unwrap_or_default(), pdb.name_any())
}

/// PUT `poddisruptionbudgets/{name}/status` against the version read (a conflict means a
/// newer PDB is on its way through the informer).
async fn write_status(
    client: &Client,
    pdb: &PodDisruptionBudget,
    status: PodDisruptionBudgetStatus,
) -> Result<(), Error> {
    let ns = pdb.namespace().unwrap_or_default();
    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let mut new = pdb.clone();
    new.status = Some(status);
    match api
        .replace_status(&pdb.name_any(), &PostParams::default(), &new)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
            debug!(pdb = %pdb.name_any(), reason = %s.message, "status not written");
            Ok(())
        }
        Err(source) => Err(Error::Update {
            namespace: ns,
            name: pdb.name_any(),
            source,
        }),
    }
}

/// The desired replicas of a pod's controller through its `scale` subresource
/// (`getScaleController`); a ReplicaSet run by a Deployment counts as the Deployment
/// (upstream's Deployment finder). `None` when the object there is not that controller.
async fn owner_scale(client: &Client, ns: &str, r: &OwnerReference) -> Result<Option<i32>, Error> {
    let mut target = r.clone();
    if r.kind == "ReplicaSet" && r.api_version == "apps/v1" {
        let rs = dynamic(client, ns, r).await?.api.get_opt(&r.name).await;
        match rs {
            Ok(Some(rs)) if rs.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
                if let Some(owner) = rs
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .find(|o| o.controller == Some(true) && o.kind == "Deployment")
                {
                    target = owner.clone();
                }
            }
            Ok(_) => return Ok(None),
            Err(e) => return Err(Error::Scale(e.to_string())),
        }
    }
    let found = dynamic(client, ns, &target).await?;
    let ar = &found.resource;
    match found.api.get_scale(&target.name).await {
        Ok(scale) => {
            let uid = scale.metadata.uid.clone().unwrap_or_default();
            if !uid.is_empty() && uid != target.uid {
                return Ok(None);
            }
            Ok(Some(scale.spec.and_then(|s| s.replicas).unwrap_or(0)))
        }
        // Missing, or a kind without scale (`implementsScale` tells them apart).
        Err(kube::Error::Api(s)) if s.code == 404 && found.has_scale => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            // Upstream tells a missing object from a kind without scale the same way.
            // `GroupResource.String()`: `jobs.batch`, or `pods` in the core group.
            let gr = if ar.group.is_empty() {
                ar.plural.clone()
            } else {
                format!("{}.{}", ar.plural, ar.group)
            };
            Err(Error::NoScale(gr))
        }
        Err(e) => Err(Error::Scale(e.to_string())),
    }
}

/// A controller's kind as discovery describes it.
struct Found {
    api: Api<DynamicObject>,
    resource: ApiResource,
    has_scale: bool,
}

async fn dynamic(client: &Client, ns: &str, r: &OwnerReference) -> Result<Found, Error> {
    let (group, version) = match r.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", r.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(group, version, &r.kind);
    let (ar, caps): (ApiResource, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| Error::Scale(format!("no resource for {}/{}: {e}", r.api_version, r.kind)))?;
    Ok(Found {
        api: Api::namespaced_with(client.clone(), ns, &ar),
        has_scale: caps
            .subresources
            .iter()
            .any(|(sub, _)| sub.plural == "scale"),
        resource: ar,
    })
}

fn error_policy(pdb: Arc<PodDisruptionBudget>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let delay = ctx.backoff.next(&key(&pdb));
    warn!(error = %error, retry_in = ?delay, "disruption: sync failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pdb(spec: serde_json::Value, status: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(
            json!({"metadata": {"name": "b", "namespace": "ns", "generation": 2},
            "spec": spec, "status": status}),
        )
        .unwrap_or_default()
    }

    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Arc<Pod> {
        let mut v = json!({"metadata": {"name": name, "namespace": "ns", "labels": {"app": "web"}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
        if let Some(uid) = owner {
            v["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "rs", "uid": uid, "controller": true}]);
        }
        Arc::new(serde_json::from_value(v).unwrap_or_default())
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:10:00Z"
            .parse()
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn status_from_pods() {
        let sel = json!({"matchLabels": {"app": "web"}});
        struct Case {
            spec: serde_json::Value,
            pods: Vec<Arc<Pod>>,
            scale: Option<i32>,
            want: (i32, i32, i32, i32), // expected, desired, current, allowed
        }
        let bare = || {
            vec![
                pod("a", true, None),
                pod("b", true, None),
                pod("c", false, None),
            ]
        };
        let owned = || {
            vec![
                pod("a", true, Some("u")),
                pod("b", true, Some("u")),
                pod("c", true, Some("u")),
            ]
        };
        let cases = [
            // minAvailable int: the matched pods are the expected set, bare or not.
            Case {
                spec: json!({"minAvailable": 1, "selector": sel}),
                pods: bare(),
                scale: None,
                want: (3, 1, 2, 1),
            },
            Case {
                spec: json!({"minAvailable": 2, "selector": sel}),
                pods: bare(),
                scale: None,
                want: (3, 2, 2, 0),
            },
            // Percentages and maxUnavailable use the controllers' scale.
            Case {
                spec: json!({"minAvailable": "50%", "selector": sel}),
                pods: owned(),
                scale: Some(4),
                want: (4, 2, 3, 1),
            },
            Case {
                spec: json!({"maxUnavailable": 1, "selector": sel}),
                pods: owned(),
                scale: Some(3),
                want: (3, 2, 3, 1),
            },
            Case {
                spec: json!({"maxUnavailable": "50%", "selector": sel}),
                pods: owned(),
                scale: Some(3),
                want: (3, 1, 3, 2),
            },
            // Bare pods under maxUnavailable count for nothing (upstream's unmanaged pods):
            // nothing expected, so nothing may be disrupted.
            Case {
                spec: json!({"maxUnavailable": 1, "selector": sel}),
                pods: bare(),
                scale: None,
                want: (0, 0, 2, 0),
            },
            // No pods: safe.
            Case {
                spec: json!({"minAvailable": 0, "selector": sel}),
                pods: vec![],
                scale: None,
                want: (0, 0, 0, 0),
            },
        ];
        for (i, c) in cases.iter().enumerate() {
            let p = pdb(c.spec.clone(), json!({}));
            let pods = pods_for_pdb(&p, &c.pods);
            let (expected, desired, _) =
                expected_count(&p, &pods, |_| Ok(c.scale)).unwrap_or((-1, -1, vec![]));
            let sync = compute_status(&p, &pods, expected, desired, now());
            let s = sync.status.unwrap_or_default();
            assert_eq!(
                (
                    s.expected_pods.unwrap_or(-1),
                    s.desired_healthy.unwrap_or(-1),
                    s.current_healthy.unwrap_or(-1),
                    s.disruptions_allowed.unwrap_or(-1)
                ),
                c.want,
                "case {i}"
            );
            assert_eq!(s.observed_generation, Some(2));
            let cond = s.conditions.unwrap_or_default();
            let want_cond = if c.want.3 > 0 {
                ("True", "SufficientPods")
            } else {
                ("False", "InsufficientPods")
            };
            assert_eq!(
                (cond[0].status.as_str(), cond[0].reason.as_str()),
                want_cond,
                "case {i}"
            );
        }
    }

    #[test]
    fn a_pod_without_its_controller_fails_the_sync() {
        let p = pdb(json!({"minAvailable": "50%", "selector": {}}), json!({}));
        let all = vec![pod("a", true, Some("u"))];
        let pods = pods_for_pdb(&p, &all);
        assert!(matches!(
            expected_count(&p, &pods, |_| Ok(None)),
            Err(Error::NoController(_))
        ));
        let s = fail_safe(&p, "found no controllers for pod \"a\"", now());
        assert_eq!(s.disruptions_allowed, Some(0));
        let c = s.conditions.unwrap_or_default();
        assert_eq!(
            (c[0].status.as_str(), c[0].reason.as_str()),
            ("False", "SyncFailed")
        );
    }

    #[test]
    fn disrupted_pods_expire_after_two_minutes() {
        let status =
            json!({"disruptedPods": {"a": "2026-01-01T00:09:00Z", "b": "2026-01-01T00:07:00Z"}});
        let p = pdb(json!({"minAvailable": 1, "selector": {}}), status);
        let all = vec![
            pod("a", true, None),
            pod("b", true, None),
            pod("c", true, None),
        ];
        let pods = pods_for_pdb(&p, &all);
        let sync = compute_status(&p, &pods, 3, 1, now());
        let s = sync.status.unwrap_or_default();
        // `a` was evicted a minute ago: not healthy, kept, looked at again in a minute.
        // `b` is overdue: dropped and healthy again.
        let kept: Vec<String> = s.disrupted_pods.unwrap_or_default().into_keys().collect();
        assert_eq!(kept, vec!["a"]);
        assert_eq!(s.current_healthy, Some(2));
        assert_eq!(s.disruptions_allowed, Some(1));
        assert_eq!(sync.recheck, Some(Duration::from_secs(60)));
    }

    #[test]
    fn an_up_to_date_status_is_not_rewritten() {
        let p = pdb(json!({"minAvailable": 1, "selector": {}}), json!({}));
        let all = vec![pod("a", true, None), pod("b", true, None)];
        let pods = pods_for_pdb(&p, &all);
        let first = compute_status(&p, &pods, 2, 1, now()).status;
        let mut written = p.clone();
        written.status = first;
        assert_eq!(compute_status(&written, &pods, 2, 1, now()).status, None);
    }
}
