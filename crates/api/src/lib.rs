//! The Kubernetes API as pure functions.
//!
//! Owns: re-export of the API types (`k8s-openapi`, v1.37), defaulting and validation of the
//! served kinds (batch/v1 and policy/v1 in `batch`, `policy`; Services in `service`, Endpoints and
//! EndpointSlices in `discovery`, ServiceCIDRs and IPAddresses in `networking`,
//! CertificateSigningRequests and PKCS#10 parsing in `certificates`), cron schedules, label and field selectors, JSON / merge / strategic-merge patching, and the
//! pod STATUS column as kubectl prints it.
//!
//! Does not own: any I/O, storage, HTTP or clocks beyond what a caller passes in — but for
//! `cron::load_location`, which reads the system tz database as Go's `time.LoadLocation`
//! does in upstream's CronJob validation, and the CSR strategy, which stamps new conditions
//! with the current time as upstream's `populateConditionTimestamps` does.
//!
//! May depend on: k8s-openapi, serde_json, json-patch, jiff, x509-parser.

pub use k8s_openapi;

pub mod apps;
pub mod batch;
pub mod certificates;
pub mod cron;
pub mod discovery;
pub mod events;
pub mod field;
pub mod kinds;
pub mod meta;
pub mod networking;
pub mod patch;
pub mod pod;
pub mod policy;
pub mod printer;
pub mod quantity;
pub mod scheduling;
pub mod selector;
pub mod service;
pub mod validation;
pub mod workload;

pub use apps::*;
pub use events::{core_event_from_events_v1, events_v1_from_core_event};
pub use field::{invalid_message, ErrorType, FieldError, FieldErrors};
pub use kinds::*;
pub use meta::{generate_name, validate_object_meta, validate_object_meta_update, NameRule};
pub use patch::{json_patch, merge_patch, strategic_merge_patch, PatchError, PatchSchema};
pub use pod::{
    default_pod, prepare_pod_for_create, qos_class, validate_pod, validate_pod_status_update,
    validate_pod_update,
};
pub use printer::{event_row, human_duration, node_row, pod_row, EventRow, NodeRow, PodRow};
pub use selector::{FieldSelector, LabelSelector, SelectorError};
