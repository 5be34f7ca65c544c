//! Shared pieces of the integration tests: the Python image builder (`tests/e2e/images.py`),
//! a real docker-registry started through it, and guards that clean up mounts.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn images_py_dir() -> PathBuf {
    repo_root().join("tests/e2e")
}

/// Runs Python `code` with `images` importable; returns its stdout (panics with stderr).
pub fn python(code: &str) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(code)
        .env("PYTHONPATH", images_py_dir())
        .output()
        .expect("running python3");
    assert!(
        output.status.success(),
        "python failed:\n{code}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("python output is UTF-8")
}

/// `python(code)` whose last stdout line is JSON.
pub fn python_json(code: &str) -> serde_json::Value {
    let out = python(code);
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// A docker-registry on 127.0.0.1, run by `images.py registry DIR`; stopped on drop.
pub struct Registry {
    child: Child,
    stdin: Option<ChildStdin>,
    pub host_port: String,
    pub dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::spawn(None)
    }

    /// A registry demanding HTTP Basic auth (htpasswd) for `user:password`.
    pub fn start_with_auth(user_password: &str) -> Registry {
        Registry::spawn(Some(user_password))
    }

    fn spawn(user_password: Option<&str>) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new("python3")
            .arg(images_py_dir().join("images.py"))
            .arg("registry")
            .arg(dir.path())
            .args(user_password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting images.py registry");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        // images.py waits (with its own deadline) until the registry answers before printing.
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading registry address");
        let host_port = match line.trim().strip_prefix("ready ") {
            Some(hp) => hp.to_string(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("registry did not start: {line:?}");
            }
        };
        Registry {
            child,
            stdin,
            host_port,
            dir,
        }
    }

    /// Where the registry's filesystem driver keeps its data.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("registry-data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Closing stdin makes images.py stop the registry and exit.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Unmounts and removes a container dir's rootfs on drop, even when the test failed.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = image::unmount_rootfs(&self.0) {
            eprintln!("cleanup: unmount {}: {e}", self.0.display());
        }
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let Ok(canonical) = std::fs::canonicalize(path) else {
        return false;
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let wanted = canonical.to_string_lossy().replace(' ', "\\040");
    mountinfo
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(wanted.as_str()))
}

/// `chroot rootfs /bin/busybox ARGS...` -> stdout.
pub fn run_in(rootfs: &Path, args: &[&str]) -> String {
    let output = Command::new("chroot")
        .arg(rootfs)
        .arg("/bin/busybox")
        .args(args)
        .output()
        .expect("running chroot");
    assert!(
        output.status.success(),
        "chroot {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
