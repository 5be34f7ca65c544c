//! `peapod-shim monitor`: one per container, like conmon. It runs the OCI runtime's `create`
//! with pipes as the container's stdout/stderr, reports the container's pid (or the
//! runtime's error), then outlives whoever spawned it: it copies the pipes into the CRI log
//! file, becomes the container init's parent (child subreaper) to learn its exit status,
//! and writes that status atomically to the exit file. `start`, `kill` and `delete` are the
//! agent's business.

use std::ffi::CString;
use std::fs;
use std::os::fd::RawFd;

use crate::cri_log::{CriLog, LineSplitter};
use crate::sys;

/// The cgroup v2 mount of a v1/v2 hybrid host; crun refuses hybrid hosts, so with
/// `--private-mountns` it runs where this mount is gone and sees plain v1.
const HYBRID_UNIFIED_MOUNT: &std::ffi::CStr = c"/sys/fs/cgroup/unified";
/// How long to keep reading the pipes after the container's init exited, for output that
/// is still in flight or held by processes that have not died yet.
const DRAIN_MS: i64 = 1000;
/// Idle time after which text without a newline is written as a partial entry.
const PARTIAL_FLUSH_MS: i32 = 1000;

struct MonitorArgs {
    runtime: String,
    runtime_root: String,
    private_mountns: bool,
    id: String,
    bundle: String,
    log: String,
    exit_file: String,
    log_max_bytes: u64,
    log_max_files: u32,
}

fn parse(args: &[String]) -> Result<MonitorArgs, String> {
    let mut parsed = MonitorArgs {
        runtime: String::new(),
        runtime_root: String::new(),
        private_mountns: false,
        id: String::new(),
        bundle: String::new(),
        log: String::new(),
        exit_file: String::new(),
        log_max_bytes: 10 * 1024 * 1024,
        log_max_files: 5,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--private-mountns" {
            parsed.private_mountns = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{arg} needs a value"))?
            .clone();
        match arg.as_str() {
            "--runtime" => parsed.runtime = value,
            "--runtime-root" => parsed.runtime_root = value,
            "--id" => parsed.id = value,
            "--bundle" => parsed.bundle = value,
            "--log" => parsed.log = value,
            "--exit-file" => parsed.exit_file = value,
            "--log-max-bytes" => {
                parsed.log_max_bytes = value
                    .parse()
                    .map_err(|_| format!("bad --log-max-bytes {value:?}"))?
            }
            "--log-max-files" => {
                parsed.log_max_files = value
                    .parse()
                    .map_err(|_| format!("bad --log-max-files {value:?}"))?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    for (name, value) in [
        ("--runtime", &parsed.runtime),
        ("--runtime-root", &parsed.runtime_root),
        ("--id", &parsed.id),
        ("--bundle", &parsed.bundle),
        ("--log", &parsed.log),
        ("--exit-file", &parsed.exit_file),
    ] {
        if value.is_empty() {
            return Err(format!("{name} is required"));
        }
    }
    Ok(parsed)
}

pub fn run(args: &[String]) -> i32 {
    match parse(args).and_then(|args| create(&args).map(|created| (args, created))) {
        Ok((args, created)) => {
            sys::report(&format!("created {}\n", created.pid));
            sys::detach_stdio();
            sys::trim_resident_text();
            monitor(&args, created)
        }
        Err(message) => {
            sys::report(&format!("error {}\n", one_line(&message)));
            1
        }
    }
}

struct Created {
    pid: libc::pid_t,
    stdout: RawFd,
    stderr: RawFd,
    log: CriLog,
    sigchld: libc::sigset_t,
}

fn pipe() -> Result<(RawFd, RawFd), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    sys::check(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        "pipe",
    )?;
    Ok((fds[0], fds[1]))
}

fn create(args: &MonitorArgs) -> Result<Created, String> {
    sys::setsid();
    // SAFETY: plain process-attribute syscalls.
    unsafe {
        // Orphans (the container's init once `create` exits) are reparented to us, so we
        // can wait for them.
        sys::check(
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0),
            "PR_SET_CHILD_SUBREAPER",
        )?;
        libc::chdir(c"/".as_ptr());
    }
    // Blocked before any child exists, so no SIGCHLD can be lost; read through a signalfd.
    let sigchld = sys::block_signals(&[libc::SIGCHLD]);
    let log = CriLog::open(&args.log, args.log_max_bytes, args.log_max_files)?;

    let runtime_log = format!("{}/runtime.log", args.bundle);
    let runtime_log_start = fs::metadata(&runtime_log).map(|m| m.len()).unwrap_or(0);
    let pid_file = format!("{}/pid", args.bundle);
    let _ = fs::remove_file(&pid_file);
    let argv: Vec<CString> = [
        args.runtime.as_str(),
        "--root",
        &args.runtime_root,
        "--log",
        &runtime_log,
        "--log-format",
        "json",
        "create",
        "--bundle",
        &args.bundle,
        "--pid-file",
        &pid_file,
        &args.id,
    ]
    .iter()
    .map(|s| sys::cstring(s))
    .collect::<Result<_, _>>()?;

    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    // SAFETY: single-threaded process; the child only makes syscalls and execs.
    let runtime_pid = sys::check(unsafe { libc::fork() }, "fork")?;
    if runtime_pid == 0 {
        exec_runtime(&argv, stdout_w, stderr_w, args.private_mountns);
    }
    // SAFETY: closing our copies of the write ends, so EOF comes when the container's go.
    unsafe {
        libc::close(stdout_w);
        libc::close(stderr_w);
    }
    let status = wait_for(runtime_pid)?;
    if status != 0 {
        let reason = runtime_log_error(&runtime_log, runtime_log_start)
            .or_else(|| read_available(stderr_r).filter(|s| !s.is_empty()))
            .or_else(|| read_available(stdout_r).filter(|s| !s.is_empty()))
            .unwrap_or_else(|| {
                let (code, signal) = sys::decode_wait_status(status);
                format!(
                    "{} create exited with {code} (signal {signal:?})",
                    args.runtime
                )
            });
        return Err(reason);
    }
    let pid = fs::read_to_string(&pid_file)
        .map_err(|e| format!("read pid file {pid_file}: {e}"))?
        .trim()
        .parse()
        .map_err(|_| format!("bad pid in {pid_file}"))?;
    Ok(Created {
        pid,
        stdout: stdout_r,
        stderr: stderr_r,
        log,
        sigchld,
    })
}

/// In the forked child: wire stdio, optionally hide the hybrid cgroup2 mount, exec the
/// runtime. Failures go to stderr, which is the pipe the parent reads as a fallback reason.
fn exec_runtime(argv: &[CString], stdout_w: RawFd, stderr_w: RawFd, private_mountns: bool) -> ! {
    // SAFETY: post-fork child of a single-threaded process; syscalls then exec or _exit.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        libc::dup2(null, 0);
        libc::dup2(stdout_w, 1);
        libc::dup2(stderr_w, 2);
        sys::reset_signals_for_exec();
        if private_mountns {
            if let Err(e) = private_mount_namespace() {
                let _ = sys::write_all(2, format!("{e}\n").as_bytes());
                libc::_exit(127);
            }
        }
        let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        libc::execv(ptrs[0], ptrs.as_ptr());
        let _ = sys::write_all(
            2,
            format!(
                "exec {}: {}\n",
                argv[0].to_string_lossy(),
                std::io::Error::last_os_error()
            )
            .as_bytes(),
        );
        libc::_exit(127);
    }
}

fn private_mount_namespace() -> Result<(), String> {
    // SAFETY: mount-namespace syscalls on literals.
    unsafe {
        sys::check(libc::unshare(libc::CLONE_NEWNS), "unshare mount namespace")?;
        sys::check(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            "make / rprivate",
        )?;
        // EINVAL: not a mount point here (not a hybrid host), nothing to hide.
        if libc::umount2(HYBRID_UNIFIED_MOUNT.as_ptr(), libc::MNT_DETACH) == -1 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINVAL) && err.raw_os_error() != Some(libc::ENOENT)
            {
                return Err(format!("umount {HYBRID_UNIFIED_MOUNT:?}: {err}"));
            }
        }
    }
    Ok(())
}

fn wait_for(pid: libc::pid_t) -> Result<libc::c_int, String> {
    let mut status = 0;
    loop {
        // SAFETY: blocking wait for our own child.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            return Ok(status);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait for runtime: {err}"));
        }
    }
}

/// The `msg` of the last `"level":"error"` entry the runtime appended to its JSON log.
fn runtime_log_error(path: &str, start: u64) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    let appended = bytes.get(start as usize..).unwrap_or(&bytes);
    String::from_utf8_lossy(appended)
        .lines()
        .filter(|line| {
            line.contains("\"level\":\"error\"") || line.contains("\"level\": \"error\"")
        })
        .filter_map(|line| json_string_field(line, "msg"))
        .next_back()
}

/// Extracts a string field from a flat one-line JSON object, without a JSON library.
fn json_string_field(line: &str, field: &str) -> Option<String> {
    let key = format!("\"{field}\"");
    let after_key = &line[line.find(&key)? + key.len()..];
    let after_colon = after_key.trim_start().strip_prefix(':')?.trim_start();
    let mut chars = after_colon.strip_prefix('"')?.chars();
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?).unwrap_or('?'));
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// Whatever a finished runtime left in a pipe, without blocking.
fn read_available(fd: RawFd) -> Option<String> {
    // SAFETY: fcntl and read on our own pipe into a local buffer.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        let mut buf = vec![0u8; 16 * 1024];
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        if n <= 0 {
            return None;
        }
        buf.truncate(n as usize);
        Some(String::from_utf8_lossy(&buf).trim().to_string())
    }
}

fn one_line(message: &str) -> String {
    message.trim().replace(['\n', '\r'], " ")
}

struct Stream {
    fd: RawFd,
    open: bool,
    splitter: LineSplitter,
}

/// Copies the pipes to the log until the container's init has been reaped and the pipes are
/// drained, then records the exit. Returns the monitor's own exit code.
fn monitor(args: &MonitorArgs, created: Created) -> i32 {
    let Created {
        pid: container_pid,
        stdout,
        stderr,
        mut log,
        sigchld,
    } = created;
    // SAFETY: signalfd over the set blocked in `create`.
    let sfd = unsafe { libc::signalfd(-1, &sigchld, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    let mut streams = [
        Stream {
            fd: stdout,
            open: true,
            splitter: LineSplitter::new("stdout"),
        },
        Stream {
            fd: stderr,
            open: true,
            splitter: LineSplitter::new("stderr"),
        },
    ];
    let mut buf = vec![0u8; 64 * 1024];
    let mut exit: Option<(i32, Option<i32>)> = None;
    let mut drain_deadline = 0i64;
    // A child may have exited before the signalfd existed; its SIGCHLD is pending and
    // shows up on the first poll, but reaping once here costs nothing.
    reap(container_pid, &mut exit, &mut drain_deadline);
    loop {
        let all_closed = streams.iter().all(|s| !s.open);
        if exit.is_some() && (all_closed || sys::now_monotonic_ms() >= drain_deadline) {
            break;
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(3);
        for s in streams.iter().filter(|s| s.open) {
            fds.push(libc::pollfd {
                fd: s.fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if exit.is_none() && sfd >= 0 {
            fds.push(libc::pollfd {
                fd: sfd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout = if exit.is_some() {
            (drain_deadline - sys::now_monotonic_ms()).clamp(0, DRAIN_MS) as i32
        } else if sfd < 0 {
            // No signalfd: fall back to polling for the exit.
            200
        } else if streams.iter().any(|s| s.splitter.has_pending()) {
            PARTIAL_FLUSH_MS
        } else {
            -1
        };
        // SAFETY: fds is a live array of pollfd.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if ready < 0 {
            continue; // EINTR
        }
        if ready == 0 {
            for s in streams.iter_mut() {
                s.splitter.flush_partial(&mut log);
            }
            if sfd < 0 {
                reap(container_pid, &mut exit, &mut drain_deadline);
            }
            continue;
        }
        for pfd in &fds {
            if pfd.revents == 0 {
                continue;
            }
            if pfd.fd == sfd {
                drain_signalfd(sfd);
                reap(container_pid, &mut exit, &mut drain_deadline);
                continue;
            }
            let Some(stream) = streams.iter_mut().find(|s| s.fd == pfd.fd) else {
                continue;
            };
            // SAFETY: reading our own pipe into a live buffer.
            let n = unsafe { libc::read(stream.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                stream.splitter.feed(&buf[..n as usize], &mut log);
            } else if n == 0
                || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            {
                stream.open = false;
                stream.splitter.flush_partial(&mut log);
                // SAFETY: closing our own fd once.
                unsafe { libc::close(stream.fd) };
            }
        }
    }
    for s in streams.iter_mut() {
        s.splitter.flush_partial(&mut log);
    }
    let (exit_code, signal) = exit.unwrap_or((-1, None));
    match write_exit_file(&args.exit_file, exit_code, signal) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn drain_signalfd(sfd: RawFd) {
    let mut info = [0u8; 128];
    // SAFETY: reading signalfd_siginfo records into a local buffer until EAGAIN.
    while unsafe { libc::read(sfd, info.as_mut_ptr().cast(), info.len()) } > 0 {}
}

/// Reaps every exited child (we are a subreaper, so stray orphans end up here too) and
/// records the container init's status.
fn reap(container_pid: libc::pid_t, exit: &mut Option<(i32, Option<i32>)>, deadline: &mut i64) {
    loop {
        let mut status = 0;
        // SAFETY: non-blocking wait for any child.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        if pid == container_pid {
            *exit = Some(sys::decode_wait_status(status));
            *deadline = sys::now_monotonic_ms() + DRAIN_MS;
        }
    }
}

fn write_exit_file(path: &str, exit_code: i32, signal: Option<i32>) -> std::io::Result<()> {
    use std::io::Write;
    let (secs, nanos) = sys::now_realtime();
    let signal = signal.map_or_else(|| "null".to_string(), |s| s.to_string());
    let line = format!(
        "{{\"exitCode\":{exit_code},\"signal\":{signal},\"finishedAt\":\"{}\"}}\n",
        sys::rfc3339_nano(secs, nanos)
    );
    let tmp = format!("{path}.tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(line.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_runtime_error_messages() {
        let runc = r#"{"level":"error","msg":"runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH","time":"2024-01-01T00:00:00Z"}"#;
        assert_eq!(
            json_string_field(runc, "msg").unwrap(),
            "runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"
        );
        let crun = r#"{"msg": "executable file `nope` not found in $PATH: No such file or directory", "level": "error", "time": "x"}"#;
        assert_eq!(
            json_string_field(crun, "msg").unwrap(),
            "executable file `nope` not found in $PATH: No such file or directory"
        );
        assert_eq!(
            json_string_field(r#"{"msg":"a\u0041"}"#, "msg").unwrap(),
            "aA"
        );
    }

    #[test]
    fn parses_arguments_with_defaults() {
        let args: Vec<String> = "--runtime /usr/bin/crun --runtime-root /r --private-mountns --id c1 --bundle /b --log /l --exit-file /e"
            .split(' ')
            .map(String::from)
            .collect();
        let parsed = parse(&args).unwrap();
        assert!(parsed.private_mountns);
        assert_eq!(parsed.log_max_bytes, 10 * 1024 * 1024);
        assert_eq!(parsed.log_max_files, 5);
        assert!(parse(&args[..4]).is_err());
    }
}
