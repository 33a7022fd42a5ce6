//! Facts about the host lifeboat runs on, shared by the lock and the
//! helper-container bookkeeping: both must tell whether a process that
//! left something behind is still running.

/// Raises this process's soft limit on open files to its hard limit, as
/// Go programs do at start. Emptying a directory tree (a forced restore)
/// holds one open directory per level, and a volume's tree may be
/// thousands deep; the usual soft limit is 1,024.
pub fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::debug!("raising the open-file limit to {hard}: {e}");
    }
}

/// Whether this process sees the host's processes: its process-id
/// namespace is the kernel's first one (whose inode number is fixed,
/// `PROC_PID_INIT_INO`).
fn in_the_hosts_pid_namespace() -> bool {
    const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;
    std::fs::metadata("/proc/self/ns/pid").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino() == PROC_PID_INIT_INO
    })
}

/// This host's name.
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// Whether a process of this host is gone. Permission errors mean it
/// exists. Only the host's own process-id namespace sees every process of
/// the host: lifeboat in a container (that shares the host's name) would
/// take the host's processes for gone, and tells nothing then.
pub(crate) fn process_is_gone(pid: i64) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    pid > 0
        && in_the_hosts_pid_namespace()
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH)
}
