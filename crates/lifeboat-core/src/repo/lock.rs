//! Repository locks in restic's format, so lifeboat and restic keep out of
//! each other's way.
//!
//! The repository library does not lock. restic does: `restic prune` takes
//! an exclusive lock and deletes data no index references, which would
//! destroy a backup running at the same time. So lifeboat holds a shared
//! lock while it uses a repository (restic's prune then refuses to start)
//! and refuses to start while anyone holds an exclusive one. Locks are
//! encrypted JSON files under `locks/`, named by the SHA-256 of their
//! content, refreshed every five minutes and considered stale after thirty
//! (or at once, when their process on this host is gone), as restic does.
//!
//! Only local repositories are locked for now: the storage library offers
//! no access to `locks/` on other backends.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rustic_core::repofile::MasterKey;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::host::hostname;
use crate::repo::crypto::{seal, unseal};

/// How often a held lock is rewritten with a fresh time.
const REFRESH: Duration = Duration::from_secs(5 * 60);

/// After how long without a refresh a lock no longer counts.
const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// After how long without a successful refresh lifeboat considers its own
/// lock lost: well before others may call it stale and prune under it.
const LOST_AFTER: Duration = Duration::from_secs(20 * 60);

/// A lock file's content, as restic writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LockInfo {
    time: String,
    exclusive: bool,
    hostname: String,
    username: String,
    pid: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    uid: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    gid: u32,
    /// The process-id namespace `pid` is a number of (lifeboat's own
    /// field; restic ignores it and does not write it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pid_namespace: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl LockInfo {
    fn ours(exclusive: bool) -> Self {
        let uid = nix::unistd::getuid();
        Self {
            time: Timestamp::now().to_string(),
            exclusive,
            hostname: hostname(),
            username: nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_default(),
            pid: i64::from(std::process::id()),
            uid: uid.as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            pid_namespace: crate::host::pid_namespace(),
        }
    }

    /// Whether the lock no longer counts: too old, or its process on this
    /// host is gone.
    fn is_stale(&self) -> bool {
        let Ok(time) = self.time.parse::<Timestamp>() else {
            return false;
        };
        let age = Timestamp::now().duration_since(time);
        if age.as_secs() > STALE_AFTER.as_secs() as i64 {
            return true;
        }
        self.hostname == hostname() && crate::host::process_is_gone(self.pid, self.pid_namespace)
    }

    fn describe(&self) -> String {
        format!(
            "an exclusive lock is held by {}@{} (pid {}) since {}; another program (such as `restic prune`) is rewriting the repository, try again when it has finished",
            self.username, self.hostname, self.pid, self.time
        )
    }

    /// Who holds this lock, whatever kind it is.
    fn holder(&self) -> String {
        format!(
            "{} lock of {}@{} (pid {}) since {}",
            if self.exclusive { "an exclusive" } else { "a" },
            self.username,
            self.hostname,
            self.pid,
            self.time
        )
    }
}

/// A lock lifeboat holds; released (its file removed) on drop.
pub(crate) struct LockGuard {
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
    refreshed: Arc<Mutex<Instant>>,
    /// The lock file as it is now (each refresh writes a new one).
    current: Arc<Mutex<PathBuf>>,
}

impl LockGuard {
    /// The lock's file as it is now.
    fn current(&self) -> PathBuf {
        self.current.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Whether the lock is still held: refreshed recently enough that
    /// nobody can have judged it stale.
    pub(crate) fn is_held(&self) -> bool {
        self.refreshed
            .lock()
            .map(|t| t.elapsed() < LOST_AFTER)
            .unwrap_or(false)
    }
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard")
    }
}

/// Takes a shared lock on the local repository at `repo_dir`, after
/// checking that nobody holds an exclusive one. A repository on a
/// read-only file system needs no lock (nothing can rewrite it) and gets
/// none, so that restores from a read-only backup disk work.
pub(crate) fn lock_shared(
    repo_dir: &Path,
    key: &MasterKey,
    location: &str,
) -> Result<Option<LockGuard>> {
    let locks = repo_dir.join("locks");
    if let Err(e) = std::fs::create_dir_all(&locks) {
        return read_only_or(e, &locks);
    }
    remove_dead_locks(&locks, key);
    // Write ours first, then look: restic does the same, so of two programs
    // racing for the repository at least one sees the other.
    let ours = match write_lock(repo_dir, key, &LockInfo::ours(false)) {
        Ok(path) => path,
        Err(Error::Io { source, path }) => return read_only_or(source, &path),
        Err(e) => return Err(e),
    };
    let holder = exclusive_holder(&locks, key, &ours).inspect_err(|_| {
        let _ = std::fs::remove_file(&ours);
    })?;
    if let Some(holder) = holder {
        let _ = std::fs::remove_file(&ours);
        return Err(Error::RepositoryLocked {
            location: location.to_string(),
            holder: holder.describe(),
        });
    }
    held(repo_dir, key, ours, false, Instant::now()).map(Some)
}

/// Takes the exclusive lock on the local repository at `repo_dir`, which
/// nobody else may hold any lock with: waits up to `wait` for the locks of
/// others (a backup's, a restore's, restic's) to go, telling `waiting` who
/// holds one once, and fails as locked after that, or as interrupted when
/// `stopped` says so. `own` (this repository handle's shared lock) does
/// not count; an unreadable lock file counts as held. While it waits its
/// lock is written already and kept fresh, so that no new backup starts
/// meanwhile (they refuse, as locked); of two waiting for each other's
/// exclusive locks, the one whose file name sorts first goes on and the
/// other steps back.
pub(crate) fn lock_exclusive(
    repo_dir: &Path,
    key: &MasterKey,
    location: &str,
    own: Option<&LockGuard>,
    wait: Duration,
    waiting: &dyn Fn(&str),
    stopped: &dyn Fn() -> bool,
) -> Result<LockGuard> {
    let locks = repo_dir.join("locks");
    std::fs::create_dir_all(&locks).map_err(|e| Error::io(&locks, e))?;
    remove_dead_locks(&locks, key);
    let started = Instant::now();
    let mut ours: Option<(PathBuf, Instant)> = None;
    let mut stepped_back = false;
    let mut told = false;
    let give_up = |ours: &Option<(PathBuf, Instant)>, e: Error| {
        if let Some((path, _)) = ours {
            let _ = std::fs::remove_file(path);
        }
        e
    };
    loop {
        if stopped() {
            return Err(give_up(
                &ours,
                Error::Interrupted("stopped while waiting for the repository".to_string()),
            ));
        }
        // Written, or written again before anyone could call it stale.
        if !stepped_back && ours.as_ref().is_none_or(|(_, at)| at.elapsed() >= REFRESH) {
            let fresh =
                write_lock(repo_dir, key, &LockInfo::ours(true)).map_err(|e| give_up(&ours, e))?;
            if let Some((old, _)) = ours.replace((fresh, Instant::now())) {
                let _ = std::fs::remove_file(old);
            }
        }
        let mut skip: Vec<PathBuf> = own.map(LockGuard::current).into_iter().collect();
        skip.extend(ours.as_ref().map(|(path, _)| path.clone()));
        let other = match others(&locks, key, &skip) {
            Ok(other) => other,
            Err(e) => return Err(give_up(&ours, e)),
        };
        let Some(other) = other else {
            match ours.take() {
                Some((path, written)) => return held(repo_dir, key, path, true, written),
                None => {
                    // Stepped back, and the other is gone: write ours.
                    stepped_back = false;
                    continue;
                }
            }
        };
        // Two exclusive locks waiting for each other: one steps back.
        if let (Other::Held { info, path }, Some((mine, _))) = (&other, &ours)
            && info.exclusive
            && path.file_name() < mine.file_name()
        {
            let _ = std::fs::remove_file(mine);
            ours = None;
            stepped_back = true;
        }
        if started.elapsed() >= wait {
            return Err(give_up(
                &ours,
                Error::RepositoryLocked {
                    location: location.to_string(),
                    holder: format!(
                        "{} still holds it after {}s of waiting; try again when it has finished",
                        other.describe(),
                        wait.as_secs()
                    ),
                },
            ));
        }
        if !told {
            waiting(&format!(
                "waiting up to {}s for {} to release {location}",
                wait.as_secs(),
                other.describe()
            ));
            told = true;
        }
        std::thread::sleep(Duration::from_millis(250).min(wait));
    }
}

/// A lock just written at `ours`, at `written`, kept fresh until the guard
/// is dropped.
fn held(
    repo_dir: &Path,
    key: &MasterKey,
    ours: PathBuf,
    exclusive: bool,
    written: Instant,
) -> Result<LockGuard> {
    let (stop, stopped) = mpsc::channel::<()>();
    let repo_dir = repo_dir.to_path_buf();
    let key = key.clone();
    let refreshed = Arc::new(Mutex::new(written));
    let current = Arc::new(Mutex::new(ours.clone()));
    let (last, now) = (refreshed.clone(), current.clone());
    let refresher = std::thread::Builder::new()
        .name("lifeboat-lock".into())
        .spawn(move || {
            let due = REFRESH.saturating_sub(written.elapsed());
            refresh_until_stopped(&repo_dir, &key, exclusive, due, &stopped, &last, &now);
        });
    let refresher = match refresher {
        Ok(thread) => thread,
        Err(e) => {
            let _ = std::fs::remove_file(&ours);
            return Err(Error::Other(format!(
                "cannot start the lock refresher: {e}"
            )));
        }
    };
    Ok(LockGuard {
        stop: Some(stop),
        refresher: Some(refresher),
        refreshed,
        current,
    })
}

fn read_only_or(e: std::io::Error, path: &Path) -> Result<Option<LockGuard>> {
    if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem {
        tracing::info!("{}: read-only file system, not locking", path.display());
        Ok(None)
    } else {
        Err(Error::io(path, e))
    }
}

fn refresh_until_stopped(
    repo_dir: &Path,
    key: &MasterKey,
    exclusive: bool,
    mut due: Duration,
    stop: &mpsc::Receiver<()>,
    refreshed: &Mutex<Instant>,
    current: &Mutex<PathBuf>,
) {
    // Anything but a timeout means the guard is gone.
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(due) {
        due = REFRESH;
        match write_lock(repo_dir, key, &LockInfo::ours(exclusive)) {
            Ok(fresh) => {
                if let Ok(mut path) = current.lock() {
                    let _ = std::fs::remove_file(&*path);
                    *path = fresh;
                }
                if let Ok(mut t) = refreshed.lock() {
                    *t = Instant::now();
                }
            }
            Err(e) => tracing::warn!("refreshing the repository lock: {e}"),
        }
    }
    if let Ok(path) = current.lock() {
        let _ = std::fs::remove_file(&*path);
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
    }
}

/// Writes a lock file (through a temporary file, so that nobody reads half
/// of it) and returns its path.
fn write_lock(repo_dir: &Path, key: &MasterKey, info: &LockInfo) -> Result<PathBuf> {
    let json = serde_json::to_vec(info).map_err(|e| Error::Other(e.to_string()))?;
    let sealed = seal(key, &json);
    let id = crate::repo::crypto::sha256_hex(&sealed);
    let path = repo_dir.join("locks").join(id);
    // The temporary file's own errors name its path already.
    let bare = |e: std::io::Error| {
        e.raw_os_error().map_or_else(
            || std::io::Error::from(e.kind()),
            std::io::Error::from_raw_os_error,
        )
    };
    let mut tmp =
        tempfile::NamedTempFile::new_in(repo_dir).map_err(|e| Error::io(repo_dir, bare(e)))?;
    tmp.write_all(&sealed)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
    Ok(path)
}

/// Removes the locks whose process on this host is gone (a lifeboat or
/// restic that was killed), as `restic unlock` would: restic refuses to
/// check, prune or forget while they are there. Locks of other hosts are
/// left alone, since their processes cannot be asked.
fn remove_dead_locks(locks: &Path, key: &MasterKey) {
    let Ok(entries) = std::fs::read_dir(locks) else {
        return;
    };
    let this_host = hostname();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(Some(info)) = read_lock(key, &path) else {
            continue;
        };
        if info.hostname == this_host
            && crate::host::process_is_gone(info.pid, info.pid_namespace)
            && std::fs::remove_file(&path).is_ok()
        {
            tracing::info!(
                "removed the lock of process {} of this host, which is gone",
                info.pid
            );
        }
    }
}

/// A lock file's content; `Ok(None)` when it cannot be read as a lock.
fn read_lock(key: &MasterKey, path: &Path) -> std::io::Result<Option<LockInfo>> {
    let data = std::fs::read(path)?;
    Ok(unseal(key, &data).and_then(|json| serde_json::from_slice(&json).ok()))
}

/// What stands in the way of an exclusive lock.
enum Other {
    /// A live lock, and its file.
    Held { info: LockInfo, path: PathBuf },
    /// A lock file that cannot be read: it may be anyone's.
    Unreadable(PathBuf),
}

impl Other {
    fn describe(&self) -> String {
        match self {
            Self::Held { info, .. } => info.holder(),
            Self::Unreadable(path) => format!(
                "the unreadable lock file {} (remove it if no restic or lifeboat uses the repository)",
                path.display()
            ),
        }
    }
}

/// The first live lock that is not in `skip`, if any. A lock removed while
/// the directory is read (refreshed: written anew, then the old one
/// removed) makes it read again, so that the new one is not missed.
fn others(locks: &Path, key: &MasterKey, skip: &[PathBuf]) -> Result<Option<Other>> {
    'scan: loop {
        for entry in std::fs::read_dir(locks).map_err(|e| Error::io(locks, e))? {
            let path = entry.map_err(|e| Error::io(locks, e))?.path();
            if skip.contains(&path) {
                continue;
            }
            let info = match read_lock(key, &path) {
                Ok(Some(info)) => info,
                Ok(None) => return Ok(Some(Other::Unreadable(path))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue 'scan,
                Err(e) => return Err(Error::io(&path, e)),
            };
            if !info.is_stale() {
                return Ok(Some(Other::Held { info, path }));
            }
        }
        return Ok(None);
    }
}

/// The holder of a live exclusive lock other than `ours`, if any.
fn exclusive_holder(locks: &Path, key: &MasterKey, ours: &Path) -> Result<Option<LockInfo>> {
    for entry in std::fs::read_dir(locks).map_err(|e| Error::io(locks, e))? {
        let path = entry.map_err(|e| Error::io(locks, e))?.path();
        if path == ours {
            continue;
        }
        // A lock removed while we look is simply gone.
        let info = match read_lock(key, &path) {
            Ok(Some(info)) => info,
            Ok(None) => {
                tracing::warn!("ignoring unreadable lock file {}", path.display());
                continue;
            }
            Err(_) => continue,
        };
        if info.exclusive && !info.is_stale() {
            return Ok(Some(info));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
