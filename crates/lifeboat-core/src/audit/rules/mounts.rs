//! Rules about mounts: a tmpfs without a size, sensitive host paths,
//! configuration mounted writable, dependency directories on bind mounts,
//! and data mounts the container's user cannot write.

use std::path::Path;

use crate::audit::images::*;
use crate::audit::model::{Mount, MountType, Owner, Stack};
use crate::audit::{Finding, Severity};
use crate::tmpfs::TmpfsSize;

use super::{Rule, is_compose};

pub(super) fn tmpfs_without_size(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
    let mut findings = Vec::new();
    for s in &stack.services {
        for m in &s.mounts {
            if m.kind != MountType::Tmpfs {
                continue;
            }
            let message = match m.tmpfs_size {
                None => format!(
                    "{}: tmpfs at {} has no size limit: what is written there takes the host's memory",
                    s.name, m.target
                ),
                // Half the memory is the kernel's default: no limit at all.
                Some(TmpfsSize::Percent(percent)) if percent >= 50 => format!(
                    "{}: tmpfs at {} may take {percent}% of the host's memory, no less than with no size limit",
                    s.name, m.target
                ),
                Some(_) => continue,
            };
            let fix = if is_compose(stack) {
                format!(
                    "set a size: `- \"{}:size=64m\"` under `tmpfs:`, or `tmpfs: {{size: 64m}}` in the long syntax",
                    m.target
                )
            } else {
                format!(
                    "recreate {} with `--tmpfs {}:size=64m` (or a size that fits)",
                    s.name, m.target
                )
            };
            findings.push(
                rule.finding(stack, &s.name, m.line.or(s.line), message, fix)
                    .with_path(&m.target),
            );
        }
    }
    findings
}

/// Host paths that hold the host's own configuration, programs or kernel
/// interfaces: writable from a container, they make it the host's owner.
pub(super) const SYSTEM_DIRS: &[&str] = &[
    "/etc",
    "/usr",
    "/boot",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/proc",
    "/sys",
    "/var/lib/docker",
];

/// Credential directories in a home directory.
pub(super) const CREDENTIAL_DIRS: &[&str] = &[".ssh", ".gnupg", ".docker", ".aws", ".kube"];

pub(super) const ENGINE_SOCKETS: &[&str] = &["docker.sock", "podman.sock", "containerd.sock"];

pub(super) fn is_engine_socket(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| ENGINE_SOCKETS.contains(&n))
}

/// Why a bind of `m`'s source is sensitive, if it is.
pub(super) fn bind_sensitivity(m: &Mount) -> Option<&'static str> {
    let source = m.source_path()?;
    // A project kept below a system directory (/usr/src/app,
    // /etc/stacks/web) makes its own files no part of the system. One
    // kept in a system directory itself (a compose file in /etc) does
    // not, nor does a source that leaves the project (`../../etc`).
    let own_file_of_a_project_below_the_system = m.relative_to.as_deref().is_some_and(|dir| {
        source.starts_with(dir)
            && SYSTEM_DIRS
                .iter()
                .any(|d| dir.starts_with(d) && dir != Path::new(d))
    });
    if own_file_of_a_project_below_the_system && !is_engine_socket(source) {
        return None;
    }
    sensitivity(source, m.read_only)
}

/// Why a bind of `path` is sensitive, if it is. The engine's socket is
/// sensitive read-only too; the rest only when writable.
pub(super) fn sensitivity(path: &Path, read_only: bool) -> Option<&'static str> {
    if is_engine_socket(path) {
        return Some(if read_only {
            "the engine's socket: `:ro` does not limit what is asked through it"
        } else {
            "the engine's socket, which controls every container and volume"
        });
    }
    if read_only {
        return None;
    }
    if path == Path::new("/") {
        return Some("the host's whole file system");
    }
    if let Some(dir) = SYSTEM_DIRS.iter().find(|d| path.starts_with(d)) {
        return Some(if *dir == "/var/lib/docker" {
            "the engine's own data, every container's included"
        } else {
            "a part of the host system"
        });
    }
    if path == Path::new("/run") || path == Path::new("/var/run") {
        return Some("the host's runtime directory, which holds the engine's socket");
    }
    let home = if path.starts_with("/root") {
        Some(Path::new("/root"))
    } else if path.starts_with("/home") {
        path.ancestors()
            .find(|a| a.parent() == Some(Path::new("/home")))
    } else {
        None
    };
    match home {
        _ if path == Path::new("/home") => Some("every user's home directory"),
        Some(home) if path == home => Some("a home directory, credentials included"),
        Some(home) => {
            let below = path.strip_prefix(home).ok()?;
            let first = below.components().next()?.as_os_str().to_str()?;
            CREDENTIAL_DIRS
                .contains(&first)
                .then_some("a user's credentials")
        }
        None => None,
    }
}

pub(super) fn sensitive_host_path(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
    let mut findings = Vec::new();
    for s in &stack.services {
        for m in &s.mounts {
            if m.kind != MountType::Bind {
                continue;
            }
            let (Some(source), Some(why)) = (m.source_path(), bind_sensitivity(m)) else {
                continue;
            };
            let access = if m.read_only {
                "read-only"
            } else {
                "read-write"
            };
            let message = format!(
                "{}: bind mount of {} ({why}) at {}, {access}",
                s.name,
                source.display(),
                m.target
            );
            let socket = is_engine_socket(source);
            let fix = if socket {
                "drop the socket, or put a socket proxy in front of it that allows only the calls needed".to_string()
            } else {
                format!(
                    "mount only what {} needs, read-only (`:ro`) where it only reads",
                    s.name
                )
            };
            let finding = rule
                .finding(stack, &s.name, m.line.or(s.line), message, fix)
                .with_path(&source.to_string_lossy());
            findings.push(if socket && m.read_only {
                finding.with_severity(Severity::Low)
            } else {
                finding
            });
        }
    }
    findings
}

/// Extensions of configuration files.
pub(super) const CONFIG_EXTENSIONS: &[&str] = &[
    "conf",
    "cnf",
    "cfg",
    "ini",
    "toml",
    "yml",
    "yaml",
    "json",
    "env",
    "xml",
    "properties",
    "pem",
    "crt",
    "key",
];

/// Files that applications write themselves: data, logs, sockets, and
/// Traefik's certificate store (a `.json` it must write).
pub(super) const WRITTEN_EXTENSIONS: &[&str] = &[
    "db", "sqlite", "sqlite3", "db3", "log", "sock", "lock", "pid",
];
pub(super) const WRITTEN_FILES: &[&str] = &["acme.json"];

pub(super) fn extension(name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() || name.starts_with('.')).then(|| ext.to_ascii_lowercase())
}

pub(super) fn is_written_file(name: &str) -> bool {
    WRITTEN_FILES.contains(&name)
        || extension(name).is_some_and(|e| WRITTEN_EXTENSIONS.contains(&e.as_str()))
}

pub(super) fn has_config_extension(name: &str) -> bool {
    extension(name).is_some_and(|e| CONFIG_EXTENSIONS.contains(&e.as_str()))
}

/// Directories under `/etc` that applications write their own state to:
/// issued certificates, generated host keys and peers, settings changed
/// from a web page.
pub(super) const WRITTEN_ETC_DIRS: &[&str] = &[
    "letsencrypt",
    "acme.sh",
    "ssh",
    "wireguard",
    "openvpn",
    "gitlab",
    "pihole",
    "dnsmasq.d",
];

/// Whether a container path is in one of [`WRITTEN_ETC_DIRS`].
pub(super) fn in_written_etc_dir(target: &Path) -> bool {
    target
        .strip_prefix("/etc")
        .ok()
        .and_then(|below| below.components().next())
        .and_then(|first| first.as_os_str().to_str())
        .is_some_and(|first| WRITTEN_ETC_DIRS.contains(&first))
}

/// Whether a bind mount looks like configuration: a single file that is
/// not data, or a directory under `/etc` but where applications keep
/// their own state.
pub(super) fn looks_like_config(m: &Mount) -> bool {
    let source = m.source_path().map(file_name).unwrap_or_default();
    let target = file_name(m.target_path());
    if is_written_file(source) || is_written_file(target) {
        return false;
    }
    let single_file = match m.host_is_file {
        Some(is_file) => is_file,
        None => has_config_extension(source) || has_config_extension(target),
    };
    single_file || (m.target_path().starts_with("/etc") && !in_written_etc_dir(m.target_path()))
}

pub(super) fn config_mount_writable(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
    let mut findings = Vec::new();
    for s in &stack.services {
        for m in &s.mounts {
            if m.kind != MountType::Bind || m.read_only {
                continue;
            }
            let Some(source) = m.source_path() else {
                continue;
            };
            // Sensitive paths are the business of LB006, which says more.
            if bind_sensitivity(m).is_some() || !looks_like_config(m) {
                continue;
            }
            let message = format!(
                "{}: configuration {} is mounted read-write at {}",
                s.name,
                source.display(),
                m.target
            );
            let fix = if is_compose(stack) {
                format!(
                    "mount it read-only: append `:ro` to the entry for {}, or set `read_only: true`",
                    m.target
                )
            } else {
                format!(
                    "recreate {} with {} mounted read-only (`:ro`)",
                    s.name, m.target
                )
            };
            findings.push(
                rule.finding(stack, &s.name, m.line.or(s.line), message, fix)
                    .with_path(&m.target),
            );
        }
    }
    findings
}

/// Directories that package managers fill.
pub(super) const DEPENDENCY_DIRS: &[&str] =
    &["node_modules", "vendor", ".venv", "bower_components"];

pub(super) fn dependencies_on_bind_mount(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
    let mut findings = Vec::new();
    for s in &stack.services {
        for m in &s.mounts {
            if m.kind != MountType::Bind {
                continue;
            }
            let source = m.source_path().map(file_name).unwrap_or_default();
            let target = file_name(m.target_path());
            if !DEPENDENCY_DIRS.contains(&target) && !DEPENDENCY_DIRS.contains(&source) {
                continue;
            }
            let message = format!(
                "{}: dependency directory {} is a bind mount of {}: the host's packages replace the image's",
                s.name,
                m.target,
                m.source.as_deref().unwrap_or_default()
            );
            let fix = format!(
                "install dependencies in the image; drop this bind mount, and if the source directory is bind-mounted, add `- {}` (an anonymous volume) after it",
                m.target
            );
            findings.push(
                rule.finding(stack, &s.name, m.line.or(s.line), message, fix)
                    .with_path(&m.target),
            );
        }
    }
    findings
}

/// Whether a process of `uid` with the primary group `gid` (when known)
/// and the supplementary `groups` can write a directory owned by `owner`.
/// An unknown mode counts as the usual one for the owner (it can write)
/// and as undecidable for the group.
pub(super) fn can_write(uid: u32, gid: Option<u32>, groups: &[u32], owner: Owner) -> bool {
    let bit = |mask: u32| owner.mode.is_none_or(|mode| mode & mask != 0);
    if uid == owner.uid {
        return bit(0o200);
    }
    if owner.mode.is_some_and(|mode| mode & 0o002 != 0) {
        return true;
    }
    if gid == Some(owner.gid) || groups.contains(&owner.gid) {
        return bit(0o020);
    }
    // The primary group comes from the image's /etc/passwd when not given:
    // it might be the owner's group, so only a mode without group write
    // decides.
    gid.is_none() && bit(0o020)
}

pub(super) fn data_mount_not_writable(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
    let mut findings = Vec::new();
    for s in &stack.services {
        let (Some(uid), gid) = s.numeric_user() else {
            continue;
        };
        if uid == 0 {
            continue;
        }
        let groups: Vec<u32> = s.group_add.iter().filter_map(|g| g.parse().ok()).collect();
        let database_mount = database_data(s).and_then(|d| d.mount);
        for m in &s.mounts {
            let Some(owner) = m.owner else { continue };
            let data_mount = match m.kind {
                MountType::Volume | MountType::Anonymous => true,
                MountType::Bind => database_mount.is_some_and(|d| std::ptr::eq(d, m)),
                MountType::Tmpfs | MountType::Npipe => false,
            };
            if m.read_only || !data_mount || m.host_is_file == Some(true) {
                continue;
            }
            if can_write(uid, gid, &groups, owner) {
                continue;
            }
            let user = match gid {
                Some(g) => format!("{uid}:{g}"),
                None => uid.to_string(),
            };
            let mode = owner
                .mode
                .map(|m| format!(", mode {m:o}"))
                .unwrap_or_default();
            let message = format!(
                "{}: runs as {user} but {} belongs to {}:{}{mode}: it cannot write there",
                s.name, m.target, owner.uid, owner.gid
            );
            let fix = format!(
                "give {} to {user} (`lifeboat chown`, or chown on the host), or run {} as {}:{}",
                m.target, s.name, owner.uid, owner.gid
            );
            findings.push(
                rule.finding(stack, &s.name, m.line.or(s.line), message, fix)
                    .with_path(&m.target)
                    .with_volume(m.source.as_deref().filter(|_| m.kind != MountType::Bind)),
            );
        }
    }
    findings
}

#[cfg(test)]
mod tests;
