//! A container monitor outlives the process that spawned it (as it must outlive a killed
//! agent). Own test binary: it makes the test process a child subreaper so it can reap the
//! orphaned monitor itself instead of leaving a zombie behind.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

#[tokio::test]
async fn monitor_and_container_survive_their_spawner() {
    // SAFETY: process attribute only.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    for kind in RUNTIMES {
        let mut pod = pod(kind, false).await;
        let id = "orphan";
        pod.containers.push(id.to_string());
        let config = pod.config(id, "sleep 1; echo alive; exit 5");
        let bundle = pod.bundle(id);
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec(&oci::build_spec(&config).unwrap()).unwrap(),
        )
        .unwrap();
        std::fs::create_dir_all(pod.log(id).parent().unwrap()).unwrap();

        // A shell starts the monitor in the background and exits at once.
        let mut spawner = Command::new("/bin/sh");
        spawner
            .arg("-c")
            .arg("\"$@\" & echo \"spawned $!\"")
            .arg("sh")
            .arg(shim())
            .arg("monitor")
            .arg("--runtime")
            .arg(pod.runtime.binary())
            .arg("--runtime-root")
            .arg(pod.runtime.state_root())
            .args(["--id", id, "--bundle"])
            .arg(&bundle)
            .arg("--log")
            .arg(pod.log(id))
            .arg("--exit-file")
            .arg(pod.exit_file(id))
            .stdout(Stdio::piped());
        if pod.runtime.uses_private_mountns() {
            spawner.arg("--private-mountns");
        }
        let mut child = spawner.spawn().unwrap();
        let spawner_pid = child.id();
        let (mut monitor, mut container) = (None, None);
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(pid) = line.strip_prefix("spawned ") {
                monitor = pid.parse::<u32>().ok();
            } else if let Some(pid) = line.strip_prefix("created ") {
                container = pid.parse::<u32>().ok();
            } else {
                panic!("{kind:?}: unexpected {line:?}");
            }
        }
        assert!(child.wait().unwrap().success());
        let (monitor, container) = (monitor.unwrap(), container.unwrap());
        // The spawner is gone; the monitor was reparented (to us, the subreaper).
        assert_eq!(ppid(monitor), Some(std::process::id()), "{kind:?}");
        assert_ne!(ppid(monitor), Some(spawner_pid));
        assert_eq!(ppid(container), Some(monitor), "{kind:?}");

        pod.runtime.start(id).await.unwrap();
        let exit = wait_exit(&pod.exit_file(id)).await;
        assert_eq!(exit.exit_code, 5, "{kind:?}");
        let entries = pod.log_entries(id);
        assert_eq!(
            entries,
            [("stdout".to_string(), false, "alive".to_string())]
        );

        let mut status = 0;
        // SAFETY: reaping the orphaned monitor, which is our child now.
        let reaped = tokio::task::spawn_blocking(move || unsafe {
            libc::waitpid(monitor as i32, &mut status, 0)
        })
        .await
        .unwrap();
        assert_eq!(reaped, monitor as i32, "{kind:?}");
    }
}
