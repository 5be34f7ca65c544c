//! Owns running one plugin binary by the CNI protocol: the `CNI_*` environment, the config on
//! stdin, the result (or error object) on stdout, a timeout, and stderr to tracing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::error::{CniError, PluginCall, PluginError};

/// Everything that goes into a plugin's environment besides the command.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeArgs<'a> {
    pub container_id: &'a str,
    /// `None` when the namespace is gone: the spec lets DEL run without one.
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
    /// `CNI_ARGS`: `K=V;K=V`.
    pub cni_args: &'a str,
}

/// The `PATH` plugins get when the agent has none: bridge and portmap look up `iptables` there.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(crate) fn find_plugin(plugin: &str, dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    dirs.iter()
        .map(|dir| dir.join(plugin))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| CniError::PluginNotFound {
            plugin: plugin.to_string(),
            dirs: dirs.to_vec(),
        })
}

/// Runs `binary` with `command` and returns its stdout parsed as JSON (`None` when empty, as
/// DEL and CHECK print nothing on success).
pub(crate) async fn run_plugin(
    binary: &Path,
    call: &PluginCall,
    plugin_dirs: &[PathBuf],
    args: &RuntimeArgs<'_>,
    stdin_config: &Value,
    timeout: Duration,
) -> Result<Option<Value>, CniError> {
    let stdin_bytes =
        serde_json::to_vec(stdin_config).map_err(|e| CniError::InvalidAttachment(e.to_string()))?;
    let cni_path = std::env::join_paths(plugin_dirs).map_err(|e| CniError::Config {
        path: PathBuf::new(),
        reason: format!("plugin directories cannot form CNI_PATH: {e}"),
    })?;
    let mut command = Command::new(binary);
    command
        .env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", args.container_id)
        .env(
            "CNI_NETNS",
            args.netns.map(Path::as_os_str).unwrap_or_default(),
        )
        .env("CNI_IFNAME", args.ifname)
        .env("CNI_ARGS", args.cni_args)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if std::env::var_os("PATH").is_none() {
        command.env("PATH", DEFAULT_PATH);
    }
    tracing::debug!(plugin = %binary.display(), command = call.command, container_id = args.container_id, "running CNI plugin");
    let crashed = |status: String, output: String| CniError::PluginCrashed {
        call: call.clone(),
        status,
        output,
    };
    let mut child = command
        .spawn()
        .map_err(|e| crashed("could not start".into(), e.to_string()))?;
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A plugin may exit without reading stdin (e.g. on a bad environment); its exit
            // status and stdout then say why, so a broken pipe here is not the error to report.
            if let Err(e) = stdin.write_all(&stdin_bytes).await {
                tracing::debug!(error = %e, "writing CNI config to plugin stdin");
            }
        }
        child.wait_with_output().await
    };
    let output = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(crashed("waiting for plugin".into(), e.to_string())),
        // Dropping the future drops the child, which kill_on_drop kills.
        Err(_) => {
            return Err(CniError::Timeout {
                call: call.clone(),
                timeout,
            })
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        tracing::warn!(%call, status = %output.status, stdout = %stdout.trim(), stderr = %stderr.trim(), "CNI plugin failed");
        // CNI 1.0 plugins print the error object on stdout; some older ones on stderr.
        let error = serde_json::from_slice::<PluginError>(&output.stdout)
            .or_else(|_| serde_json::from_slice::<PluginError>(&output.stderr));
        return Err(match error {
            Ok(error) => CniError::Plugin {
                call: call.clone(),
                error,
            },
            Err(_) => {
                let text = if stdout.trim().is_empty() {
                    stderr.trim()
                } else {
                    stdout.trim()
                };
                crashed(output.status.to_string(), text.to_string())
            }
        });
    }
    if !stderr.trim().is_empty() {
        tracing::debug!(%call, stderr = %stderr.trim(), "CNI plugin stderr");
    }
    if stdout.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&output.stdout)
        .map(Some)
        .map_err(|e| CniError::InvalidResult {
            call: call.clone(),
            reason: format!("{e}: {}", stdout.trim()),
        })
}
