//! Real containers with real crun and runc (crun through a private mount namespace on a
//! v1/v2 hybrid host), as root: logs, exit codes, shared pod namespaces, cgroup limits,
//! rotation, create errors and cleanup.

mod common;

use common::*;
use oci::{cgroup, sandbox, OciError, Resources};

#[tokio::test]
async fn container_output_lands_in_cri_log_and_exit_codes_are_recorded() {
    for kind in RUNTIMES {
        let mut pod = pod(kind, false).await;
        let ok = pod.config("ok", "echo out; echo err >&2; printf partial");
        let exit = pod.run("ok", &ok).await;
        assert_eq!((exit.exit_code, exit.signal), (0, None), "{kind:?}");
        assert!(exit.finished_at.ends_with('Z'));
        let mut entries = pod.log_entries("ok");
        entries.sort();
        assert_eq!(
            entries,
            [
                ("stderr".to_string(), false, "err".to_string()),
                ("stdout".to_string(), false, "out".to_string()),
                ("stdout".to_string(), true, "partial".to_string()),
            ],
            "{kind:?}"
        );

        let three = pod.config("three", "echo bye; exit 3");
        assert_eq!(pod.run("three", &three).await.exit_code, 3, "{kind:?}");
        let state = pod.runtime.state("three").await.unwrap().unwrap();
        assert_eq!(state.status, "stopped", "{kind:?}");
    }
}

#[tokio::test]
async fn sigkill_is_recorded_as_137() {
    for kind in RUNTIMES {
        let mut pod = pod(kind, false).await;
        let config = pod.config("sleeper", "echo started; exec sleep 1000");
        let pid = pod.create("sleeper", &config).await.unwrap();
        pod.runtime.start("sleeper").await.unwrap();
        let state = pod.runtime.state("sleeper").await.unwrap().unwrap();
        assert_eq!(
            (state.status.as_str(), state.pid),
            ("running", Some(pid)),
            "{kind:?}"
        );
        let listed = pod.runtime.list().await.unwrap();
        assert!(
            listed.iter().any(|c| c.id == "sleeper"),
            "{kind:?}: {listed:?}"
        );

        // Memory of the helper processes, for the report.
        if let Some(monitor) = ppid(pid) {
            eprintln!(
                "{kind:?}: monitor pid {monitor} VmRSS {:?} KiB; pause pid {} VmRSS {:?} KiB",
                rss_kib(monitor),
                pod.infra,
                rss_kib(pod.infra)
            );
        }
        pod.runtime.kill("sleeper", libc::SIGKILL).await.unwrap();
        let exit = wait_exit(&pod.exit_file("sleeper")).await;
        assert_eq!((exit.exit_code, exit.signal), (137, Some(9)), "{kind:?}");
        // Killing a stopped container is fine.
        pod.runtime.kill("sleeper", libc::SIGTERM).await.unwrap();
    }
}

#[tokio::test]
async fn containers_share_the_pod_namespaces_but_not_processes() {
    for kind in RUNTIMES {
        let mut pod = pod(kind, false).await;
        let infra_net = std::fs::read_link(sandbox::ns_path(pod.infra, "net")).unwrap();
        let infra_ipc = std::fs::read_link(sandbox::ns_path(pod.infra, "ipc")).unwrap();
        let script = "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; ps -o pid,comm; echo done";
        for id in ["a", "b"] {
            let config = pod.config(id, script);
            assert_eq!(pod.run(id, &config).await.exit_code, 0, "{kind:?}");
            let lines: Vec<String> = pod.log_entries(id).into_iter().map(|e| e.2).collect();
            assert_eq!(lines[0], "pod-host", "{kind:?}");
            assert_eq!(lines[1], infra_net.to_str().unwrap(), "{kind:?}");
            assert_eq!(lines[2], infra_ipc.to_str().unwrap(), "{kind:?}");
            // ps: header, the shell as PID 1 and ps itself; nothing from the host or the other container.
            let ps: Vec<&String> = lines[3..lines.len() - 1].iter().collect();
            assert_eq!(ps.len(), 3, "{kind:?}: {ps:?}");
            assert!(ps[1].trim().starts_with("1 "), "{kind:?}: {ps:?}");
        }
    }
}

#[tokio::test]
async fn shared_pid_namespace_has_pause_as_pid_1() {
    for kind in RUNTIMES {
        let mut pod = pod(kind, true).await;
        let mut config = pod.config("a", "ps -o pid,comm");
        config.pidns = Some(sandbox::ns_path(pod.infra, "pid"));
        assert_eq!(pod.run("a", &config).await.exit_code, 0, "{kind:?}");
        let lines: Vec<String> = pod.log_entries("a").into_iter().map(|e| e.2).collect();
        let pid1 = lines.iter().find(|l| l.trim().starts_with("1 ")).cloned();
        assert_eq!(
            pid1.map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string()),
            Some("pause".to_string()),
            "{kind:?}: {lines:?}"
        );
    }
}

#[tokio::test]
async fn memory_limits_land_in_container_and_pod_cgroups() {
    for kind in RUNTIMES {
        let pod_limit = Resources {
            memory_limit: Some(256 << 20),
            ..Default::default()
        };
        let mut pod = pod_with(kind, false, &pod_limit, None).await;
        assert_eq!(
            cgroup::memory_limit(&pod.cgroup),
            Some(256 << 20),
            "{kind:?}"
        );
        let mut config = pod.config("limited", "sleep 1000");
        config.resources.memory_limit = Some(64 << 20);
        config.resources.pids_limit = Some(100);
        pod.create("limited", &config).await.unwrap();
        assert_eq!(
            cgroup::memory_limit(&config.cgroups_path),
            Some(64 << 20),
            "{kind:?}"
        );
        assert!(!cgroup::oom_killed(&config.cgroups_path));
        pod.runtime.delete("limited", true).await.unwrap();
        assert_eq!(cgroup::memory_limit(&config.cgroups_path), None, "{kind:?}");
    }
}

#[tokio::test]
async fn logs_rotate_through_a_rename_chain() {
    for kind in RUNTIMES {
        let mut pod = pod_with(kind, false, &Resources::default(), Some((2000, 3))).await;
        let config = pod.config("chatty", "seq 1 400");
        assert_eq!(pod.run("chatty", &config).await.exit_code, 0, "{kind:?}");
        let log = pod.log("chatty");
        let rotated = |n: u32| std::path::PathBuf::from(format!("{}.{n}", log.display()));
        for path in [log.clone(), rotated(1), rotated(2)] {
            let len = std::fs::metadata(&path).unwrap().len();
            assert!(
                len > 0 && len <= 2000,
                "{kind:?}: {} is {len} bytes",
                path.display()
            );
        }
        assert!(!rotated(3).exists(), "{kind:?}");
        let newest = pod.log_entries("chatty");
        assert_eq!(newest.last().unwrap().2, "400", "{kind:?}");
        let older = read_log_entries(&rotated(1));
        let first_new: u32 = newest[0].2.parse().unwrap();
        let last_old: u32 = older.last().unwrap().2.parse().unwrap();
        assert_eq!(last_old + 1, first_new, "{kind:?}");
    }
}

#[tokio::test]
async fn create_failure_reports_the_runtime_reason() {
    for kind in RUNTIMES {
        let mut pod = pod(kind, false).await;
        let mut config = pod.config("broken", "");
        config.args = vec!["/no-such-command".into()];
        let err = pod.create("broken", &config).await.unwrap_err();
        match &err {
            OciError::Create { message, .. } => {
                assert!(message.contains("no-such-command"), "{kind:?}: {message}")
            }
            other => panic!("{kind:?}: expected a create error, got {other:?}"),
        }
        eprintln!("{kind:?} create error: {err}");
        pod.runtime.delete("broken", true).await.unwrap();
        assert!(pod.runtime.state("broken").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn teardown_leaves_no_process_cgroup_or_state() {
    for kind in RUNTIMES {
        let mut pod = pod(kind, true).await;
        let config = pod.config("c", "exec sleep 1000");
        let pid = pod.create("c", &config).await.unwrap();
        pod.runtime.start("c").await.unwrap();
        let monitor = ppid(pid).unwrap();
        let infra = pod.infra;
        let infra_start = sandbox::start_time(infra);
        assert!(sandbox::is_alive(infra, infra_start));

        pod.runtime.delete("c", true).await.unwrap();
        pod.runtime.delete("c", true).await.unwrap(); // idempotent
        assert!(pod.runtime.state("c").await.unwrap().is_none(), "{kind:?}");
        assert!(!pod.runtime.state_root().join("c").exists(), "{kind:?}");
        assert_eq!(wait_exit(&pod.exit_file("c")).await.exit_code, 137);
        wait_until("container gone", || !sandbox::is_alive(pid, None)).await;
        wait_until("monitor gone", || !sandbox::is_alive(monitor, None)).await;

        sandbox::stop_infra(infra).unwrap();
        sandbox::stop_infra(infra).unwrap(); // idempotent
        assert!(!sandbox::is_alive(infra, infra_start), "{kind:?}");
        pod.infra = 0;
        cgroup::remove_pod_cgroup(&pod.top_cgroup).unwrap();
        cgroup::remove_pod_cgroup(&pod.top_cgroup).unwrap(); // idempotent
        assert!(
            cgroup::existing_dirs(&pod.top_cgroup).is_empty(),
            "{kind:?}"
        );
        assert!(pod.runtime.list().await.unwrap().is_empty(), "{kind:?}");
    }
}
