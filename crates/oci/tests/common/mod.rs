//! Shared fixtures for the runtime integration tests: a busybox rootfs, a pinned network
//! namespace, a pod (infra process + pod cgroup) and containers, each cleaned up on Drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use oci::{cgroup, sandbox, ContainerConfig, ExitInfo, Resources, Runtime, RuntimeKind};

pub const RUNTIMES: [RuntimeKind; 2] = [RuntimeKind::Crun, RuntimeKind::Runc];

/// Builds `peapod-shim` once (it is another package's binary) and returns its path;
/// `PEAPOD_TEST_SHIM=/path` uses a prebuilt one (e.g. a release build, to measure memory).
pub fn shim() -> PathBuf {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        if let Some(path) = std::env::var_os("PEAPOD_TEST_SHIM") {
            return PathBuf::from(path);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "shim", "--quiet"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build -p shim");
        assert!(status.success(), "cargo build -p shim failed");
        // target/<profile>/deps/<test binary> → target/<profile>/peapod-shim
        let exe = std::env::current_exe().expect("current_exe");
        let path = exe.parent().unwrap().parent().unwrap().join("peapod-shim");
        assert!(path.exists(), "{} missing", path.display());
        path
    })
    .clone()
}

pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A directory with busybox as /bin/sh and friends.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(sub)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "cat", "sleep", "ps", "hostname", "readlink", "ls", "true", "false", "seq",
        "head", "yes",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    rootfs
}

/// A network namespace pinned on a bind mount, like the CNI crate makes.
pub struct NetNs {
    pub path: PathBuf,
}

impl NetNs {
    pub fn new(dir: &Path) -> NetNs {
        let path = dir.join("netns");
        std::fs::write(&path, "").unwrap();
        let target = path.clone();
        std::thread::spawn(move || {
            // SAFETY: the namespace change is confined to this short-lived thread.
            unsafe {
                assert_eq!(libc::unshare(libc::CLONE_NEWNET), 0, "unshare net");
                let tid = libc::syscall(libc::SYS_gettid);
                let src = std::ffi::CString::new(format!("/proc/self/task/{tid}/ns/net")).unwrap();
                let dst = std::ffi::CString::new(target.to_str().unwrap()).unwrap();
                let ret = libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                );
                assert_eq!(ret, 0, "bind netns: {}", std::io::Error::last_os_error());
            }
        })
        .join()
        .unwrap();
        NetNs { path }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let p = std::ffi::CString::new(self.path.to_str().unwrap()).unwrap();
        // SAFETY: unmounting our own bind mount.
        unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A pod: temp dir, netns, infra process, pod cgroup, runtime. Drop tears it all down.
pub struct Pod {
    pub dir: tempfile::TempDir,
    pub rootfs: PathBuf,
    pub netns: Option<NetNs>,
    pub infra: u32,
    /// Top-level cgroup of this test (removed on drop); the pod cgroup is `<top>/pod`.
    pub top_cgroup: String,
    pub cgroup: String,
    pub runtime: Runtime,
    pub containers: Vec<String>,
}

pub async fn pod(kind: RuntimeKind, share_pid: bool) -> Pod {
    pod_with(kind, share_pid, &Resources::default(), None).await
}

pub async fn pod_with(
    kind: RuntimeKind,
    share_pid: bool,
    limits: &Resources,
    log_rotation: Option<(u64, u32)>,
) -> Pod {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(dir.path());
    let netns = NetNs::new(dir.path());
    let top_cgroup = format!("/{}", unique("peapod-test"));
    let cgroup = format!("{top_cgroup}/pod");
    let mut runtime = Runtime::new(kind, dir.path().join("state"), shim()).unwrap();
    if let Some((bytes, files)) = log_rotation {
        runtime = runtime.with_log_rotation(bytes, files);
    }
    let mut pod = Pod {
        dir,
        rootfs,
        netns: None,
        infra: 0,
        top_cgroup,
        cgroup,
        runtime,
        containers: Vec::new(),
    };
    cgroup::create_pod_cgroup(&pod.cgroup, limits).unwrap();
    pod.infra = sandbox::start_infra(&shim(), &netns.path, "pod-host", share_pid)
        .await
        .unwrap();
    pod.netns = Some(netns);
    cgroup::add_process(&pod.cgroup, pod.infra).unwrap();
    pod
}

impl Pod {
    /// A container config joined to the pod's namespaces.
    pub fn config(&self, id: &str, script: &str) -> ContainerConfig {
        ContainerConfig {
            args: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            hostname: "pod-host".into(),
            rootfs: self.rootfs.clone(),
            netns: Some(sandbox::ns_path(self.infra, "net")),
            ipcns: Some(sandbox::ns_path(self.infra, "ipc")),
            utsns: Some(sandbox::ns_path(self.infra, "uts")),
            cgroups_path: format!("{}/{id}", self.cgroup),
            ..Default::default()
        }
    }

    pub fn log(&self, id: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{id}.log"))
    }

    pub fn exit_file(&self, id: &str) -> PathBuf {
        self.dir.path().join("bundles").join(id).join("exit")
    }

    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir.path().join("bundles").join(id)
    }

    pub async fn create(
        &mut self,
        id: &str,
        config: &ContainerConfig,
    ) -> Result<u32, oci::OciError> {
        self.containers.push(id.to_string());
        let spec = oci::build_spec(config).unwrap();
        self.runtime
            .create(
                id,
                &self.bundle(id),
                &spec,
                oci::ContainerIo::of(config),
                &self.log(id),
                &self.exit_file(id),
            )
            .await
    }

    pub async fn run(&mut self, id: &str, config: &ContainerConfig) -> ExitInfo {
        self.create(id, config).await.unwrap();
        self.runtime.start(id).await.unwrap();
        wait_exit(&self.exit_file(id)).await
    }

    /// Log contents of a container: (stream, partial, content) per entry, checking the format.
    pub fn log_entries(&self, id: &str) -> Vec<(String, bool, String)> {
        read_log_entries(&self.log(id))
    }
}

pub fn read_log_entries(path: &Path) -> Vec<(String, bool, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let parsed =
                oci::logs::parse_line(line).unwrap_or_else(|| panic!("bad log line {line:?}"));
            assert!(
                parsed.time.ends_with('Z') && parsed.time.contains('T'),
                "timestamp {:?}",
                parsed.time
            );
            (parsed.stream, parsed.partial, parsed.content)
        })
        .collect()
}

pub async fn wait_exit(exit_file: &Path) -> ExitInfo {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(info) = oci::read_exit(exit_file).unwrap() {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "no exit file at {}",
            exit_file.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Parent pid from /proc/<pid>/stat.
pub fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

impl Drop for Pod {
    fn drop(&mut self) {
        let runtime = self.runtime.clone();
        let ids = std::mem::take(&mut self.containers);
        // Drop cannot await: run the deletes on a private runtime in another thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for id in ids {
                    if let Err(e) = runtime.delete(&id, true).await {
                        eprintln!("cleanup: delete {id}: {e}");
                    }
                }
            });
        })
        .join();
        if self.infra != 0 {
            let _ = sandbox::stop_infra(self.infra);
        }
        if let Err(e) = cgroup::remove_pod_cgroup(&self.top_cgroup) {
            eprintln!("cleanup: {e}");
        }
        drop(self.netns.take());
    }
}
