//! The stop strategy's containers: which ones stop, in which order, and
//! the guarantee that they start again.
//!
//! A target's writers are the running containers that mount it read-write;
//! the containers that depend on them (compose `depends_on`, `network_mode:
//! service:X` or `container:X`, `volumes_from`, links) stop too, before the
//! containers they depend on, and start again after them, in reverse order.
//! Only what was running is stopped, so only that starts again.
//!
//! Before a container is stopped it is written to a journal, one file per
//! lifeboat process. The containers are started again on every path out of
//! the stop window; should the process be killed, the next lifeboat
//! command on this host reads the journals of dead processes first and
//! starts what they had stopped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};
use rustic_core::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineContainer, MountKind};
use crate::error::{Error, Result};
use crate::inventory::Target;

/// Where lifeboat keeps its journal of stopped containers by default:
/// lifeboat's data directory (`/var/lib/lifeboat` as root).
pub fn default_state_dir() -> PathBuf {
    crate::paths::Dirs::for_current_user().data
}

/// A container to stop, and why.
#[derive(Clone, Debug, Serialize)]
pub struct StopEntry {
    pub id: String,
    pub name: String,
    pub why: String,
    /// Started with `--rm`: stopping it would remove it.
    pub auto_remove: bool,
}

/// How long one container was stopped.
#[derive(Clone, Debug, Serialize)]
pub struct StopWindowReport {
    pub container: String,
    pub seconds: f64,
}

/// The running containers to stop for a target, dependents first.
pub fn stop_order(target: &Target, containers: &[EngineContainer]) -> Vec<StopEntry> {
    let running: Vec<&EngineContainer> = containers.iter().filter(|c| c.running).collect();
    let deps = dependencies(&running);
    let mut why: BTreeMap<String, String> = BTreeMap::new();
    for c in &running {
        let writes = c.mounts.iter().any(|m| {
            m.read_write
                && m.kind == target.kind
                && match m.kind {
                    MountKind::Volume => m.name.as_deref() == Some(target.name.as_str()),
                    _ => m.source.as_deref() == Some(target.name.as_str()),
                }
        });
        if writes {
            why.insert(c.id.clone(), format!("mounts {} read-write", target.name));
        }
    }
    // Everything that depends, directly or not, on a container that stops.
    loop {
        let mut added = false;
        for c in &running {
            if why.contains_key(&c.id) {
                continue;
            }
            if let Some((dep, how)) = deps
                .get(&c.id)
                .into_iter()
                .flatten()
                .find(|(dep, _)| why.contains_key(dep))
            {
                let dep_name = running
                    .iter()
                    .find(|x| &x.id == dep)
                    .map_or(dep.as_str(), |x| x.name.as_str());
                why.insert(c.id.clone(), format!("depends on {dep_name} ({how})"));
                added = true;
            }
        }
        if !added {
            break;
        }
    }
    // Dependents first: a container stops once nothing still running in
    // the set depends on it. A cycle is broken by name.
    let mut left: BTreeSet<String> = why.keys().cloned().collect();
    let mut order = Vec::new();
    while !left.is_empty() {
        let needed_by_left = |id: &String| {
            left.iter().any(|other| {
                other != id
                    && deps
                        .get(other)
                        .is_some_and(|d| d.iter().any(|(x, _)| x == id))
            })
        };
        let next = left
            .iter()
            .filter(|id| !needed_by_left(id))
            .min_by_key(|id| name_of(&running, id))
            .or_else(|| left.iter().min_by_key(|id| name_of(&running, id)))
            .cloned();
        let Some(id) = next else { break };
        left.remove(&id);
        order.push(StopEntry {
            name: name_of(&running, &id),
            why: why.remove(&id).unwrap_or_default(),
            auto_remove: running.iter().any(|c| c.id == id && c.auto_remove),
            id,
        });
    }
    order
}

fn name_of(containers: &[&EngineContainer], id: &str) -> String {
    containers
        .iter()
        .find(|c| c.id == id)
        .map_or_else(|| id.to_string(), |c| c.name.clone())
}

/// For each container, the containers it depends on, by id, with how.
fn dependencies(containers: &[&EngineContainer]) -> HashMap<String, Vec<(String, String)>> {
    let find = |reference: &str| {
        containers
            .iter()
            .find(|c| c.name == reference || (reference.len() >= 12 && c.id.starts_with(reference)))
            .map(|c| c.id.clone())
    };
    let by_service = |project: &str, service: &str| -> Vec<String> {
        containers
            .iter()
            .filter(|c| {
                c.labels.get(COMPOSE_PROJECT).map(String::as_str) == Some(project)
                    && c.labels.get(COMPOSE_SERVICE).map(String::as_str) == Some(service)
            })
            .map(|c| c.id.clone())
            .collect()
    };
    let mut compose_files: HashMap<String, ComposeDeps> = HashMap::new();
    let mut deps: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for c in containers {
        let mut mine = Vec::new();
        for reference in &c.needs {
            if let Some(id) = find(reference) {
                mine.push((id, "shares its network, volumes or link".to_string()));
            }
        }
        if let (Some(project), Some(service)) =
            (c.labels.get(COMPOSE_PROJECT), c.labels.get(COMPOSE_SERVICE))
        {
            // Compose v2 records depends_on on the container itself.
            for dep in c
                .labels
                .get(COMPOSE_DEPENDS_ON)
                .into_iter()
                .flat_map(|v| v.split(','))
            {
                let dep = dep.split(':').next().unwrap_or(dep).trim();
                for id in by_service(project, dep) {
                    mine.push((id, "compose depends_on".to_string()));
                }
            }
            // Compose v1 does not: read the project's compose files, when
            // they can be read here.
            let file_deps = compose_files
                .entry(project.clone())
                .or_insert_with(|| ComposeDeps::of_container(c));
            for (dep, how) in file_deps.of(service) {
                for id in by_service(project, &dep) {
                    mine.push((id, how.clone()));
                }
            }
        }
        mine.retain(|(id, _)| id != &c.id);
        deps.insert(c.id.clone(), mine);
    }
    deps
}

const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";
const COMPOSE_DEPENDS_ON: &str = "com.docker.compose.depends_on";
const COMPOSE_FILES: &str = "com.docker.compose.project.config_files";
const COMPOSE_DIR: &str = "com.docker.compose.project.working_dir";

/// The service dependencies a project's compose files declare.
#[derive(Default)]
struct ComposeDeps(HashMap<String, Vec<(String, String)>>);

impl ComposeDeps {
    fn of_container(c: &EngineContainer) -> Self {
        let dir = c
            .labels
            .get(COMPOSE_DIR)
            .map(PathBuf::from)
            .unwrap_or_default();
        let mut deps = Self::default();
        for file in c
            .labels
            .get(COMPOSE_FILES)
            .into_iter()
            .flat_map(|f| f.split(','))
        {
            let path = dir.join(file.trim());
            match std::fs::read_to_string(&path) {
                Ok(text) => deps.add_file(&text),
                Err(e) => tracing::debug!("compose file {}: {e}", path.display()),
            }
        }
        deps
    }

    fn add_file(&mut self, text: &str) {
        let Ok(doc) = serde_norway::from_str::<serde_norway::Value>(text) else {
            return;
        };
        let Some(services) = doc.get("services").and_then(|s| s.as_mapping()) else {
            return;
        };
        for (name, service) in services {
            let Some(name) = name.as_str() else { continue };
            let entry = self.0.entry(name.to_string()).or_default();
            match service.get("depends_on") {
                Some(serde_norway::Value::Sequence(list)) => {
                    for dep in list.iter().filter_map(|d| d.as_str()) {
                        entry.push((dep.to_string(), "compose depends_on".to_string()));
                    }
                }
                Some(serde_norway::Value::Mapping(map)) => {
                    for dep in map.keys().filter_map(|d| d.as_str()) {
                        entry.push((dep.to_string(), "compose depends_on".to_string()));
                    }
                }
                _ => {}
            }
            if let Some(other) = service
                .get("network_mode")
                .and_then(|m| m.as_str())
                .and_then(|m| m.strip_prefix("service:"))
            {
                entry.push((
                    other.to_string(),
                    "compose network_mode: service".to_string(),
                ));
            }
            for from in service
                .get("volumes_from")
                .and_then(|v| v.as_sequence())
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
            {
                if !from.starts_with("container:") {
                    let svc = from.split(':').next().unwrap_or(from);
                    entry.push((svc.to_string(), "compose volumes_from".to_string()));
                }
            }
        }
    }

    fn of(&self, service: &str) -> Vec<(String, String)> {
        self.0.get(service).cloned().unwrap_or_default()
    }
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
struct Stopped {
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
    pub(crate) fn new(engine: &Engine, state_dir: &Path) -> Self {
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
    let dir = journal_dir_of(path);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let json = serde_json::to_vec_pretty(file).map_err(|e| Error::Other(e.to_string()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(&json)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// The containers a stop window stopped, started again on the way out.
pub(crate) struct StopWindow<'a> {
    engine: &'a Engine,
    journal: &'a mut Journal,
    stopped: Vec<(StopEntry, Instant)>,
}

impl<'a> StopWindow<'a> {
    pub(crate) fn new(engine: &'a Engine, journal: &'a mut Journal) -> Self {
        Self {
            engine,
            journal,
            stopped: Vec::new(),
        }
    }

    /// Stops the containers in the given order, each written to the journal
    /// before it is stopped. A container that is no longer running (it
    /// stopped since the plan was made) is left alone, and will not be
    /// started either.
    pub(crate) async fn stop(&mut self, order: &[StopEntry]) -> Result<()> {
        for entry in order {
            if !self.engine.is_running(&entry.id).await? {
                continue;
            }
            let grace = self.engine.stop_timeout(&entry.id).await?;
            self.journal.file.stopped.push(Stopped {
                id: entry.id.clone(),
                name: entry.name.clone(),
                requested: Some(Timestamp::now().to_string()),
                grace,
            });
            self.journal.save()?;
            self.stopped.push((entry.clone(), Instant::now()));
            self.engine.stop_container(&entry.id, Some(grace)).await?;
        }
        Ok(())
    }

    /// Starts again, in reverse order, everything this window stopped, and
    /// says how long each was stopped. Every container is tried, whatever
    /// happens to the others; one that cannot start stays in the journal,
    /// for the next lifeboat command to try again.
    pub(crate) async fn restart(mut self) -> (Vec<StopWindowReport>, Vec<String>) {
        let mut windows = Vec::new();
        let mut errors = Vec::new();
        while let Some((entry, since)) = self.stopped.pop() {
            let Some(stopped) = self
                .journal
                .file
                .stopped
                .iter()
                .find(|s| s.id == entry.id)
                .cloned()
            else {
                continue;
            };
            match start_stopped(self.engine, &stopped).await {
                Ok(_) => {
                    windows.push(StopWindowReport {
                        container: entry.name.clone(),
                        seconds: since.elapsed().as_secs_f64(),
                    });
                    self.journal.file.stopped.retain(|s| s.id != entry.id);
                    if let Err(e) = self.journal.save() {
                        errors.push(e.to_string());
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        windows.reverse();
        (windows, errors)
    }
}

/// What became of a container lifeboat had stopped.
#[derive(Debug, PartialEq)]
enum Restart {
    Started,
    /// Someone started it since lifeboat asked it to stop, or it is gone:
    /// not lifeboat's to start any more.
    NotOurs,
}

/// Starts a container lifeboat stopped, once it has really stopped (a stop
/// interrupted half-way ends first; starting it earlier would be answered
/// as done and the stop would then complete).
async fn start_stopped(engine: &Engine, stopped: &Stopped) -> Result<Restart> {
    let Some(status) = engine.container_status(&stopped.id).await? else {
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
    engine.start_container(&stopped.id).await?;
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

async fn recover_one(engine: &Engine, journal: &mut JournalFile, done: &mut Vec<String>) {
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
async fn run_pending(engine: &Engine, pending: &Pending) -> Result<Option<i64>> {
    match engine.container_status(&pending.container).await? {
        Some(status) if status.running => {}
        _ => return Ok(None),
    }
    engine
        .wait_for_execs(
            &pending.container,
            &pending.after,
            std::time::Duration::from_secs(pending.after_seconds),
        )
        .await?;
    let limit = std::time::Duration::from_secs(pending.timeout_seconds);
    match tokio::time::timeout(
        limit,
        engine.exec_collect(&pending.container, &pending.command, None),
    )
    .await
    {
        Ok(Ok(out)) => Ok(Some(out.exit_code)),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(Some(-1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ContainerMount;
    use crate::inventory::assemble;

    fn container(
        name: &str,
        running: bool,
        mount: Option<bool>,
        labels: &[(&str, &str)],
        needs: &[&str],
    ) -> EngineContainer {
        EngineContainer {
            id: format!("{name:0<16}"),
            name: name.into(),
            image: "img".into(),
            running,
            state: String::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mounts: mount
                .map(|rw| ContainerMount {
                    kind: MountKind::Volume,
                    name: Some("data".into()),
                    source: None,
                    destination: "/data".into(),
                    read_write: rw,
                    tmpfs_size: None,
                })
                .into_iter()
                .collect(),
            needs: needs.iter().map(|n| n.to_string()).collect(),
            auto_remove: false,
        }
    }

    fn order(containers: &[EngineContainer]) -> Vec<String> {
        let volume = crate::engine::EngineVolume {
            name: "data".into(),
            driver: "local".into(),
            ..Default::default()
        };
        let targets = assemble(&[volume], containers);
        stop_order(&targets[0], containers)
            .into_iter()
            .map(|e| e.name)
            .collect()
    }

    #[test]
    fn writers_and_their_dependents_stop_dependents_first() {
        let project = [("com.docker.compose.project", "shop")];
        let containers = vec![
            container(
                "db",
                true,
                Some(true),
                &[project[0], ("com.docker.compose.service", "db")],
                &[],
            ),
            container("reader", true, Some(false), &[], &[]),
            container("stopped-writer", false, Some(true), &[], &[]),
            container(
                "app",
                true,
                None,
                &[
                    project[0],
                    ("com.docker.compose.service", "app"),
                    ("com.docker.compose.depends_on", "db:service_started:false"),
                ],
                &[],
            ),
            container("sidecar", true, None, &[], &["app"]),
            container("unrelated", true, None, &[], &[]),
        ];
        assert_eq!(order(&containers), ["sidecar", "app", "db"]);
    }

    #[test]
    fn compose_files_give_the_dependencies_compose_v1_does_not_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("compose.yaml"),
            "services:\n  db:\n    image: x\n  app:\n    image: y\n    depends_on:\n      db:\n        condition: service_healthy\n  proxy:\n    image: z\n    network_mode: service:app\n",
        )
        .expect("write");
        let labels = |service: &'static str| {
            vec![
                ("com.docker.compose.project", "shop"),
                ("com.docker.compose.service", service),
                ("com.docker.compose.project.config_files", "compose.yaml"),
            ]
        };
        let dir_label = dir.path().display().to_string();
        let with_dir = |mut l: Vec<(&'static str, &'static str)>| {
            let mut c = l
                .drain(..)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>();
            c.insert(
                "com.docker.compose.project.working_dir".into(),
                dir_label.clone(),
            );
            c
        };
        let mut db = container("db", true, Some(true), &[], &[]);
        db.labels = with_dir(labels("db"));
        let mut app = container("app", true, None, &[], &[]);
        app.labels = with_dir(labels("app"));
        let mut proxy = container("proxy", true, None, &[], &[]);
        proxy.labels = with_dir(labels("proxy"));
        assert_eq!(order(&[db, app, proxy]), ["proxy", "app", "db"]);
    }

    #[test]
    fn cycles_do_not_hang() {
        let containers = vec![
            container("a", true, Some(true), &[], &["b"]),
            container("b", true, None, &[], &["a"]),
        ];
        assert_eq!(order(&containers).len(), 2);
    }

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
