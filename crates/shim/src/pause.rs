//! `peapod-shim pause`: the pod's infra process. It holds the pod's network (joined from the
//! pinned netns), UTS and IPC namespaces (PID too with `--share-pid`) so that every app
//! container can join them by `/proc/<pid>/ns/<ns>`, and otherwise sleeps.

use crate::sys;

struct PauseArgs {
    netns: String,
    hostname: String,
    share_pid: bool,
}

fn parse(args: &[String]) -> Result<PauseArgs, String> {
    let mut netns = None;
    let mut hostname = None;
    let mut share_pid = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--netns" => netns = it.next().cloned(),
            "--hostname" => hostname = it.next().cloned(),
            "--share-pid" => share_pid = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(PauseArgs {
        netns: netns.ok_or("--netns PATH is required")?,
        hostname: hostname.ok_or("--hostname NAME is required")?,
        share_pid,
    })
}

pub fn run(args: &[String]) -> i32 {
    sys::setsid();
    let args = match parse(args).and_then(|args| enter_namespaces(&args).map(|()| args)) {
        Ok(args) => args,
        Err(message) => {
            sys::report(&format!("error {}\n", message.replace('\n', " ")));
            return 1;
        }
    };
    if !args.share_pid {
        // SAFETY: getpid cannot fail.
        sys::report(&format!("ready {}\n", unsafe { libc::getpid() }));
        sys::detach_stdio();
        sleep_forever();
    }
    // The new PID namespace applies to children only: fork the process that becomes its PID 1.
    // SAFETY: this process is single-threaded, so the child may keep running Rust code.
    match unsafe { libc::fork() } {
        -1 => {
            sys::report(&format!(
                "error fork: {}\n",
                std::io::Error::last_os_error()
            ));
            1
        }
        0 => {
            sys::detach_stdio();
            sleep_forever()
        }
        child => {
            sys::report(&format!("ready {child}\n"));
            sys::detach_stdio();
            supervise(child)
        }
    }
}

fn enter_namespaces(args: &PauseArgs) -> Result<(), String> {
    let netns = sys::cstring(&args.netns)?;
    // SAFETY: plain syscalls on owned, NUL-terminated strings and an fd we opened.
    unsafe {
        let fd = sys::check(
            libc::open(netns.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC),
            &format!("open netns {}", args.netns),
        )?;
        let joined = sys::check(
            libc::setns(fd, libc::CLONE_NEWNET),
            &format!("setns {}", args.netns),
        );
        libc::close(fd);
        joined?;
        let mut flags = libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
        if args.share_pid {
            flags |= libc::CLONE_NEWPID;
        }
        sys::check(libc::unshare(flags), "unshare")?;
        sys::check(
            libc::sethostname(args.hostname.as_ptr().cast(), args.hostname.len()),
            &format!("sethostname {:?}", args.hostname),
        )?;
    }
    Ok(())
}

/// Sleeps until SIGTERM or SIGINT, reaping any child on SIGCHLD (as PID 1 of a shared pid
/// namespace it inherits every orphan in the pod).
fn sleep_forever() -> ! {
    sys::set_process_name(c"pause");
    let set = sys::block_signals(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT]);
    sys::trim_resident_text();
    loop {
        // SAFETY: waits for one of the blocked signals.
        let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        match sig {
            libc::SIGTERM | libc::SIGINT => std::process::exit(0),
            libc::SIGCHLD => reap_all(),
            _ => {}
        }
    }
}

fn reap_all() {
    let mut status = 0;
    // SAFETY: non-blocking wait for any child.
    while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
}

/// With `--share-pid` the first process stays as the parent of the namespace's PID 1: it
/// forwards SIGTERM/SIGINT and exits with the child's status, so whoever spawned it reaps a
/// clean exit rather than an orphan.
fn supervise(child: libc::pid_t) -> i32 {
    sys::set_process_name(c"pause");
    let set = sys::block_signals(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT]);
    sys::trim_resident_text();
    loop {
        // SAFETY: waits for one of the blocked signals.
        let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        match sig {
            libc::SIGTERM | libc::SIGINT => {
                // SAFETY: signals our own child.
                unsafe { libc::kill(child, libc::SIGTERM) };
            }
            libc::SIGCHLD => {
                let mut status = 0;
                // SAFETY: non-blocking wait for our one child.
                if unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) } == child {
                    return sys::decode_wait_status(status).0;
                }
            }
            _ => {}
        }
    }
}
