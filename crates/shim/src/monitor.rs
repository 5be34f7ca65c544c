//! `peapod-shim monitor`: one per container, like conmon. It runs the OCI runtime's `create`
//! with pipes as the container's stdout/stderr (and stdin, for `stdin: true`), or with a
//! terminal whose master the runtime hands over on a console socket (`tty: true`), reports
//! the container's pid (or the runtime's error), then outlives whoever spawned it: it copies
//! the output into the CRI log file and to attached clients ([`crate::attach`]), holds the
//! container's stdin open and feeds it what attached clients send, becomes the container
//! init's parent (child subreaper) to learn its exit status, and writes that status
//! atomically to the exit file. `start`, `kill` and `delete` are the agent's business.

use std::ffi::CString;
use std::fs;
use std::os::fd::RawFd;

use crate::attach::{self, Client, ConsoleSocket, Listener};
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
/// Input from attached clients waiting for the container to read it; past this, clients are
/// not read from until it drains (back-pressure rather than unbounded memory).
const MAX_PENDING_STDIN: usize = 64 * 1024;

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
    /// Hold the container's stdin open for attach clients (`stdin: true`).
    stdin: bool,
    /// Close stdin once the first attach session that used it ends (`stdinOnce: true`).
    stdin_once: bool,
    /// Give the container a terminal (`tty: true`).
    tty: bool,
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
        stdin: false,
        stdin_once: false,
        tty: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let flag = match arg.as_str() {
            "--private-mountns" => &mut parsed.private_mountns,
            "--stdin" => &mut parsed.stdin,
            "--stdin-once" => &mut parsed.stdin_once,
            "--tty" => &mut parsed.tty,
            _ => {
                let value = it
                    .next()
                    .ok_or_else(|| format!("{arg} needs a value"))?
                    .clone();
                set_value(&mut parsed, arg, value)?;
                continue;
            }
        };
        *flag = true;
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

fn set_value(parsed: &mut MonitorArgs, arg: &str, value: String) -> Result<(), String> {
    match arg {
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
    Ok(())
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
    /// The terminal's master side (`--tty`): the container's output, and its input.
    console: Option<RawFd>,
    /// The write end of the container's stdin pipe (`--stdin` without `--tty`).
    stdin: Option<RawFd>,
    listener: Listener,
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
    // Listening before the container exists, so the agent can attach as soon as it starts it.
    let listener = Listener::bind(&args.bundle)?;
    let console_socket = if args.tty {
        Some(ConsoleSocket::new()?)
    } else {
        None
    };

    let runtime_log = format!("{}/runtime.log", args.bundle);
    let runtime_log_start = fs::metadata(&runtime_log).map(|m| m.len()).unwrap_or(0);
    let pid_file = format!("{}/pid", args.bundle);
    let _ = fs::remove_file(&pid_file);
    let mut argv_str: Vec<&str> = vec![
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
    ];
    if let Some(console) = &console_socket {
        argv_str.extend(["--console-socket", console.path.as_str()]);
    }
    argv_str.push(&args.id);
    let argv: Vec<CString> = argv_str
        .iter()
        .map(|s| sys::cstring(s))
        .collect::<Result<_, _>>()?;

    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    // A terminal carries its own input; otherwise stdin is a pipe we keep the write end of.
    let stdin_pipe = if args.stdin && !args.tty {
        Some(pipe()?)
    } else {
        None
    };
    // SAFETY: single-threaded process; the child only makes syscalls and execs.
    let runtime_pid = sys::check(unsafe { libc::fork() }, "fork")?;
    if runtime_pid == 0 {
        exec_runtime(
            &argv,
            stdin_pipe.map(|(r, _)| r),
            stdout_w,
            stderr_w,
            args.private_mountns,
        );
    }
    // SAFETY: closing our copies of the child's ends, so EOF comes when the container's go.
    unsafe {
        libc::close(stdout_w);
        libc::close(stderr_w);
        if let Some((r, _)) = stdin_pipe {
            libc::close(r);
        }
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
        listener.close();
        return Err(reason);
    }
    let pid = fs::read_to_string(&pid_file)
        .map_err(|e| format!("read pid file {pid_file}: {e}"))?
        .trim()
        .parse()
        .map_err(|_| format!("bad pid in {pid_file}"))?;
    let console = match &console_socket {
        Some(socket) => Some(socket.receive_master()?),
        None => None,
    };
    drop(console_socket);
    let stdin = match (console, args.stdin) {
        // The same terminal, written through its own descriptor so input and output close
        // independently.
        // SAFETY: duplicating a descriptor we own.
        (Some(master), true) => Some(sys::check(
            unsafe { libc::fcntl(master, libc::F_DUPFD_CLOEXEC, 3) },
            "dup console",
        )?),
        _ => stdin_pipe.map(|(_, w)| w),
    };
    for fd in console.iter().chain(stdin.iter()) {
        set_nonblocking(*fd);
    }
    Ok(Created {
        pid,
        stdout: stdout_r,
        stderr: stderr_r,
        console,
        stdin,
        listener,
        log,
        sigchld,
    })
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// In the forked child: wire stdio, optionally hide the hybrid cgroup2 mount, exec the
/// runtime. Failures go to stderr, which is the pipe the parent reads as a fallback reason.
fn exec_runtime(
    argv: &[CString],
    stdin_r: Option<RawFd>,
    stdout_w: RawFd,
    stderr_w: RawFd,
    private_mountns: bool,
) -> ! {
    // SAFETY: post-fork child of a single-threaded process; syscalls then exec or _exit.
    unsafe {
        match stdin_r {
            Some(fd) => libc::dup2(fd, 0),
            None => libc::dup2(libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY), 0),
        };
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
                // Slave, not private: mounts the host makes later still reach containers
                // (mountPropagation: HostToContainer); what is unmounted here stays here.
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ),
            "make / rslave",
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
    /// The attach packet kind its output goes out as.
    kind: u8,
}

impl Stream {
    fn new(fd: RawFd, name: &'static str, kind: u8) -> Stream {
        Stream {
            fd,
            open: true,
            splitter: LineSplitter::new(name),
            kind,
        }
    }
}

/// The container's stdin as the monitor holds it: what clients sent that the container has
/// not read yet, and whether `stdinOnce` still allows input.
struct Stdin {
    fd: Option<RawFd>,
    pending: Vec<u8>,
    /// A terminal's input is never closed (that would hang up its output too); `stdinOnce`
    /// applies to piped stdin only, as containerd does.
    tty: bool,
    once: bool,
}

impl Stdin {
    fn close(&mut self) {
        if let Some(fd) = self.fd.take() {
            // SAFETY: closing our own descriptor once; the container then reads EOF.
            unsafe { libc::close(fd) };
        }
        self.pending.clear();
    }

    /// An attach session that used stdin ended (it closed its stdin, or went away).
    fn session_ended(&mut self, client: &mut Client) {
        if client.stdin && self.once && !self.tty {
            self.close();
        }
        client.stdin = false;
    }

    /// Writes what the container will take now; EPIPE (nobody reads it any more) closes it.
    fn flush(&mut self) {
        let Some(fd) = self.fd else { return };
        while !self.pending.is_empty() {
            // SAFETY: writing from a live buffer to our own non-blocking descriptor.
            let n = unsafe { libc::write(fd, self.pending.as_ptr().cast(), self.pending.len()) };
            if n > 0 {
                self.pending.drain(..n as usize);
                continue;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) => return,
                Some(libc::EINTR) => continue,
                _ => return self.close(),
            }
        }
    }
}

/// What a polled descriptor is.
#[derive(Clone, Copy)]
enum Polled {
    Stream(usize),
    Signal,
    Listener,
    Stdin,
    Client(RawFd),
}

/// Copies the container's output to the log and to attached clients, and their input to the
/// container, until the container's init has been reaped and its output is drained; then
/// records the exit and ends every attach session. Returns the monitor's own exit code.
fn monitor(args: &MonitorArgs, created: Created) -> i32 {
    let Created {
        pid: container_pid,
        stdout,
        stderr,
        console,
        stdin,
        listener,
        mut log,
        sigchld,
    } = created;
    // SAFETY: signalfd over the set blocked in `create`.
    let sfd = unsafe { libc::signalfd(-1, &sigchld, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    let mut streams = vec![
        Stream::new(stdout, "stdout", attach::OUT_STDOUT),
        Stream::new(stderr, "stderr", attach::OUT_STDERR),
    ];
    if let Some(master) = console {
        // CRI logs a terminal's output as stdout.
        streams.push(Stream::new(master, "stdout", attach::OUT_STDOUT));
    }
    let mut input = Stdin {
        fd: stdin,
        pending: Vec::new(),
        tty: console.is_some(),
        once: args.stdin_once,
    };
    let mut clients: Vec<Client> = Vec::new();
    let mut buf = vec![0u8; attach::MAX_PACKET];
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
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(8 + clients.len());
        let mut what: Vec<Polled> = Vec::with_capacity(8 + clients.len());
        let mut watch = |fd: RawFd, events: libc::c_short, p: Polled| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            what.push(p);
        };
        for (i, s) in streams.iter().enumerate().filter(|(_, s)| s.open) {
            watch(s.fd, libc::POLLIN, Polled::Stream(i));
        }
        if exit.is_none() && sfd >= 0 {
            watch(sfd, libc::POLLIN, Polled::Signal);
        }
        watch(listener.fd(), libc::POLLIN, Polled::Listener);
        if let (Some(fd), false) = (input.fd, input.pending.is_empty()) {
            watch(fd, libc::POLLOUT, Polled::Stdin);
        }
        let take_input = input.pending.len() < MAX_PENDING_STDIN;
        for c in &clients {
            // Not reading a client still notices it hanging up.
            let events = if take_input { libc::POLLIN } else { 0 };
            watch(c.fd, events, Polled::Client(c.fd));
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
        let mut accept_waiting = false;
        for (pfd, polled) in fds.iter().zip(what) {
            if pfd.revents == 0 {
                continue;
            }
            match polled {
                Polled::Signal => {
                    drain_signalfd(sfd);
                    reap(container_pid, &mut exit, &mut drain_deadline);
                }
                // Accepted below, once this round's events are handled: a new client may
                // get the descriptor number of one that left during this round.
                Polled::Listener => accept_waiting = true,
                Polled::Stdin => input.flush(),
                Polled::Stream(i) => {
                    let stream = &mut streams[i];
                    // SAFETY: reading our own descriptor into a live buffer, leaving room for
                    // the packet's kind byte.
                    let n = unsafe {
                        libc::read(stream.fd, buf.as_mut_ptr().cast(), attach::MAX_PACKET - 1)
                    };
                    if n > 0 {
                        let data = &buf[..n as usize];
                        stream.splitter.feed(data, &mut log);
                        broadcast(&mut clients, &mut input, stream.kind, data);
                    } else if n == 0
                        || !matches!(
                            std::io::Error::last_os_error().raw_os_error(),
                            Some(libc::EINTR) | Some(libc::EAGAIN)
                        )
                    {
                        // EOF on a pipe; EIO on a terminal whose last slave holder is gone.
                        stream.open = false;
                        stream.splitter.flush_partial(&mut log);
                        // SAFETY: closing our own fd once.
                        unsafe { libc::close(stream.fd) };
                    }
                }
                Polled::Client(fd) => {
                    let Some(pos) = clients.iter().position(|c| c.fd == fd) else {
                        continue;
                    };
                    let gone = if pfd.revents & libc::POLLIN != 0 {
                        match clients[pos].recv(&mut buf) {
                            Some(n) => {
                                from_client(&mut clients[pos], &buf[..n], &mut input, console);
                                false
                            }
                            None => true,
                        }
                    } else {
                        // POLLHUP / POLLERR without data.
                        true
                    };
                    if gone {
                        let mut c = clients.swap_remove(pos);
                        input.session_ended(&mut c);
                        c.close();
                    }
                }
            }
        }
        if accept_waiting {
            while let Some(c) = listener.accept() {
                clients.push(c);
            }
        }
        input.flush();
    }
    for s in streams.iter_mut() {
        s.splitter.flush_partial(&mut log);
    }
    let (exit_code, signal) = exit.unwrap_or((-1, None));
    let code = match write_exit_file(&args.exit_file, exit_code, signal) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    // Sessions end after the exit is on disk, so a client seeing the end can read it.
    for c in clients {
        c.close();
    }
    listener.close();
    input.close();
    code
}

/// Sends output to every client; one that cannot take it is dropped.
fn broadcast(clients: &mut Vec<Client>, input: &mut Stdin, kind: u8, data: &[u8]) {
    let mut i = 0;
    while i < clients.len() {
        if clients[i].send(kind, data) {
            i += 1;
        } else {
            let mut c = clients.swap_remove(i);
            input.session_ended(&mut c);
            c.close();
        }
    }
}

/// One packet from a client.
fn from_client(client: &mut Client, packet: &[u8], input: &mut Stdin, console: Option<RawFd>) {
    let Some((&kind, payload)) = packet.split_first() else {
        return;
    };
    match kind {
        attach::IN_STDIN if input.fd.is_some() => input.pending.extend_from_slice(payload),
        attach::IN_HELLO_STDIN => client.stdin = true,
        attach::IN_CLOSE_STDIN => input.session_ended(client),
        attach::IN_RESIZE => {
            if let (Some(master), Some((w, h))) = (console, attach::resize_of(payload)) {
                attach::resize(master, w, h);
            }
        }
        _ => {}
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
