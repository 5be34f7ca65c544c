//! What the agent remembers about each pod on disk (`DATA/pods/<uid>/state.json`), so a
//! restarted agent re-adopts running sandboxes and containers instead of starting them
//! again. Written atomically after every change.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::AgentError;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// When the agent first acknowledged the pod (`status.startTime`).
    pub start_time: Option<jiff::Timestamp>,
    pub sandbox: Option<SandboxRecord>,
    pub containers: Vec<ContainerRecord>,
    /// Set once the pod will run nothing more (terminal phase or being deleted).
    #[serde(default)]
    pub terminal: bool,
    /// The pod ran past `activeDeadlineSeconds` and was stopped: Failed, DeadlineExceeded.
    #[serde(default)]
    pub deadline_exceeded: bool,
    /// The node evicted the pod (an emptyDir over its sizeLimit): Failed, Evicted, this
    /// message.
    #[serde(default)]
    pub evicted: Option<String>,
    /// Stages of the pod's start, for the startup timeline.
    #[serde(default)]
    pub timeline: Vec<(String, jiff::Timestamp)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxRecord {
    pub id: String,
    pub infra_pid: u32,
    /// The infra process's start time (`/proc/<pid>/stat`), so a reused pid is not taken for it.
    #[serde(default)]
    pub infra_start: Option<u64>,
    pub netns: PathBuf,
    pub ips: Vec<String>,
    pub created_at: jiff::Timestamp,
    /// When CNI ADD finished (the startup timeline's "network" stage).
    #[serde(default)]
    pub network_ready_at: Option<jiff::Timestamp>,
    /// hostPort mappings given to CNI, needed again for DEL.
    #[serde(default)]
    pub port_mappings: Vec<(u16, u16, String, Option<String>)>,
    /// `hostNetwork`: the pod uses the node's network; no netns, no CNI.
    #[serde(default)]
    pub host_network: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub init: bool,
    /// 0 for the first run; the container status's restartCount.
    pub attempt: i32,
    pub image: String,
    pub image_ref: String,
    pub image_id: String,
    pub pid: u32,
    pub created_at: jiff::Timestamp,
    pub started_at: Option<jiff::Timestamp>,
    pub exit: Option<ExitRecord>,
    pub log_path: PathBuf,
    /// The image's STOPSIGNAL (SIGTERM unless the image says otherwise).
    #[serde(default = "default_stop_signal")]
    pub stop_signal: i32,
    /// Whether it has a terminal; attach sessions follow it, as the kubelet's do.
    #[serde(default)]
    pub tty: bool,
    /// An ephemeral container (`spec.ephemeralContainers`): started once, never restarted.
    #[serde(default)]
    pub ephemeral: bool,
    /// Its postStart hook has not finished: it is not reported running yet, and the
    /// containers after it wait (as the kubelet starts them one by one).
    #[serde(default)]
    pub post_start_pending: bool,
    /// `terminationMessagePolicy: FallbackToLogsOnError`.
    #[serde(default)]
    pub fallback_to_logs: bool,
}

fn default_stop_signal() -> i32 {
    libc::SIGTERM
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub finished_at: jiff::Timestamp,
    /// Completed, Error, OOMKilled, StartError...
    pub reason: String,
    pub message: Option<String>,
}

impl PodRecord {
    pub fn path(pod_dir: &Path) -> PathBuf {
        pod_dir.join("state.json")
    }

    pub fn load(pod_dir: &Path) -> Result<Option<PodRecord>, AgentError> {
        match std::fs::read(Self::path(pod_dir)) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
                AgentError::State(format!("{}: {e}", Self::path(pod_dir).display()))
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AgentError::io(Self::path(pod_dir), e)),
        }
    }

    pub fn save(&self, pod_dir: &Path) -> Result<(), AgentError> {
        std::fs::create_dir_all(pod_dir).map_err(|e| AgentError::io(pod_dir, e))?;
        let tmp = pod_dir.join("state.json.tmp");
        let bytes = serde_json::to_vec(self).map_err(|e| AgentError::State(e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(|e| AgentError::io(&tmp, e))?;
        std::fs::rename(&tmp, Self::path(pod_dir)).map_err(|e| AgentError::io(pod_dir, e))
    }

    /// The newest instance of the named container.
    pub fn latest(&self, name: &str, init: bool) -> Option<&ContainerRecord> {
        self.containers
            .iter()
            .rev()
            .find(|c| c.name == name && c.init == init)
    }

    /// The instance before the newest (its exit is `lastState`).
    pub fn previous(&self, name: &str, init: bool) -> Option<&ContainerRecord> {
        self.containers
            .iter()
            .rev()
            .filter(|c| c.name == name && c.init == init)
            .nth(1)
    }

    pub fn mark(&mut self, stage: &str) {
        self.mark_at(stage, jiff::Timestamp::now());
    }

    pub fn mark_at(&mut self, stage: &str, at: jiff::Timestamp) {
        if !self.timeline.iter().any(|(s, _)| s == stage) {
            self.timeline.push((stage.to_string(), at));
        }
    }
}
