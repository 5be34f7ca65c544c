//! NodeResourcesFit: what a pod requests, what a node has left, and whether the pod fits.

use std::collections::BTreeMap;

use api::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as QuantityStr;

use crate::filter::{Unfit, ERR_TOO_MANY_PODS};

/// Upstream's `DefaultMilliCPURequest`, used for scoring containers with no cpu request.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Upstream's `DefaultMemoryRequest` (200Mi), used for scoring containers with no memory request.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

const NANO: i128 = 1_000_000_000;
const MICRO: i128 = 1_000_000;

/// Resource amounts in upstream's units: millicores and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
}

impl Resources {
    fn add(&mut self, other: Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
    }

    fn sub(&mut self, other: Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
    }
}

/// Exact per-resource sums in nano units, so rounding happens once at the end like upstream's
/// `resource.Quantity` arithmetic followed by `MilliValue()` / `Value()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Nanos {
    cpu: i128,
    memory: i128,
    ephemeral_storage: i128,
}

impl Nanos {
    fn add(&mut self, o: Nanos) {
        self.cpu = self.cpu.saturating_add(o.cpu);
        self.memory = self.memory.saturating_add(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(o.ephemeral_storage);
    }

    fn max(&mut self, o: Nanos) {
        self.cpu = self.cpu.max(o.cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
    }

    fn to_resources(self) -> Resources {
        Resources {
            milli_cpu: ceil_div(self.cpu, MICRO),
            memory: ceil_div(self.memory, NANO),
            ephemeral_storage: ceil_div(self.ephemeral_storage, NANO),
        }
    }
}

/// Rounds up like `Quantity.MilliValue()` / `Value()`, saturating into `i64`.
fn ceil_div(n: i128, d: i128) -> i64 {
    let q = n.div_euclid(d) + i128::from(n.rem_euclid(d) != 0);
    i64::try_from(q).unwrap_or(if q < 0 { i64::MIN } else { i64::MAX })
}

/// Parses a quantity from an object; malformed values (which validation rejects) count as zero.
fn nanos_of(q: Option<&QuantityStr>) -> Option<i128> {
    q.map(|q| Quantity::parse(&q.0).map(|q| q.nanos).unwrap_or(0))
}

fn nanos_from_list(list: Option<&BTreeMap<String, QuantityStr>>, non_zero: bool) -> Nanos {
    let get = |k: &str| list.and_then(|l| nanos_of(l.get(k)));
    let cpu = get("cpu");
    let memory = get("memory");
    Nanos {
        // applyNonMissing: only a *missing* request gets the default, an explicit 0 stays 0.
        cpu: match (cpu, non_zero) {
            (None, true) => i128::from(DEFAULT_MILLI_CPU_REQUEST) * MICRO,
            (v, _) => v.unwrap_or(0),
        },
        memory: match (memory, non_zero) {
            (None, true) => i128::from(DEFAULT_MEMORY_REQUEST) * NANO,
            (v, _) => v.unwrap_or(0),
        },
        ephemeral_storage: get("ephemeral-storage").unwrap_or(0),
    }
}

fn container_requests(c: &Container, non_zero: bool) -> Nanos {
    nanos_from_list(
        c.resources.as_ref().and_then(|r| r.requests.as_ref()),
        non_zero,
    )
}

fn pod_request_nanos(pod: &Pod, non_zero: bool) -> Nanos {
    let mut reqs = Nanos::default();
    let Some(spec) = pod.spec.as_ref() else {
        return reqs;
    };
    for c in &spec.containers {
        reqs.add(container_requests(c, non_zero));
    }
    // Upstream `resource.PodRequests`: restartable (sidecar) init containers run alongside the
    // app containers, so they add to the sum and to every later init container's footprint;
    // other init containers run one at a time, so only the largest counts.
    let mut sidecars = Nanos::default();
    let mut init = Nanos::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_zero);
        let footprint = if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(r);
            sidecars.add(r);
            sidecars
        } else {
            let mut t = r;
            t.add(sidecars);
            t
        };
        init.max(footprint);
    }
    reqs.max(init);
    if let Some(overhead) = spec.overhead.as_ref() {
        // Overhead is never defaulted, even for scoring.
        reqs.add(nanos_from_list(Some(overhead), false));
    }
    reqs
}

/// The pod's effective request as upstream's `resource.PodRequests` computes it:
/// `max(sum(containers) + sidecars, each init container + sidecars before it) + overhead`.
/// With `non_zero`, a container missing a cpu or memory request counts as 100m / 200Mi
/// (what scoring uses); filtering uses `non_zero = false`.
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resources {
    pod_request_nanos(pod, non_zero).to_resources()
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// A node plus what is already committed on it: upstream's `framework.NodeInfo`, reduced to
/// what the implemented plugins read.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub node: Node,
    /// Sum of the requests of the pods on the node (filtering).
    pub requested: Resources,
    /// Same, with missing cpu/memory requests defaulted to 100m/200Mi (scoring).
    pub non_zero_requested: Resources,
    pub pod_count: usize,
}

impl NodeInfo {
    /// Builds the node's info from the pods bound to it. Pods in a terminal phase
    /// (`Succeeded`/`Failed`) are skipped, as upstream's cache drops them.
    pub fn new(node: Node, pods: &[Pod]) -> NodeInfo {
        let mut info = NodeInfo {
            node,
            ..NodeInfo::default()
        };
        for pod in pods.iter().filter(|p| !is_terminal(p)) {
            info.add_pod(pod);
        }
        info
    }

    /// Accounts for one more pod on the node (e.g. after assuming a binding).
    pub fn add_pod(&mut self, pod: &Pod) {
        self.add_counted(pod_requests(pod, false), pod_requests(pod, true));
    }

    /// Counts one pod with these requests (plain and non-zero, see [`pod_requests`]).
    pub fn add_counted(&mut self, requested: Resources, non_zero_requested: Resources) {
        self.requested.add(requested);
        self.non_zero_requested.add(non_zero_requested);
        self.pod_count += 1;
    }

    /// Uncounts a pod [`NodeInfo::add_counted`] counted with the same requests.
    pub fn remove_counted(&mut self, requested: Resources, non_zero_requested: Resources) {
        self.requested.sub(requested);
        self.non_zero_requested.sub(non_zero_requested);
        self.pod_count = self.pod_count.saturating_sub(1);
    }

    /// Uncounts every pod.
    pub fn clear_pods(&mut self) {
        self.requested = Resources::default();
        self.non_zero_requested = Resources::default();
        self.pod_count = 0;
    }

    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }

    /// `status.allocatable` for cpu, memory and ephemeral-storage (missing = 0).
    pub fn allocatable(&self) -> Resources {
        nanos_from_list(self.allocatable_list(), false).to_resources()
    }

    /// `status.allocatable.pods` (missing = 0).
    pub fn allowed_pod_number(&self) -> i64 {
        ceil_div(
            nanos_of(self.allocatable_list().and_then(|l| l.get("pods"))).unwrap_or(0),
            NANO,
        )
    }

    fn allocatable_list(&self) -> Option<&BTreeMap<String, QuantityStr>> {
        self.node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
    }
}

/// NodeResourcesFit's filter (upstream `fitsRequest`): the pod count against allocatable
/// `pods`, then each requested resource against allocatable minus what is requested already.
/// All failing resources are reported together, in upstream's order.
pub fn node_resources_fit(pod: &Pod, node: &NodeInfo) -> Result<(), Unfit> {
    let mut reasons = Vec::new();
    let pods = i64::try_from(node.pod_count).unwrap_or(i64::MAX);
    if pods.saturating_add(1) > node.allowed_pod_number() {
        reasons.push(ERR_TOO_MANY_PODS.to_string());
    }
    let req = pod_requests(pod, false);
    if req != Resources::default() {
        let alloc = node.allocatable();
        let used = node.requested;
        let checks = [
            ("cpu", req.milli_cpu, alloc.milli_cpu, used.milli_cpu),
            ("memory", req.memory, alloc.memory, used.memory),
            (
                "ephemeral-storage",
                req.ephemeral_storage,
                alloc.ephemeral_storage,
                used.ephemeral_storage,
            ),
        ];
        for (name, want, have, taken) in checks {
            if want > 0 && want > have.saturating_sub(taken) {
                reasons.push(format!("Insufficient {name}"));
            }
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Unfit {
            plugin: "NodeResourcesFit",
            reasons,
            resolvable: true,
        })
    }
}
