//! The pod sandbox's infra process (`peapod-shim pause`): starting it in the pod's pinned
//! network namespace, stopping it, and telling whether a recorded pid is still that process.
//! Also the pod's shared `/dev/shm` tmpfs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::OciError;

const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Spawns `peapod-shim pause`, waits for its `ready <pid>` line and returns the pid that holds
/// the pod's namespaces (with `share_pid`, the PID 1 of the pod's PID namespace).
pub async fn start_infra(
    shim: &Path,
    netns: &Path,
    hostname: &str,
    share_pid: bool,
) -> Result<u32, OciError> {
    let mut cmd = Command::new(shim);
    cmd.arg("pause")
        .arg("--netns")
        .arg(netns)
        .arg("--hostname")
        .arg(hostname)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if share_pid {
        cmd.arg("--share-pid");
    }
    let (line, child) = spawn_and_read_line(cmd, shim).await?;
    // The shim keeps running; dropping the handle leaves it to tokio to reap when it exits.
    drop(child);
    parse_status_line(&line, "ready")
}

/// Spawns a shim and reads its one status line.
pub(crate) async fn spawn_and_read_line(
    mut cmd: Command,
    shim: &Path,
) -> Result<(String, tokio::process::Child), OciError> {
    let mut child = cmd.spawn().map_err(|e| OciError::io("spawn", shim, e))?;
    let Some(stdout) = child.stdout.take() else {
        return Err(OciError::Shim("no stdout pipe".into()));
    };
    let mut line = String::new();
    let read = tokio::time::timeout(
        START_TIMEOUT * 6,
        BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    match read {
        Err(_) => {
            let _ = child.start_kill();
            Err(OciError::Timeout(format!(
                "{} did not report",
                shim.display()
            )))
        }
        Ok(Err(e)) => Err(OciError::io("read status of", shim, e)),
        Ok(Ok(_)) if line.is_empty() => {
            let status = child.wait().await.ok();
            Err(OciError::Shim(format!(
                "exited without a status line ({status:?})"
            )))
        }
        Ok(Ok(_)) => Ok((line.trim_end().to_string(), child)),
    }
}

/// `<word> <pid>` → pid; `error <message>` → the message as an error.
pub(crate) fn parse_status_line(line: &str, word: &str) -> Result<u32, OciError> {
    if let Some(message) = line.strip_prefix("error ") {
        return Err(OciError::Shim(message.to_string()));
    }
    line.strip_prefix(word)
        .and_then(|rest| rest.trim().parse().ok())
        .ok_or_else(|| OciError::Shim(format!("unexpected status line {line:?}")))
}

/// SIGKILLs the infra process and waits until it is gone. After an agent restart it is not
/// our child, so this polls /proc rather than waiting; a zombie counts as gone (it holds no
/// namespaces any more; its parent reaps it).
pub fn stop_infra(pid: u32) -> Result<(), OciError> {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return Ok(());
    };
    // SAFETY: signalling a pid the agent recorded for this pod.
    if unsafe { libc::kill(pid_t, libc::SIGKILL) } == -1 {
        return Ok(()); // ESRCH: already gone
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        let mut status = 0;
        // SAFETY: reaps it if it happens to be our child; ECHILD otherwise.
        unsafe { libc::waitpid(pid_t, &mut status, libc::WNOHANG) };
        match proc_state(pid) {
            None | Some('Z') | Some('X') => return Ok(()),
            Some(_) if Instant::now() >= deadline => {
                return Err(OciError::Timeout(format!(
                    "infra process {pid} did not die"
                )))
            }
            Some(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// `/proc/<pid>/ns/<ns>`: what containers join.
pub fn ns_path(pid: u32, ns: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/{ns}"))
}

/// Whether `pid` is alive and, given its recorded start time, still the same process (pids
/// are reused).
pub fn is_alive(pid: u32, expected_start_time: Option<u64>) -> bool {
    let Some((state, start)) = proc_stat(pid) else {
        return false;
    };
    state != 'Z' && state != 'X' && expected_start_time.is_none_or(|t| t == start)
}

/// A process's start time (clock ticks since boot, field 22 of /proc/<pid>/stat): record it
/// with the pid and pass it to [`is_alive`] later.
pub fn start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

fn proc_state(pid: u32) -> Option<char> {
    proc_stat(pid).map(|(state, _)| state)
}

fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// (state, starttime) from /proc/<pid>/stat; the command name may hold spaces and
/// parentheses, so fields are counted from the last ')'.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // state is field 3; starttime is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Mounts a tmpfs at `dir` (created if needed) for the pod's shared `/dev/shm`; `size` in
/// bytes (containerd's default is 64 MiB).
pub fn mount_shm(dir: &Path, size: u64) -> Result<(), OciError> {
    mount_tmpfs_with(
        dir,
        c"shm",
        &format!("mode=1777,size={size}"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
    )
}

/// Mounts a tmpfs at `dir` (created if needed) with `options` (e.g. `size=16m`), for
/// volumes whose contents must stay off the disk.
pub fn mount_tmpfs(dir: &Path, options: &str) -> Result<(), OciError> {
    mount_tmpfs_with(dir, c"tmpfs", options, libc::MS_NOSUID | libc::MS_NODEV)
}

fn mount_tmpfs_with(
    dir: &Path,
    source: &std::ffi::CStr,
    options: &str,
    flags: libc::c_ulong,
) -> Result<(), OciError> {
    std::fs::create_dir_all(dir).map_err(|e| OciError::io("mkdir", dir, e))?;
    let target = path_cstring(dir)?;
    let data = std::ffi::CString::new(options)
        .map_err(|_| OciError::Spec(format!("bad tmpfs options {options:?}")))?;
    // SAFETY: mount with NUL-terminated strings.
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if ret == -1 {
        return Err(OciError::io(
            "mount tmpfs",
            dir,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Unmounts the pod's shm tmpfs and removes its directory; fine if already gone.
pub fn unmount_shm(dir: &Path) -> Result<(), OciError> {
    unmount_tmpfs(dir)
}

/// Unmounts a tmpfs (see [`mount_tmpfs`]) and removes its directory; fine if already gone.
pub fn unmount_tmpfs(dir: &Path) -> Result<(), OciError> {
    let target = path_cstring(dir)?;
    // SAFETY: umount2 on a NUL-terminated path.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == -1 {
        let err = std::io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) {
            return Err(OciError::io("unmount tmpfs", dir, err));
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(OciError::io("remove", dir, e)),
        _ => Ok(()),
    }
}

fn path_cstring(path: &Path) -> Result<std::ffi::CString, OciError> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| OciError::Spec(format!("path {} contains NUL", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_odd_names() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(parse_stat(stat), Some(('S', 123456)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status_line("ready 42", "ready").unwrap(), 42);
        let err = parse_status_line("error setns: EINVAL", "ready").unwrap_err();
        assert_eq!(err.to_string(), "peapod-shim setns: EINVAL");
        assert!(parse_status_line("created x", "created").is_err());
    }

    #[test]
    fn own_process_is_alive_with_its_start_time() {
        let me = std::process::id();
        let start = start_time(me).unwrap();
        assert!(is_alive(me, Some(start)));
        assert!(!is_alive(me, Some(start + 1)));
    }
}
