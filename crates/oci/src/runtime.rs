//! The crun/runc command-line driver. `create` goes through a `peapod-shim monitor` (which
//! owns the container's stdio and exit status); `start`, `kill`, `delete`, `state` and `list`
//! run the runtime directly. On a v1/v2 hybrid host crun is always run in a private mount
//! namespace without the cgroup2 mount, where it sees (and accepts) plain cgroup v1.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

use crate::cgroup::{self, CgroupMode};
use crate::sandbox::{parse_status_line, spawn_and_read_line};
use crate::OciError;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Crun,
    Runc,
}

impl RuntimeKind {
    pub fn binary_name(self) -> &'static str {
        match self {
            RuntimeKind::Crun => "crun",
            RuntimeKind::Runc => "runc",
        }
    }
}

/// How a container's stdio is set up by its monitor (the container's `stdin`, `stdinOnce`
/// and `tty`); every container gets an attach socket for its output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerIo {
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

impl ContainerIo {
    pub fn of(config: &crate::ContainerConfig) -> ContainerIo {
        ContainerIo {
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            tty: config.tty,
        }
    }
}

/// A container as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerState {
    pub id: String,
    /// `created`, `running`, `stopped` (or `paused`).
    pub status: String,
    /// Host pid of the container's init; absent or 0 once stopped.
    #[serde(default, deserialize_with = "zero_is_none")]
    pub pid: Option<u32>,
    #[serde(default)]
    pub bundle: PathBuf,
}

fn zero_is_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(Option::<u32>::deserialize(d)?.filter(|pid| *pid != 0))
}

#[derive(Debug, Clone)]
pub struct Runtime {
    kind: RuntimeKind,
    binary: PathBuf,
    state_root: PathBuf,
    shim: PathBuf,
    cgroup_mode: CgroupMode,
    private_mountns: bool,
    log_max_bytes: u64,
    log_max_files: u32,
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

impl Runtime {
    /// Finds the runtime binary in PATH (and /usr/sbin, where Debian puts runc), and decides
    /// how to run it on this host's cgroup layout. `state_root` is the runtime's `--root`.
    pub fn new(kind: RuntimeKind, state_root: PathBuf, shim: PathBuf) -> Result<Runtime, OciError> {
        let binary = find_in_path(kind.binary_name())
            .ok_or_else(|| OciError::RuntimeNotFound(kind.binary_name().into()))?;
        std::fs::create_dir_all(&state_root).map_err(|e| OciError::io("mkdir", &state_root, e))?;
        let cgroup_mode = cgroup::detect();
        Ok(Runtime {
            kind,
            binary,
            state_root,
            shim,
            cgroup_mode,
            private_mountns: kind == RuntimeKind::Crun && cgroup_mode == CgroupMode::Hybrid,
            log_max_bytes: 10 * 1024 * 1024,
            log_max_files: 5,
        })
    }

    /// Container log rotation, passed to every monitor started afterwards (kubelet's
    /// `containerLogMaxSize` / `containerLogMaxFiles`; defaults 10 MiB and 5).
    pub fn with_log_rotation(mut self, max_bytes: u64, max_files: u32) -> Runtime {
        self.log_max_bytes = max_bytes;
        self.log_max_files = max_files;
        self
    }

    pub fn kind(&self) -> RuntimeKind {
        self.kind
    }

    pub fn cgroup_mode(&self) -> CgroupMode {
        self.cgroup_mode
    }

    /// Whether runtime commands run in a private mount namespace (crun on a hybrid host).
    pub fn uses_private_mountns(&self) -> bool {
        self.private_mountns
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.state_root)
            .args(["--log-format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if self.private_mountns {
            // SAFETY: runs in the forked child before exec and only makes raw syscalls.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::unshare(libc::CLONE_NEWNS) == -1
                        || libc::mount(
                            std::ptr::null(),
                            c"/".as_ptr(),
                            std::ptr::null(),
                            // Slave, not private: mounts the host makes later still reach containers
                            // (mountPropagation: HostToContainer); what is unmounted here stays here.
                            libc::MS_REC | libc::MS_SLAVE,
                            std::ptr::null(),
                        ) == -1
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    // Not mounted (EINVAL) is fine.
                    libc::umount2(c"/sys/fs/cgroup/unified".as_ptr(), libc::MNT_DETACH);
                    Ok(())
                });
            }
        }
        cmd
    }

    /// `RUNTIME exec ID ARGS...`: a process in the container's namespaces, cgroup, user and
    /// capabilities, with stdio piped (stdin only when `stdin`). The runtime exits with the
    /// process's exit code. Not started: the caller spawns it.
    pub fn exec_command(&self, id: &str, args: &[String], stdin: bool) -> Command {
        let mut cmd = self.command();
        cmd.arg("exec").arg(id).args(args);
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() });
        cmd
    }

    /// `RUNTIME exec --pid-file FILE ID ARGS...`: as [`Runtime::exec_command`] without
    /// stdin, with the process's host PID written to `pid_file`, so a caller that gives up
    /// on it (a probe's timeout) can kill the process itself: killing the runtime alone
    /// leaves it running in the container.
    pub fn exec_command_with_pid_file(
        &self,
        id: &str,
        args: &[String],
        pid_file: &Path,
    ) -> Command {
        let mut cmd = self.command();
        cmd.arg("exec")
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .args(args);
        cmd
    }

    /// `RUNTIME exec --tty [--console-socket SOCKET] ID ARGS...`: as
    /// [`Runtime::exec_command`], with a terminal; the runtime still exits with the
    /// process's exit code.
    /// - With a console socket the runtime sends the container's pty master over it
    ///   (SCM_RIGHTS), as conmon and containerd receive it; the holder carries the
    ///   terminal's I/O and sets its size directly.
    /// - Without, the caller gives the runtime a pty slave as stdio and controlling
    ///   terminal, and the runtime copies between it and the container's pty.
    ///
    /// Use [`Runtime::exec_takes_console_socket`] to choose.
    pub fn exec_tty_command(
        &self,
        id: &str,
        args: &[String],
        console_socket: Option<&Path>,
    ) -> Command {
        let mut cmd = self.command();
        cmd.arg("exec").arg("--tty");
        if let Some(socket) = console_socket {
            cmd.arg("--console-socket").arg(socket);
        }
        cmd.arg(id).args(args);
        cmd
    }

    /// Whether `exec --tty` should hand over its terminal on a console socket. crun does so
    /// and still waits for the process, while copying through an inherited pty it does not
    /// pass resizes on. runc refuses a console socket unless it detaches (and a detached
    /// runc reports no exit code), while its copying mode follows resizes (SIGWINCH).
    pub fn exec_takes_console_socket(&self) -> bool {
        self.kind == RuntimeKind::Crun
    }

    /// Runs `RUNTIME --root STATE <args>`; Ok(stdout) on success, Err(reason) on failure.
    async fn run(&self, args: &[&str]) -> Result<Result<Vec<u8>, String>, OciError> {
        let mut cmd = self.command();
        cmd.args(args);
        let output = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
            .await
            .map_err(|_| {
                OciError::Timeout(format!("{} {}", self.kind.binary_name(), args.join(" ")))
            })?
            .map_err(|e| OciError::io("run", &self.binary, e))?;
        if output.status.success() {
            Ok(Ok(output.stdout))
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Ok(Err(runtime_message(&stderr).unwrap_or_else(|| {
                format!("exited with {}", output.status)
            })))
        }
    }

    fn failed(&self, op: &'static str, id: &str, message: String) -> OciError {
        OciError::Runtime {
            runtime: self.kind.binary_name(),
            op,
            id: id.to_string(),
            message,
        }
    }

    /// Whether the runtime has state for `id` (its state directory exists).
    fn has_state(&self, id: &str) -> bool {
        self.state_root.join(id).exists()
    }

    pub async fn start(&self, id: &str) -> Result<(), OciError> {
        self.run(&["start", id])
            .await?
            .map(drop)
            .map_err(|message| self.failed("start", id, message))
    }

    /// Sends `signal` to the container's init; fine if it already stopped or is gone.
    pub async fn kill(&self, id: &str, signal: i32) -> Result<(), OciError> {
        match self.run(&["kill", id, &signal.to_string()]).await? {
            Ok(_) => Ok(()),
            Err(message) => match self.state(id).await? {
                None => Ok(()),
                Some(state) if state.status == "stopped" => Ok(()),
                Some(_) => Err(self.failed("kill", id, message)),
            },
        }
    }

    /// Deletes the container's runtime state (and its cgroup); `force` kills it first if it
    /// still runs. A container the runtime does not know is already deleted.
    pub async fn delete(&self, id: &str, force: bool) -> Result<(), OciError> {
        if !self.has_state(id) {
            return Ok(());
        }
        let args: &[&str] = if force {
            &["delete", "--force", id]
        } else {
            &["delete", id]
        };
        match self.run(args).await? {
            Ok(_) => Ok(()),
            Err(_) if !self.has_state(id) => Ok(()),
            Err(message) => Err(self.failed("delete", id, message)),
        }
    }

    /// The runtime's view of one container; `None` if it does not know it.
    pub async fn state(&self, id: &str) -> Result<Option<ContainerState>, OciError> {
        if !self.has_state(id) {
            return Ok(None);
        }
        match self.run(&["state", id]).await? {
            Ok(stdout) => serde_json::from_slice(&stdout)
                .map(Some)
                .map_err(|e| self.failed("state", id, format!("unparsable state: {e}"))),
            Err(_) if !self.has_state(id) => Ok(None),
            Err(message) if is_not_found(&message) => Ok(None),
            Err(message) => Err(self.failed("state", id, message)),
        }
    }

    /// Every container the runtime knows (for re-adoption and orphan cleanup).
    pub async fn list(&self) -> Result<Vec<ContainerState>, OciError> {
        let stdout = self
            .run(&["list", "--format", "json"])
            .await?
            .map_err(|message| self.failed("list", "", message))?;
        // runc prints `null` when there is none.
        let list: Option<Vec<ContainerState>> = serde_json::from_slice(&stdout)
            .map_err(|e| self.failed("list", "", format!("unparsable list: {e}")))?;
        Ok(list.unwrap_or_default())
    }

    /// Writes `bundle/config.json` and has a `peapod-shim monitor` run the runtime's `create`;
    /// returns the container's host pid once created, or the runtime's own reason as
    /// [`OciError::Create`]. The monitor then writes `log` (CRI format), serves attach
    /// sessions on the socket `attach` in `bundle` (holding stdin open per `io`) and, when the container's
    /// init exits, writes `exit_file` (see [`crate::read_exit`]).
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        spec: &oci_spec::runtime::Spec,
        io: ContainerIo,
        log: &Path,
        exit_file: &Path,
    ) -> Result<u32, OciError> {
        std::fs::create_dir_all(bundle).map_err(|e| OciError::io("mkdir", bundle, e))?;
        let config = bundle.join("config.json");
        let json = serde_json::to_vec_pretty(spec)
            .map_err(|e| OciError::Spec(format!("serialize spec: {e}")))?;
        std::fs::write(&config, json).map_err(|e| OciError::io("write", &config, e))?;
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| OciError::io("mkdir", dir, e))?;
        }
        // A leftover exit file from an earlier run of this id would read as this run's exit.
        let _ = std::fs::remove_file(exit_file);

        let mut cmd = Command::new(&self.shim);
        cmd.arg("monitor")
            .arg("--runtime")
            .arg(&self.binary)
            .arg("--runtime-root")
            .arg(&self.state_root)
            .arg("--id")
            .arg(id)
            .arg("--bundle")
            .arg(bundle)
            .arg("--log")
            .arg(log)
            .arg("--exit-file")
            .arg(exit_file)
            .arg("--log-max-bytes")
            .arg(self.log_max_bytes.to_string())
            .arg("--log-max-files")
            .arg(self.log_max_files.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if self.private_mountns {
            cmd.arg("--private-mountns");
        }
        for (on, flag) in [
            (io.stdin, "--stdin"),
            (io.stdin && io.stdin_once, "--stdin-once"),
            (io.tty, "--tty"),
        ] {
            if on {
                cmd.arg(flag);
            }
        }
        let (line, child) = spawn_and_read_line(cmd, &self.shim).await?;
        // The monitor lives on (its own session); tokio reaps it if it exits while we run.
        drop(child);
        parse_status_line(&line, "created").map_err(|e| match e {
            OciError::Shim(message) if line.starts_with("error ") => OciError::Create {
                id: id.to_string(),
                message,
            },
            other => other,
        })
    }
}

/// The runtime's reason from its stderr: the `msg` of JSON log lines, else the raw text.
fn runtime_message(stderr: &str) -> Option<String> {
    let from_json: Vec<String> = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|v| v.get("msg").and_then(|m| m.as_str()).map(String::from))
        .collect();
    if let Some(last) = from_json.last() {
        return Some(last.clone());
    }
    let text = stderr.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn is_not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("does not exist") || m.contains("not found") || m.contains("no such file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_states_from_both_runtimes() {
        let runc = r#"{"ociVersion":"1.0.2-dev","id":"c1","pid":0,"status":"stopped","bundle":"/b","rootfs":"/r","created":"2024-01-01T00:00:00Z","owner":""}"#;
        let state: ContainerState = serde_json::from_str(runc).unwrap();
        assert_eq!((state.status.as_str(), state.pid), ("stopped", None));
        let crun = r#"{"ociVersion":"1.0.0","id":"c2","pid":42,"status":"running","bundle":"/b","rootfs":"/r","created":"x","owner":"root"}"#;
        let state: ContainerState = serde_json::from_str(crun).unwrap();
        assert_eq!(state.pid, Some(42));
        let empty: Option<Vec<ContainerState>> = serde_json::from_str("null").unwrap();
        assert!(empty.is_none());
    }

    #[test]
    fn extracts_runtime_messages() {
        assert_eq!(
            runtime_message("{\"level\":\"error\",\"msg\":\"container does not exist\"}\n")
                .unwrap(),
            "container does not exist"
        );
        assert_eq!(runtime_message("plain failure\n").unwrap(), "plain failure");
        assert_eq!(runtime_message(""), None);
    }
}
