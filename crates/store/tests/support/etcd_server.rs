//! A throwaway single-member etcd for tests and the benchmark: Debian's `etcd` binary on
//! free loopback ports with a temporary data directory, killed (by PID) when dropped.
//!
//! Shared by `tests/conformance.rs` and `examples/store_bench.rs` through `#[path]`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Where the binary is looked for unless `ETCD_BIN` says otherwise.
pub const DEFAULT_ETCD: &str = "/usr/bin/etcd";

pub struct EtcdServer {
    child: Child,
    pub endpoint: String,
    log: PathBuf,
    // Dropped after the child is killed (fields drop after `Drop::drop`).
    _data: tempfile::TempDir,
}

impl EtcdServer {
    /// Start etcd and wait until it reports healthy. Fails (never skips) if the binary is
    /// missing, so a machine without etcd cannot pass the etcd tests by accident.
    pub fn start() -> anyhow::Result<EtcdServer> {
        let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| DEFAULT_ETCD.to_owned());
        if !Path::new(&bin).exists() {
            bail!(
                "etcd binary {bin} not found: install Debian's etcd-server \
                 (`apt-get install -y etcd-server`) or point ETCD_BIN at an etcd; the etcd \
                 backend tests need a real etcd"
            );
        }
        let mut last_error = None;
        // Ports are found by binding port 0 and releasing it, so another process can take
        // one before etcd binds it; that shows as an early exit and is retried.
        for _ in 0..3 {
            match Self::try_start(&bin) {
                Ok(server) => return Ok(server),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    fn try_start(bin: &str) -> anyhow::Result<EtcdServer> {
        let data = tempfile::tempdir().context("creating etcd data dir")?;
        let client = free_port()?;
        let peer = free_port()?;
        let client_url = format!("http://{client}");
        let peer_url = format!("http://{peer}");
        let log = data.path().join("etcd.log");
        let log_file = std::fs::File::create(&log).context("creating etcd log")?;
        let mut command = Command::new(bin);
        command
            .arg("--name=test")
            .arg(format!("--data-dir={}", data.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file));
        die_with_parent(&mut command);
        let child = command.spawn().with_context(|| format!("spawning {bin}"))?;
        let mut server = EtcdServer {
            child,
            endpoint: client_url,
            log,
            _data: data,
        };
        server.wait_healthy(client, Duration::from_secs(30))?;
        Ok(server)
    }

    fn wait_healthy(&mut self, addr: SocketAddr, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().context("polling etcd")? {
                bail!(
                    "etcd exited during startup ({status}):\n{}",
                    self.log_tail()
                );
            }
            if health(addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("etcd not healthy after {limit:?}:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // `Child::kill` is SIGKILL to exactly this PID; reaping it avoids a zombie.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?)
}

/// etcd's `/health` is true once the member has a leader and can serve requests.
fn health(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

/// Have the kernel SIGKILL etcd if the thread that started it dies, so a test binary that
/// is itself killed does not leave etcd behind. `Drop` remains the normal way it ends.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}
