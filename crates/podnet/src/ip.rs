//! Running iproute2 (`ip`, `bridge`): one `ip -j -d -batch -` (and one `bridge -j fdb show`
//! while the vxlan device exists) reads the state, one `ip -batch -` and one
//! `bridge -batch -` write it. The only module that runs them. iproute2 rather than a netlink
//! crate: the node already needs it (CNI plugins, the agent), its batch mode makes a sync two
//! processes whatever its size, and its JSON output is stable.

use std::collections::BTreeSet;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::observed::{self, Observed};
use crate::plan::Fdb;
use crate::{PodNetError, VXLAN_DEVICE};

/// How the tools are run: directly, or behind a prefix such as
/// `["ip", "netns", "exec", "t1"]` (tests, benchmarks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tools {
    pub prefix: Vec<String>,
}

impl Tools {
    /// The tools inside network namespace `netns` (through `ip netns exec`).
    pub fn in_netns(netns: &str) -> Tools {
        Tools {
            prefix: ["ip", "netns", "exec", netns]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    async fn run(&self, tool: &str, args: &[&str], stdin: &str) -> Result<String, PodNetError> {
        let mut argv: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
        argv.push(tool);
        argv.extend_from_slice(args);
        let command = argv.join(" ");
        let spawn_err = |source| PodNetError::Spawn {
            command: command.clone(),
            source,
        };
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        if let Some(mut input) = child.stdin.take() {
            // A closed pipe shows up as the tool's own failure below.
            let _ = input.write_all(stdin.as_bytes()).await;
        }
        let out = child.wait_with_output().await.map_err(spawn_err)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).take(6).collect();
            return Err(PodNetError::Command {
                command,
                stderr: lines.join(" | "),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The kernel's state: links, our routes, the vxlan device's neighbours and fdb.
    pub async fn read(&self) -> Result<Observed, PodNetError> {
        let script = observed::IP_READ.join("\n") + "\n";
        let out = self
            .run("ip", &["-j", "-d", "-batch", "-"], &script)
            .await?;
        let mut observed = observed::parse_ip(&out).map_err(|reason| PodNetError::Parse {
            command: "ip -j -d -batch -".into(),
            what: "links, routes and neighbours",
            reason,
        })?;
        if observed.vxlan_device().is_some() {
            observed.fdb = self.read_fdb().await?;
        }
        Ok(observed)
    }

    async fn read_fdb(&self) -> Result<BTreeSet<Fdb>, PodNetError> {
        let out = self
            .run("bridge", &["-j", "fdb", "show", "dev", VXLAN_DEVICE], "")
            .await?;
        observed::parse_fdb(&out).map_err(|reason| PodNetError::Parse {
            command: "bridge -j fdb show".into(),
            what: "fdb entries",
            reason,
        })
    }

    /// Runs `lines` through `ip -batch -`; every line is tried (`-force`), and any failure
    /// fails the whole (the next sync reads the state again).
    pub async fn ip_batch(&self, lines: &[String]) -> Result<(), PodNetError> {
        self.batch("ip", lines).await
    }

    /// Runs `lines` through `bridge -batch -`, as [`Tools::ip_batch`].
    pub async fn bridge_batch(&self, lines: &[String]) -> Result<(), PodNetError> {
        self.batch("bridge", lines).await
    }

    async fn batch(&self, tool: &str, lines: &[String]) -> Result<(), PodNetError> {
        if lines.is_empty() {
            return Ok(());
        }
        let script = lines.join("\n") + "\n";
        self.run(tool, &["-force", "-batch", "-"], &script)
            .await
            .map(|_| ())
    }
}
