//! The ReplicationController as a ReplicaSet (upstream's `pkg/controller/replication`, whose
//! `conversion.go` runs the ReplicaSet controller's code on RCs as if an RC were an older
//! version of a ReplicaSet): its equality selector becomes `matchLabels`, its status converts
//! both ways, and its events come from `replication-controller`.

use k8s_openapi::api::apps::v1::{
    ReplicaSet, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{
    ReplicationController, ReplicationControllerCondition, ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::ReplicaKind;

impl ReplicaKind for ReplicaSet {
    const CONTROLLER: &'static str = "replicaset";
    const COMPONENT: &'static str = "replicaset-controller";
    const HAS_TERMINATING_REPLICAS: bool = true;

    fn to_replica_set(&self) -> ReplicaSet {
        self.clone()
    }

    fn with_status(&self, status: ReplicaSetStatus) -> Self {
        ReplicaSet {
            status: Some(status),
            ..self.clone()
        }
    }
}

impl ReplicaKind for ReplicationController {
    const CONTROLLER: &'static str = "replicationcontroller";
    const COMPONENT: &'static str = "replication-controller";
    const HAS_TERMINATING_REPLICAS: bool = false;

    fn to_replica_set(&self) -> ReplicaSet {
        to_replica_set(self)
    }

    fn with_status(&self, status: ReplicaSetStatus) -> Self {
        ReplicationController {
            status: Some(rc_status(status)),
            ..self.clone()
        }
    }
}

/// An RC as the ReplicaSet the controller code reads (upstream's `convertRCtoRS`).
pub fn to_replica_set(rc: &ReplicationController) -> ReplicaSet {
    let spec = rc.spec.clone().unwrap_or_default();
    ReplicaSet {
        metadata: rc.metadata.clone(),
        spec: ReplicaSetSpec {
            replicas: spec.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            selector: LabelSelector {
                match_labels: spec.selector,
                match_expressions: None,
            },
            template: spec.template,
        },
        status: rc.status.clone().map(rs_status),
    }
}

fn rs_status(s: ReplicationControllerStatus) -> ReplicaSetStatus {
    ReplicaSetStatus {
        replicas: s.replicas,
        fully_labeled_replicas: s.fully_labeled_replicas,
        ready_replicas: s.ready_replicas,
        available_replicas: s.available_replicas,
        observed_generation: s.observed_generation,
        terminating_replicas: None,
        conditions: s.conditions.map(|cs| {
            cs.into_iter()
                .map(|c| ReplicaSetCondition {
                    type_: Some(c.type_),
                    status: Some(c.status),
                    last_transition_time: c.last_transition_time,
                    reason: c.reason,
                    message: c.message,
                })
                .collect()
        }),
    }
}

/// A computed status back in the RC's shape (upstream's `convertRSStatusToRC`).
pub fn rc_status(s: ReplicaSetStatus) -> ReplicationControllerStatus {
    ReplicationControllerStatus {
        replicas: s.replicas,
        fully_labeled_replicas: s.fully_labeled_replicas,
        ready_replicas: s.ready_replicas,
        available_replicas: s.available_replicas,
        observed_generation: s.observed_generation,
        conditions: s.conditions.map(|cs| {
            cs.into_iter()
                .map(|c| ReplicationControllerCondition {
                    type_: c.type_.unwrap_or_default(),
                    status: c.status.unwrap_or_default(),
                    last_transition_time: c.last_transition_time,
                    reason: c.reason,
                    message: c.message,
                })
                .collect()
        }),
    }
}
