//! Upstream's `RealPodControl`: a controller's pod creates, deletes and patches through the
//! API, each recorded as an event on the controller as upstream words them
//! (`SuccessfulCreate` "Created pod: NAME", `FailedCreate` "Error creating: ERR",
//! `SuccessfulDelete` "Deleted pod: NAME", `FailedDelete` "Error deleting: ERR").

use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use record::{EventType, Recorder};
use tracing::debug;

use super::{
    get_pod_from_template, validate_controller_ref, FAILED_CREATE_POD_REASON,
    FAILED_DELETE_POD_REASON, SUCCESSFUL_CREATE_POD_REASON, SUCCESSFUL_DELETE_POD_REASON,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidControllerRef(&'static str),
    #[error("unable to create pods, no labels")]
    NoLabels,
    #[error("{}", message(.0))]
    Create(kube::Error),
    #[error("unable to delete pods: {}", message(.0))]
    Delete(kube::Error),
    #[error("{}", message(.0))]
    Patch(kube::Error),
}

impl Error {
    /// The API's answer, when the API answered.
    pub fn status(&self) -> Option<&kube::core::Status> {
        match self {
            Error::Create(kube::Error::Api(s))
            | Error::Delete(kube::Error::Api(s))
            | Error::Patch(kube::Error::Api(s)) => Some(s),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status().is_some_and(|s| s.code == 404)
    }

    /// 422: a patch whose `uid` precondition no longer matches (the object was re-created).
    pub fn is_invalid(&self) -> bool {
        self.status().is_some_and(|s| s.code == 422)
    }

    pub fn is_namespace_terminating(&self) -> bool {
        self.status().is_some_and(is_namespace_terminating)
    }
}

/// What upstream's `%v` of an API error prints: the Status message, else the error.
pub fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

/// A create refused because the namespace is terminating (upstream checks the
/// `NamespaceTerminating` cause; peapod's 403 says it in its message).
pub fn is_namespace_terminating(s: &kube::core::Status) -> bool {
    s.code == 403 && s.message.contains("because it is being terminated")
}

/// Pod creates, deletes and patches with their events. Cheap to clone.
#[derive(Clone)]
pub struct PodControl {
    client: Client,
    recorder: Recorder,
}

impl PodControl {
    pub fn new(client: Client, recorder: Recorder) -> PodControl {
        PodControl { client, recorder }
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Creates a pod from `template` controlled by `controller_ref`, named
    /// `<controller>-<5 random>` by the API server (upstream's `CreatePods`). `controller`
    /// is what the events are about.
    pub async fn create_pods(
        &self,
        namespace: &str,
        template: &PodTemplateSpec,
        controller: &ObjectReference,
        controller_ref: &OwnerReference,
    ) -> Result<Pod, Error> {
        self.create_pods_with_generate_name(namespace, template, controller, controller_ref, "")
            .await
    }

    /// [`create_pods`](Self::create_pods) with another `generateName` when not empty
    /// (upstream's `CreatePodsWithGenerateName`, which Jobs use for indexed pods).
    pub async fn create_pods_with_generate_name(
        &self,
        namespace: &str,
        template: &PodTemplateSpec,
        controller: &ObjectReference,
        controller_ref: &OwnerReference,
        generate_name: &str,
    ) -> Result<Pod, Error> {
        validate_controller_ref(controller_ref).map_err(Error::InvalidControllerRef)?;
        let parent = controller.name.as_deref().unwrap_or_default();
        let mut pod = get_pod_from_template(template, parent, Some(controller_ref));
        if !generate_name.is_empty() {
            pod.metadata.generate_name = Some(generate_name.to_string());
        }
        self.create_pod(namespace, pod, controller).await
    }

    /// Creates `pod` as given (a controller that names its pods itself, as StatefulSets
    /// do), with the same events; it must carry labels.
    pub async fn create_pod(
        &self,
        namespace: &str,
        pod: Pod,
        controller: &ObjectReference,
    ) -> Result<Pod, Error> {
        if pod.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
            return Err(Error::NoLabels);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        match api.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                debug!(
                    controller = controller.name.as_deref().unwrap_or_default(),
                    pod = %created.name_any(),
                    "controller created pod"
                );
                self.recorder.event(
                    controller,
                    EventType::Normal,
                    SUCCESSFUL_CREATE_POD_REASON,
                    format!("Created pod: {}", created.name_any()),
                );
                Ok(created)
            }
            Err(e) => {
                let terminating = matches!(&e, kube::Error::Api(s) if is_namespace_terminating(s));
                if !terminating {
                    self.recorder.event(
                        controller,
                        EventType::Warning,
                        FAILED_CREATE_POD_REASON,
                        format!("Error creating: {}", message(&e)),
                    );
                }
                Err(Error::Create(e))
            }
        }
    }

    /// Deletes a pod (upstream's `DeletePod`): a pod already gone is an error the caller
    /// may ignore (`is_not_found`), recorded as nothing.
    pub async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        controller: &ObjectReference,
    ) -> Result<(), Error> {
        debug!(
            controller = controller.name.as_deref().unwrap_or_default(),
            pod = %name,
            "deleting pod"
        );
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                self.recorder.event(
                    controller,
                    EventType::Normal,
                    SUCCESSFUL_DELETE_POD_REASON,
                    format!("Deleted pod: {name}"),
                );
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                debug!(pod = %name, "pod has already been deleted");
                Err(Error::Delete(kube::Error::Api(s)))
            }
            Err(e) => {
                self.recorder.event(
                    controller,
                    EventType::Warning,
                    FAILED_DELETE_POD_REASON,
                    format!("Error deleting: {}", message(&e)),
                );
                Err(Error::Delete(e))
            }
        }
    }

    /// A strategic merge patch of a pod (upstream's `PatchPod`).
    pub async fn patch_pod(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<Pod, Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map_err(Error::Patch)
    }
}
