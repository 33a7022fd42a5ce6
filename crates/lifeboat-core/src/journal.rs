//! The journal of what a run must undo if it cannot finish: the
//! containers it stopped (the stop strategy, a Redis restore) and the
//! commands still owed (post hooks, clean-ups). One file per run, written
//! before each step it records; should lifeboat be killed, the next
//! lifeboat command on this host reads the journals of runs that are gone
//! first, starts what they had stopped and runs what they owed.

use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::engine::{ContainerControl, Engine};
use crate::error::{Error, Result};

/// Where lifeboat keeps its journal of stopped containers by default:
/// lifeboat's data directory (`/var/lib/lifeboat` as root).
pub fn default_state_dir() -> PathBuf {
    crate::paths::Dirs::for_current_user().data
}

/// What a lifeboat run must undo if it cannot finish: the containers it
/// stopped and the commands still owed (post hooks, clean-ups). One file
/// per run, written before each step it records, and a lock file beside it
/// that the run holds while it lives: a journal whose lock can be taken
/// belongs to a run that is gone, whatever pid namespace either is in.
#[derive(Debug, Default, Serialize, Deserialize)]
struct JournalFile {
    /// The process that wrote it: its pid, its start time (clock ticks
    /// after boot) and the boot, so that it knows its own journal.
    pid: i64,
    started: u64,
    boot: String,
    host: String,
    engine: String,
    /// In the order they were stopped.
    stopped: Vec<Stopped>,
    /// In the order they are to run, once the containers run again.
    #[serde(default)]
    pending: Vec<Pending>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Stopped {
    id: String,
    name: String,
    /// When lifeboat asked the engine to stop it (RFC 3339): a container
    /// started since was started by someone else, and is left alone.
    #[serde(default)]
    requested: Option<String>,
    /// The seconds it was given to stop (negative: no limit).
    #[serde(default = "default_grace")]
    grace: i32,
}

fn default_grace() -> i32 {
    10
}

/// A command to run in a container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) container: String,
    pub(crate) command: Vec<String>,
    /// What it is, for messages.
    pub(crate) what: String,
    /// How long it may take.
    #[serde(default = "default_pending_timeout")]
    pub(crate) timeout_seconds: u64,
    /// Commands an interrupted run may have left running in the container
    /// (pre hooks), which must end before this one runs.
    #[serde(default)]
    pub(crate) after: Vec<Vec<String>>,
    /// How long to wait for those.
    #[serde(default)]
    pub(crate) after_seconds: u64,
}

fn default_pending_timeout() -> u64 {
    300
}

impl Pending {
    /// A command that may take the default time and waits for nothing.
    pub(crate) fn new(container: &str, command: Vec<String>, what: String) -> Self {
        Self {
            container: container.to_string(),
            command,
            what,
            timeout_seconds: default_pending_timeout(),
            after: Vec::new(),
            after_seconds: 0,
        }
    }
}

/// The journal directory under lifeboat's state directory.
fn journal_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("journal")
}

/// The lock file of a journal.
fn lock_path(journal: &Path) -> PathBuf {
    journal.with_extension("lock")
}

/// Takes the lock of a journal without waiting; `None` when its run still
/// holds it.
fn try_lock(journal: &Path) -> Result<Option<Flock<std::fs::File>>> {
    let path = lock_path(journal);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::io(&path, e.into())),
    }
}

/// This boot's id, the same inside and outside containers.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// When a process started, in clock ticks after boot (`/proc/PID/stat`,
/// field 22); `None` when there is no such process.
fn start_time(pid: i64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after
    // its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

impl JournalFile {
    fn is_this_process(&self) -> bool {
        self.boot == boot_id()
            && self.pid == i64::from(std::process::id())
            && start_time(self.pid) == Some(self.started)
    }
}

/// The journal of one run.
pub(crate) struct Journal {
    path: PathBuf,
    file: JournalFile,
    /// Held from the first write on, for as long as the run lives.
    lock: Option<Flock<std::fs::File>>,
}

impl Journal {
    pub(crate) fn new(engine: &dyn ContainerControl, state_dir: &Path) -> Self {
        let pid = i64::from(std::process::id());
        Self {
            path: journal_dir(state_dir).join(format!("{pid}-{}.json", crate::random_hex(6))),
            file: JournalFile {
                pid,
                started: start_time(pid).unwrap_or(0),
                boot: boot_id(),
                host: crate::host::hostname(),
                engine: engine.host().to_string(),
                stopped: Vec::new(),
                pending: Vec::new(),
            },
            lock: None,
        }
    }

    /// Records commands owed, before what makes them owed happens.
    pub(crate) fn owe(&mut self, pending: &[Pending]) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        self.file.pending.extend(pending.iter().cloned());
        self.save()
    }

    /// Records that a command owed has run (or is no longer owed).
    pub(crate) fn paid(&mut self, pending: &Pending) -> Result<()> {
        if let Some(i) = self.file.pending.iter().position(|p| p == pending) {
            self.file.pending.remove(i);
            self.save()?;
        }
        Ok(())
    }

    /// Records that a container is about to be stopped, with its grace
    /// period, before it is.
    pub(crate) fn stopping(&mut self, id: &str, name: &str, grace: i32) -> Result<()> {
        self.file.stopped.push(Stopped {
            id: id.to_string(),
            name: name.to_string(),
            requested: Some(Timestamp::now().to_string()),
            grace,
        });
        self.save()
    }

    /// A container this run stopped and has not started again.
    pub(crate) fn stopped(&self, id: &str) -> Option<Stopped> {
        self.file.stopped.iter().find(|s| s.id == id).cloned()
    }

    /// Records that a container this run stopped runs again.
    pub(crate) fn started(&mut self, id: &str) -> Result<()> {
        self.file.stopped.retain(|s| s.id != id);
        self.save()
    }

    /// Whether lifeboat stopped this container and has not started it
    /// again.
    pub(crate) fn left_stopped(&self, container: &str) -> bool {
        self.file
            .stopped
            .iter()
            .any(|s| s.id == container || s.name == container)
    }

    /// Writes the journal where a crash cannot leave half of it: a
    /// temporary file, synced, renamed over the old one; an empty journal
    /// is removed. The lock is taken before the first write.
    fn save(&mut self) -> Result<()> {
        if self.lock.is_none() {
            let dir = journal_dir_of(&self.path);
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            self.lock = Some(try_lock(&self.path)?.ok_or_else(|| {
                Error::Other(format!("journal {} is locked", self.path.display()))
            })?);
        }
        save_file(&self.path, &self.file)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // An empty journal was removed: its lock file goes too. One left
        // with entries stays for the next lifeboat command, which can take
        // its lock once this one is released.
        if self.lock.is_some() && !self.path.exists() {
            let _ = std::fs::remove_file(lock_path(&self.path));
        }
    }
}

fn journal_dir_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

fn save_file(path: &Path, file: &JournalFile) -> Result<()> {
    if file.stopped.is_empty() && file.pending.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
            _ => Ok(()),
        };
    }
    save_json(journal_dir_of(path), path, file)
}

/// Writes `value` as JSON to `path` in the state directory `dir`, whole:
/// into a temporary file there, synced, then renamed into place, so that a
/// process killed meanwhile leaves the old file or the new one.
pub(crate) fn save_json(dir: &Path, path: &Path, value: &impl serde::Serialize) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let json = serde_json::to_vec_pretty(value).map_err(|e| Error::Other(e.to_string()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(&json)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// What became of a container lifeboat had stopped.
#[derive(Debug, PartialEq)]
pub(crate) enum Restart {
    Started,
    /// Someone started it since lifeboat asked it to stop, or it is gone:
    /// not lifeboat's to start any more.
    NotOurs,
}

/// Starts a container lifeboat stopped, once it has really stopped (a stop
/// interrupted half-way ends first; starting it earlier would be answered
/// as done and the stop would then complete).
pub(crate) async fn start_stopped(
    engine: &dyn ContainerControl,
    stopped: &Stopped,
) -> Result<Restart> {
    let Some(status) = engine.status(&stopped.id).await? else {
        return Ok(Restart::NotOurs);
    };
    let requested = stopped
        .requested
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    let started = status
        .started_at
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    if let (Some(requested), Some(started)) = (requested, started)
        && started > requested
    {
        return Ok(Restart::NotOurs);
    }
    if status.running {
        // Still stopping, or the stop was never sent (lifeboat died
        // between its journal and the engine): wait no longer than the
        // stop can take.
        let limit = crate::engine::stop_limit(stopped.grace);
        let waited = requested.map_or(limit, |r| {
            let elapsed = Timestamp::now().duration_since(r).unsigned_abs();
            limit.saturating_sub(elapsed)
        });
        if engine.wait_stopped(&stopped.id, waited).await.is_err() {
            return Ok(Restart::NotOurs);
        }
    }
    engine.start(&stopped.id).await?;
    Ok(Restart::Started)
}

/// Whether any journal is waiting: a cheap look before connecting to the
/// engine.
pub fn journals_waiting(state_dir: &Path) -> bool {
    std::fs::read_dir(journal_dir(state_dir))
        .map(|mut d| d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))))
        .unwrap_or(false)
}

/// Undoes what lifeboat runs could not: those that are gone (a killed
/// lifeboat, for this engine: its journal's lock is free), or, with `own`,
/// this very process (after an interruption). Stopped containers start
/// again, then the commands owed run. Returns what was done, in words.
pub async fn recover(engine: &Engine, state_dir: &Path, own: bool) -> Result<Vec<String>> {
    recover_with(engine, state_dir, own).await
}

/// [`recover`] through the narrow interface the tests fake.
pub(crate) async fn recover_with(
    engine: &dyn ContainerControl,
    state_dir: &Path,
    own: bool,
) -> Result<Vec<String>> {
    let dir = journal_dir(state_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut done = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Some(journal) = read_journal(&path) else {
            continue;
        };
        if journal.engine != engine.host() {
            continue;
        }
        // This process holds its own journals' locks: it knows them by pid,
        // start time and boot instead.
        let _lock = if journal.is_this_process() {
            if !own {
                continue;
            }
            None
        } else {
            match try_lock(&path) {
                Ok(Some(lock)) => Some(lock),
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("{e}");
                    continue;
                }
            }
        };
        // Read again under the lock: the run may have ended meanwhile.
        let Some(mut journal) = read_journal(&path) else {
            let _ = std::fs::remove_file(lock_path(&path));
            continue;
        };
        recover_one(engine, &mut journal, &mut done).await;
        save_file(&path, &journal)?;
        if !path.exists() {
            let _ = std::fs::remove_file(lock_path(&path));
        }
    }
    Ok(done)
}

fn read_journal(path: &Path) -> Option<JournalFile> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str::<JournalFile>(&text) {
        Ok(j) => Some(j),
        Err(_) => {
            tracing::warn!("ignoring unreadable journal {}", path.display());
            None
        }
    }
}

async fn recover_one(
    engine: &dyn ContainerControl,
    journal: &mut JournalFile,
    done: &mut Vec<String>,
) {
    let mut left = Vec::new();
    for stopped in journal.stopped.iter().rev() {
        match start_stopped(engine, stopped).await {
            Ok(Restart::Started) => done.push(format!("started {}", stopped.name)),
            Ok(Restart::NotOurs) => {}
            Err(e) => {
                tracing::warn!("{e}");
                left.push(stopped.clone());
            }
        }
    }
    left.reverse();
    journal.stopped = left;
    let mut owed = Vec::new();
    for pending in std::mem::take(&mut journal.pending) {
        let still_stopped = journal
            .stopped
            .iter()
            .any(|s| s.id == pending.container || s.name == pending.container);
        match run_pending(engine, &pending).await {
            Ok(Some(0)) => {
                done.push(format!("ran {} in {}", pending.what, pending.container));
            }
            Ok(Some(code)) => done.push(format!(
                "{} in {} failed (exit status {code})",
                pending.what, pending.container
            )),
            // Not running: owed once lifeboat starts it again; otherwise
            // there is nothing to resume in a stopped container.
            Ok(None) if still_stopped => owed.push(pending),
            Ok(None) => done.push(format!(
                "did not run {} in {}: it is not running",
                pending.what, pending.container
            )),
            Err(e) => {
                tracing::warn!("{e}");
                owed.push(pending);
            }
        }
    }
    journal.pending = owed;
}

/// Runs a command owed; `None` when its container is not running (or is
/// gone). A command that does not end in time is taken as run: the engine
/// cannot stop it, and running it twice would be worse.
async fn run_pending(engine: &dyn ContainerControl, pending: &Pending) -> Result<Option<i64>> {
    match engine.status(&pending.container).await? {
        Some(status) if status.running => {}
        _ => return Ok(None),
    }
    engine
        .wait_for_commands(
            &pending.container,
            &pending.after,
            std::time::Duration::from_secs(pending.after_seconds),
        )
        .await?;
    let limit = std::time::Duration::from_secs(pending.timeout_seconds);
    match tokio::time::timeout(limit, engine.run(&pending.container, &pending.command)).await {
        Ok(Ok(code)) => Ok(Some(code)),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(Some(-1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journals_are_written_whole_and_removed_when_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal/1-a.json");
        let mut file = JournalFile {
            pid: 1,
            started: 7,
            boot: "b".into(),
            stopped: vec![Stopped {
                id: "1".into(),
                name: "db".into(),
                requested: None,
                grace: 10,
            }],
            ..Default::default()
        };
        save_file(&path, &file).expect("save");
        let back: JournalFile =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(back.stopped[0].name, "db");
        file.stopped.clear();
        save_file(&path, &file).expect("save");
        assert!(!path.exists());
    }

    #[test]
    fn a_process_is_known_by_pid_start_time_and_boot() {
        let me = i64::from(std::process::id());
        let mut file = JournalFile {
            pid: me,
            started: start_time(me).expect("own start time"),
            boot: boot_id(),
            ..Default::default()
        };
        assert!(file.is_this_process());
        file.started += 1;
        assert!(!file.is_this_process(), "a reused pid");
        file.started -= 1;
        file.boot = "another boot".into();
        assert!(!file.is_this_process());
    }

    #[test]
    fn a_journal_s_lock_is_free_only_once_its_run_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal/1-a.json");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        let held = try_lock(&path).expect("lock").expect("free at first");
        // Another open file, as another process would have.
        assert!(try_lock(&path).expect("try").is_none(), "taken twice");
        drop(held);
        assert!(try_lock(&path).expect("try").is_some());
    }
}
