//! The `nft` command: applying a script as one transaction (`nft -f -`), and checking that
//! nftables works at all. The only module that runs `nft`.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::ProxyError;

/// How `nft` is run: `["nft"]`, or e.g. `["ip", "netns", "exec", "t1", "nft"]` in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nft {
    pub argv: Vec<String>,
}

impl Default for Nft {
    fn default() -> Self {
        Nft {
            argv: vec!["nft".to_string()],
        }
    }
}

impl Nft {
    /// `nft` inside network namespace `netns` (through `ip netns exec`).
    pub fn in_netns(netns: &str) -> Nft {
        Nft {
            argv: ["ip", "netns", "exec", netns, "nft"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]);
        cmd.kill_on_drop(true);
        cmd
    }

    /// Runs `nft` with `args` and `stdin`; its stdout on success.
    pub async fn run(&self, args: &[&str], stdin: &str) -> Result<String, ProxyError> {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ProxyError::Spawn {
                command: self.argv.join(" "),
                source,
            })?;
        if let Some(mut input) = child.stdin.take() {
            // A closed pipe shows up as nft's own failure below.
            let _ = input.write_all(stdin.as_bytes()).await;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| ProxyError::Spawn {
                command: self.argv.join(" "),
                source,
            })?;
        if !out.status.success() {
            return Err(ProxyError::Nft {
                args: args.join(" "),
                stderr: first_lines(&String::from_utf8_lossy(&out.stderr)),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Applies `script` as one transaction: all of it or nothing.
    pub async fn apply(&self, script: &str) -> Result<(), ProxyError> {
        self.run(&["-f", "-"], script).await.map(|_| ())
    }

    /// Whether nftables can be used here: `nft` runs and the kernel answers.
    pub async fn check(&self) -> Result<(), String> {
        match self.run(&["list", "tables"], "").await {
            Ok(_) => Ok(()),
            Err(ProxyError::Spawn { command, source }) => {
                Err(format!("cannot run {command}: {source}"))
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// nft's error output, shortened: a failed transaction repeats the script line by line.
fn first_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(6)
        .collect();
    lines.join(" | ")
}
