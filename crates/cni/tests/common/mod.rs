//! Test harness: a private CNI network (own bridge, unused pod CIDR, IPAM and cache dirs in a
//! temp dir) whose guard always DELs, removes the namespaces, and deletes the bridge and any
//! iptables rule that names one of its containers.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cni::{netns, write_default_conflist, Attachment, Cni, PortMapping};

pub const BUSYBOX: &str = "/usr/bin/busybox";

pub fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

pub fn run_ok(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Chooses a 10.2xx.y.0/24 that no address or route on this machine mentions. Parallel tests
/// serialize on a lock and remember what they took.
fn unused_pod_cidr() -> String {
    static TAKEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let in_use = run("ip", &["-4", "addr"]) + &run("ip", &["-4", "route", "show", "table", "all"]);
    let mut seed = random_u64();
    for _ in 0..1000 {
        let second = 200 + (seed % 55);
        let third = (seed >> 8) % 256;
        seed = seed.rotate_left(17) ^ random_u64();
        let prefix = format!("10.{second}.{third}.");
        if !in_use.contains(&prefix) && !taken.contains(&prefix) {
            taken.push(prefix.clone());
            return format!("{prefix}0/24");
        }
    }
    panic!("no unused 10.2xx.y.0/24 found");
}

pub struct TestNet {
    pub dir: tempfile::TempDir,
    pub bridge: String,
    pub network: String,
    pub pod_cidr: String,
    pub conflist: PathBuf,
    pub ipam_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub cni: Cni,
    /// Everything the test attached or pinned, for the guard.
    attachments: Mutex<Vec<Attachment>>,
}

impl TestNet {
    pub fn new() -> TestNet {
        let dir = tempfile::tempdir().expect("temp dir");
        let suffix = format!("{:04x}", random_u64() & 0xffff);
        let bridge = format!("pptest{suffix}");
        let network = format!("pptest-{suffix}");
        let pod_cidr = unused_pod_cidr();
        let conflist = dir.path().join("net.d/10-pptest.conflist");
        let ipam_dir = dir.path().join("ipam");
        let cache_dir = dir.path().join("cache");
        write_default_conflist(&conflist, &network, &bridge, &pod_cidr, &ipam_dir, None)
            .expect("conflist");
        let cni = Cni::new(vec![], conflist.clone(), cache_dir.clone()).expect("Cni::new");
        TestNet {
            dir,
            bridge,
            network,
            pod_cidr,
            conflist,
            ipam_dir,
            cache_dir,
            cni,
            attachments: Mutex::new(Vec::new()),
        }
    }

    /// A pod attachment with its own pinned netns, registered with the guard.
    pub fn pod(&self, name: &str, port_mappings: Vec<PortMapping>) -> Attachment {
        let container_id = format!("pptest{:012x}", random_u64() & 0xffff_ffff_ffff);
        let netns_path = self.dir.path().join("netns").join(&container_id);
        let attachment = Attachment {
            container_id,
            netns: netns_path,
            ifname: "eth0".into(),
            pod_namespace: "default".into(),
            pod_name: name.into(),
            pod_uid: format!("uid-{name}"),
            port_mappings,
        };
        self.attachments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(attachment.clone());
        netns::create(&attachment.netns).expect("netns create");
        attachment
    }

    /// The host-local lease file of `ip`.
    pub fn lease_path(&self, ip: IpAddr) -> PathBuf {
        self.ipam_dir.join(&self.network).join(ip.to_string())
    }

    /// Interfaces enslaved to the test bridge (the host-side veths).
    pub fn bridge_ports(&self) -> Vec<String> {
        run("ip", &["-o", "link", "show", "master", &self.bridge])
            .lines()
            .filter_map(|line| line.split(':').nth(1))
            .map(|name| name.trim().split('@').next().unwrap_or("").to_string())
            .filter(|name| !name.is_empty())
            .collect()
    }

    pub fn cache_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.cache_dir.join("results"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The bridge's own address (the pods' gateway).
    pub fn gateway(&self) -> IpAddr {
        let prefix = self.pod_cidr.trim_end_matches("0/24");
        format!("{prefix}1").parse().expect("gateway address")
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let attachments =
            std::mem::take(&mut *self.attachments.lock().unwrap_or_else(|e| e.into_inner()));
        let cni = self.cni.clone();
        let to_delete = attachments.clone();
        // The tests run inside a tokio runtime, so DEL runs on a runtime of its own thread.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            for attachment in &to_delete {
                if let Err(e) = runtime.block_on(cni.del(attachment)) {
                    eprintln!("guard: DEL {}: {e}", attachment.container_id);
                }
            }
        })
        .join();
        for attachment in &attachments {
            if let Err(e) = netns::remove(&attachment.netns) {
                eprintln!("guard: removing netns: {e}");
            }
            remove_iptables_rules_naming(&attachment.container_id);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// `iptables-save` lines (both tables the plugins use) that mention `needle`.
pub fn iptables_lines_with(needle: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for table in ["nat", "filter"] {
        lines.extend(
            run("iptables-save", &["-t", table])
                .lines()
                .filter(|line| line.contains(needle))
                .map(|line| format!("[{table}] {line}")),
        );
    }
    lines
}

/// Safety net for the guard: deletes every rule whose text names `container_id` (the plugins
/// put it in a comment) and the per-container `CNI-*` chains those rules jump to.
pub fn remove_iptables_rules_naming(container_id: &str) {
    for table in ["nat", "filter"] {
        let save = run("iptables-save", &["-t", table]);
        let mut chains = Vec::new();
        for line in save
            .lines()
            .filter(|l| l.starts_with("-A ") && l.contains(container_id))
        {
            let words = split_iptables_words(line);
            if let Some(target) = words
                .iter()
                .position(|w| w == "-j")
                .and_then(|i| words.get(i + 1))
            {
                if target.starts_with("CNI-") && !target.starts_with("CNI-HOSTPORT-") {
                    chains.push(target.clone());
                }
            }
            let mut args: Vec<&str> = vec!["-w", "-t", table, "-D"];
            args.extend(words.iter().skip(1).map(String::as_str));
            let _ = Command::new("iptables").args(&args).output();
        }
        chains.sort();
        chains.dedup();
        for chain in chains {
            let _ = Command::new("iptables")
                .args(["-w", "-t", table, "-F", &chain])
                .output();
            let _ = Command::new("iptables")
                .args(["-w", "-t", table, "-X", &chain])
                .output();
        }
    }
}

/// Splits an `iptables-save` rule into words: spaces separate, `"…"` quotes with `\"` escapes.
pub fn split_iptables_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quotes => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '"' => in_quotes = !in_quotes,
            ' ' if !in_quotes => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Runs `f` on a fresh thread that has joined the network namespace pinned at `netns`.
/// Sockets created there stay in that namespace wherever they are used afterwards.
pub fn in_netns<T: Send + 'static>(netns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(netns).expect("open netns");
    std::thread::spawn(move || {
        // SAFETY: file is an open nsfs fd; setns only changes this thread's namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread")
}

/// A TCP server in `netns` on `port` that greets every client with `greeting` and closes.
/// Returns the thread's stop flag owner; dropping it stops accepting after the next client.
pub struct Greeter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    port: u16,
}

impl Greeter {
    pub fn start(netns: &Path, port: u16, greeting: &'static str) -> Greeter {
        let listener = in_netns(netns, move || {
            TcpListener::bind(("0.0.0.0", port)).expect("bind in netns")
        });
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_flag = stop.clone();
        std::thread::spawn(move || {
            while !stop_flag.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.write_all(greeting.as_bytes());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => break,
                }
            }
        });
        Greeter { stop, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Greeter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Connects to `address` (from wherever the calling thread's netns is) and reads the greeting.
pub fn fetch_greeting(address: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut greeting = String::new();
    stream.read_to_string(&mut greeting)?;
    Ok(greeting)
}

/// A TCP port nothing on the host listens on right now.
pub fn free_host_port() -> u16 {
    for _ in 0..100 {
        let port = 30000 + (random_u64() % 20000) as u16;
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free host port");
}
