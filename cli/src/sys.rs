//! The few OS calls std does not offer, the only `unsafe` in the CLI.
//!
//! Two things need raw libc here:
//! - the stats pipe, whose write end must survive `exec` (std only makes
//!   close-on-exec descriptors) while the read end must not leak into the child;
//! - ignoring the terminal's SIGINT / SIGQUIT while the child runs, so that a
//!   Ctrl-C stops the program, not the report about it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// The stats pipe of `engram run`.
///
/// Invariants: both descriptors are above stdio (>= 3; the write end at 611 or
/// above when the descriptor limit allows), so the child's own
/// stdin/stdout/stderr can never alias them; `read` is close-on-exec; `write`
/// is inherited across `exec`.
pub struct StatsPipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
    /// The pipe's inode: the allocator writes only to a descriptor that is
    /// this pipe.
    pub inode: u64,
}

/// Creates the stats pipe (see [`StatsPipe`] for what holds on return).
pub fn stats_pipe() -> io::Result<StatsPipe> {
    let mut fds: [libc::c_int; 2] = [-1; 2];
    // Both ends start close-on-exec, so no `exec` racing with us on another thread
    // can inherit the read end; the write end is opened up below.
    // SAFETY: `fds` is a valid, writable array of two c_ints, as pipe2(2) requires.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so fds[0] is a fresh descriptor nobody else owns.
    let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above, for fds[1].
    let write = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    let read = above(read, 3)?;
    // The write end goes high: a program opens its own files from the lowest
    // free number up, and one that closed ours would get it back for a file
    // (the allocator also checks the inode before writing).
    let write = above(write, HIGH_FD)?;
    clear_cloexec(&write)?;
    let inode = std::fs::File::from(write.try_clone()?).metadata()?.ino();
    Ok(StatsPipe { read, write, inode })
}

/// Where the pipe's write end goes (or the lowest free number above it): high,
/// and not a number scripts pick by habit (200 is the usual `flock` descriptor).
const HIGH_FD: libc::c_int = 611;

/// Moves `fd` to `min` or above if it is below (for `min` 3: engram started with
/// a closed stdio descriptor, and the child would otherwise read or print through
/// our pipe).
fn above(fd: OwnedFd, min: libc::c_int) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() >= min {
        return Ok(fd);
    }
    // SAFETY: `fd` is open while borrowed; F_DUPFD_CLOEXEC takes the lowest
    // acceptable new descriptor number as its int argument.
    let mut raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if raw < 0 && min > 3 {
        // `min` is past the descriptor limit (a tight `ulimit -n`): anything
        // above stdio will do.
        // SAFETY: as above.
        raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    }
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl succeeded, so `raw` is a fresh descriptor nobody else owns;
    // the original closes when `fd` drops here.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Lets `fd` survive `exec`.
fn clear_cloexec(fd: &OwnedFd) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: `raw` is open for as long as `fd` is borrowed; F_GETFD takes no argument.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is open (as above); F_SETFD takes an int flag set.
    let rc = unsafe { libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

extern "C" fn ignore_signal(_signal: libc::c_int) {}

/// Makes SIGINT and SIGQUIT harmless to engram until it exits.
///
/// The terminal sends them to the whole foreground process group: the child
/// decides what they mean, and engram stays alive to report how it ended. A
/// caught signal (unlike SIG_IGN) returns to its default at `exec`, so the
/// child starts with ordinary dispositions. SA_RESTART keeps the blocking
/// pipe read and `waitpid` going.
///
/// A signal the caller ignores (a background job, `nohup`) stays ignored, for
/// engram and, through `exec`, for the program, as it would be without engram.
pub fn survive_terminal_signals() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGQUIT] {
        catch(signal, ignore_signal)?;
    }
    Ok(())
}

/// Installs `handler` for `signal` with SA_RESTART (the blocking pipe read
/// and `waitpid` go on), unless the caller ignores `signal`: an ignored
/// signal stays ignored.
fn catch(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: sigaction is plain old data; all-zero is a valid (empty) value.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one into `old`, a valid
    // out-parameter owned by this frame.
    if unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if old.sa_sigaction == libc::SIG_IGN {
        return Ok(());
    }
    // SAFETY: as above; filled in below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action.sa_mask` is a valid sigset_t owned by this frame.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is initialised; the handlers given here are
    // async-signal-safe and live for the whole program; a null old-action
    // pointer is allowed.
    if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The program `forward_to_child` passes signals on to; 0 before it runs.
static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward_signal(signal: libc::c_int) {
    let pid = CHILD.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; `pid` is our child, not yet
        // waited for while engram is reading its reports.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Passes SIGTERM and SIGHUP on to the program `pid` instead of dying of
/// them, so that `kill <engram>` (or a closed terminal) ends the program and
/// engram still reports how it ended, with its status. Installed after the
/// program started: it is not affected. A signal the caller ignores stays
/// ignored, as for [`survive_terminal_signals`].
pub fn forward_to_child(pid: u32) -> io::Result<()> {
    CHILD.store(
        i32::try_from(pid).unwrap_or(0),
        std::sync::atomic::Ordering::Relaxed,
    );
    for signal in [libc::SIGTERM, libc::SIGHUP] {
        catch(signal, forward_signal)?;
    }
    Ok(())
}

/// Ends engram by `signal` with its default action (terminate): restores the
/// default disposition, unblocks it and raises it. Returns only if the signal
/// did not end the process (it cannot for SIGINT once defaulted).
pub fn die_of(signal: libc::c_int) {
    // SAFETY: SIG_DFL is a valid disposition for any catchable signal; the
    // set is a local sigset_t; raise sends to this thread.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloexec(fd: &OwnedFd) -> bool {
        // SAFETY: `fd` is open while borrowed; F_GETFD takes no argument.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        assert!(flags >= 0);
        flags & libc::FD_CLOEXEC != 0
    }

    #[test]
    fn pipe_ends_have_the_right_inheritance() {
        let pipe = stats_pipe().unwrap();
        assert!(pipe.read.as_raw_fd() > 2);
        assert!(pipe.write.as_raw_fd() > 2);
        assert!(cloexec(&pipe.read));
        assert!(!cloexec(&pipe.write));
    }
}
