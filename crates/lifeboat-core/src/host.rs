//! Facts about the host lifeboat runs on, shared by the lock and the
//! helper-container bookkeeping: both must tell whether a process that
//! left something behind is still running.

/// This host's name.
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// Whether a process of this host is gone. Permission errors mean it
/// exists.
pub(crate) fn process_is_gone(pid: i64) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    pid > 0
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH)
}
