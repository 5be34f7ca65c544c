//! Thin, checked wrappers over the few system calls the shim makes, and the stdio and
//! signal plumbing both subcommands share.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

/// Turns a `-1` return into the thread's `errno`, with a short note of what was attempted.
pub fn check(ret: libc::c_int, what: &str) -> Result<libc::c_int, String> {
    if ret == -1 {
        Err(format!("{what}: {}", io::Error::last_os_error()))
    } else {
        Ok(ret)
    }
}

pub fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

/// Writes all of `bytes` to `fd`, retrying on EINTR and short writes.
pub fn write_all(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe a live slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// Writes the one status line the spawner waits for. Errors are ignored: if the spawner is
/// gone there is nobody to tell.
pub fn report(line: &str) {
    let _ = write_all(1, line.as_bytes());
}

/// Points fds 0, 1 and 2 at /dev/null, which closes the status pipe the spawner reads (it
/// then sees EOF) and keeps later stray writes harmless.
pub fn detach_stdio() {
    // SAFETY: plain fd syscalls on a path literal.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
            if null > 2 {
                libc::close(null);
            }
        }
    }
}

/// Blocks `signals` for the calling thread and returns the resulting set, for sigwaitinfo or
/// a signalfd. Blocked signals are queued instead of acted upon, which also makes SIGTERM
/// deliverable to a pid-namespace init (the kernel drops default-action signals to it).
pub fn block_signals(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &sig in signals {
            libc::sigaddset(&mut set, sig);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Undoes what this process changed about signals before exec'ing another program: an empty
/// mask, and SIGPIPE back to its default (Rust's runtime ignores it, and an ignored
/// disposition survives exec).
pub fn reset_signals_for_exec() {
    // SAFETY: async-signal-safe calls on locally initialised data.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Names the process as `ps` and /proc/PID/comm show it (at most 15 bytes).
pub fn set_process_name(name: &std::ffi::CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

pub fn setsid() {
    // SAFETY: no arguments; fails only when already a group leader, which is fine.
    unsafe {
        libc::setsid();
    }
}

/// Decodes a wait status into (exit code, killing signal) with the shell's 128+signal rule.
pub fn decode_wait_status(status: libc::c_int) -> (i32, Option<i32>) {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        (128 + sig, Some(sig))
    } else {
        (libc::WEXITSTATUS(status), None)
    }
}

/// Wall-clock time as (seconds, nanoseconds) since the Unix epoch.
pub fn now_realtime() -> (i64, u32) {
    // SAFETY: clock_gettime fills the timespec.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
        (ts.tv_sec, ts.tv_nsec as u32)
    }
}

/// Monotonic milliseconds, for deadlines.
pub fn now_monotonic_ms() -> i64 {
    // SAFETY: clock_gettime fills the timespec.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
    }
}

/// RFC 3339 UTC time with nanoseconds, trailing zeros trimmed as Go's `time.RFC3339Nano`
/// does (the format kubelet and CRI runtimes write and parse).
pub fn rfc3339_nano(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let day_secs = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        day_secs / 3600,
        (day_secs / 60) % 60,
        day_secs % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Drops this process's page mappings of executable code (the binary's and shared
/// libraries' text). At startup the kernel maps text in 64 KiB "fault-around" chunks, so
/// nearly the whole binary shows up in RSS although a sleeping shim runs a few pages of it;
/// afterwards only the pages actually executed are faulted back in (from the page cache, which
/// still holds them). Only read-only executable file mappings are touched: they are never
/// modified, so dropping them loses nothing (unlike relocated or written data).
pub fn trim_resident_text() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    // Parse everything first: executing parsing code between the madvise calls would fault
    // much of the text straight back in.
    let ranges: Vec<(usize, usize)> = maps
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (range, perms) = (fields.next()?, fields.next()?);
            let path = fields.nth(3)?;
            if perms != "r-xp" || !path.starts_with('/') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some((
                usize::from_str_radix(start, 16).ok()?,
                usize::from_str_radix(end, 16).ok()?,
            ))
        })
        .collect();
    for &(start, end) in &ranges {
        // SAFETY: the range is a private, unmodified, executable file mapping of this
        // process; MADV_DONTNEED only unmaps its pages, which refault from the file on use.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_nano_like_go() {
        assert_eq!(rfc3339_nano(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(1_700_000_000, 123_000_000),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            rfc3339_nano(951_825_600, 1),
            "2000-02-29T12:00:00.000000001Z"
        );
    }

    #[test]
    fn decodes_signal_deaths_as_128_plus_signal() {
        assert_eq!(decode_wait_status(9), (137, Some(9)));
        assert_eq!(decode_wait_status(3 << 8), (3, None));
    }
}
