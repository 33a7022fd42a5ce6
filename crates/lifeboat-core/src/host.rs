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

/// The inode of the host's own process-id namespace, the kernel's first
/// (`PROC_PID_INIT_INO`, fixed).
const HOST_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

/// This process's process-id namespace (its inode number), which the
/// process ids it hands out are numbers of. lifeboat records it beside
/// them, so that only a process of the same namespace judges them.
pub(crate) fn pid_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
}

/// This host's name.
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// Whether a process of this host is gone: `pid` of the process-id
/// namespace `namespace` (the host's own when it was not recorded, as
/// restic does not). Permission errors mean it exists. Only a process of
/// the same namespace can tell: lifeboat in a container that shares the
/// host's name would take the host's processes for gone, and the host's
/// lifeboat a container's; neither tells anything then.
pub(crate) fn process_is_gone(pid: i64, namespace: Option<u64>) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    pid > 0
        && pid_namespace() == Some(namespace.unwrap_or(HOST_PID_NAMESPACE))
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH)
}
