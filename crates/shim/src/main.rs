//! `peapod-shim`: the per-pod helper processes peapod's node agent spawns.
//!
//! Owns: `peapod-shim pause` (the pod's infra process holding its namespaces, see [`pause`])
//! and `peapod-shim monitor` (the conmon-like per-container monitor: stdio to CRI logs and
//! attach clients, stdin held open, exit status to an exit file, see [`monitor`] and
//! [`attach`]). Both start their own session so they outlive an
//! agent that is killed, and print exactly one status line on stdout before detaching.
//!
//! Does not own: deciding anything. The agent (through the `oci` crate) builds the bundle,
//! calls the runtime's start/kill/delete and reads what the monitor leaves behind.
//!
//! May depend on: `libc` only. It stays small in memory (no async runtime, no serde), as one
//! runs per pod and per container.

mod attach;
mod cri_log;
mod monitor;
mod pause;
mod sys;

const USAGE: &str = "usage:
  peapod-shim pause --netns PATH --hostname NAME [--share-pid]
  peapod-shim monitor --runtime PATH --runtime-root DIR [--private-mountns] --id ID --bundle DIR
                      --log FILE --exit-file FILE [--log-max-bytes N] [--log-max-files N]
                      [--stdin] [--stdin-once] [--tty]
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("pause") => pause::run(&args[1..]),
        Some("monitor") => monitor::run(&args[1..]),
        _ => {
            eprint!("{USAGE}");
            2
        }
    };
    std::process::exit(code);
}
