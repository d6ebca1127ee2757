//! SIGTERM and SIGINT as a message instead of an interruption.
//!
//! The signals are blocked in the calling thread before any other thread starts (threads inherit
//! the mask), and one thread takes them with `sigwait`, so no handler ever runs in the middle of
//! a checkpoint write or a netlink exchange.

#![allow(unsafe_code)]

use std::io;

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread (and in every thread it starts later).
pub fn block_termination() -> io::Result<()> {
    let set = termination_set()?;
    // SAFETY: `set` is a valid, initialised signal set; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits for one of the blocked termination signals and returns its number.
pub fn wait_termination() -> io::Result<i32> {
    let set = termination_set()?;
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is initialised and `sig` is a valid place for the result.
    let rc = unsafe { libc::sigwait(&set, &mut sig) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(sig)
}

fn termination_set() -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` points to a sigset_t we own.
    if unsafe { libc::sigemptyset(&mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: `set` was initialised by sigemptyset; `s` is a valid signal number.
        if unsafe { libc::sigaddset(&mut set, s) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(set)
}

/// The name of a termination signal for the log.
pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
