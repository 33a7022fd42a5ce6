//! Backup: one snapshot per volume or bind mount.
//!
//! For each target: choose the reader (`host` when lifeboat can read the
//! files itself, `engine` otherwise or on request), stream the files into the
//! repository, and publish the snapshot only when every file was read. A
//! failure of one target never stops the others; each gets its own result.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;

use crate::dump::dump_source;
use crate::dump::tools::DumpContext;
use crate::engine::{Engine, HELPER_MOUNT, Helper, HelperSource, MountKind};
use crate::error::{Error, ErrorClass, Result};
use crate::hooks::Phase;
use crate::inventory::{Inventory, Target};
use crate::pipe::ChunkReader;
use crate::plan::{PlannedTarget, Strategy};
use crate::progress::TransferProgress;
use crate::repo::source::{
    ArchiveInput, ArchiveSource, HostSource, Payload, ReadLog, Refetch, SharedLog, read_payload,
};
use crate::repo::{ArchiveRequest, Repo, SnapshotInfo};

/// How many chunks of an archive stream may wait for the parser.
const STREAM_CHUNKS: usize = 64;

/// How a target's files are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reader {
    /// Straight from the host path: fastest, and incremental through the
    /// previous snapshot.
    Host,
    /// Through the engine's archive endpoint, from a never-started helper
    /// container that mounts the target read-only.
    Engine,
}

/// Which reader to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReaderChoice {
    /// The host path when it is readable, the engine otherwise.
    #[default]
    Auto,
    Host,
    Engine,
}

/// The outcome of one target's backup.
#[derive(Clone, Debug, Serialize)]
pub struct TargetBackup {
    pub kind: MountKind,
    pub name: String,
    /// How the target was backed up, when it went through a plan.
    pub strategy: Option<Strategy>,
    pub reader: Option<Reader>,
    /// The snapshot written, when the backup succeeded.
    pub snapshot: Option<SnapshotInfo>,
    pub files: u64,
    pub bytes: u64,
    /// Bytes newly added to the repository (after deduplication and
    /// compression).
    pub bytes_added: u64,
    pub seconds: f64,
    /// Files that disappeared while the volume was read live.
    pub vanished: Vec<String>,
    /// Sockets left out (a socket is made by the process that listens on
    /// it; the engine's archive leaves them out too, unreported).
    pub sockets: Vec<String>,
    /// How long each stopped container was stopped (stop strategy).
    pub stop_windows: Vec<crate::stop::StopWindowReport>,
    /// The hooks that ran, before and after.
    pub hooks: Vec<crate::hooks::HookRun>,
    pub error: Option<String>,
    /// What kind of failure the error is.
    pub failure: Option<ErrorClass>,
}

impl TargetBackup {
    /// Whether the backup produced a snapshot.
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.snapshot.is_some()
    }
}

/// Picks the targets a backup request names. `names` are volume names or
/// bind-mount host paths; `all` takes every volume and every bind-mounted
/// data directory.
pub fn select_targets(inventory: &Inventory, names: &[String], all: bool) -> Result<Vec<Target>> {
    if all {
        return Ok(inventory
            .targets
            .iter()
            .filter(|t| t.in_backup_all())
            .cloned()
            .collect());
    }
    names
        .iter()
        .map(|name| {
            let kind = if name.starts_with('/') {
                MountKind::Bind
            } else {
                MountKind::Volume
            };
            let wanted = if kind == MountKind::Bind {
                name.trim_end_matches('/').to_string()
            } else {
                name.clone()
            };
            inventory
                .targets
                .iter()
                .find(|t| t.kind == kind && t.name == wanted)
                .cloned()
                .ok_or_else(|| Error::UnknownTarget(name.clone()))
        })
        .collect()
}

/// Backs up one target. Never fails as a whole: the error, if any, is in
/// the result.
pub async fn backup_target(
    engine: &Engine,
    repo: &Repo,
    target: &Target,
    choice: ReaderChoice,
    extra_tags: &[String],
    progress: Arc<TransferProgress>,
) -> TargetBackup {
    let started = Instant::now();
    let mut result = TargetBackup::new(target);
    let pass = FilePass {
        choice,
        tags: extra_tags.to_vec(),
        parent: None,
    };
    let outcome = run(engine, repo, target, &pass, progress, &mut result).await;
    result.complete(outcome, started)
}

/// Backs up one target by its plan: its database's dump, or its files.
/// Never fails as a whole: the error, if any, is in the result.
pub async fn backup_planned(
    engine: &Engine,
    repo: &Repo,
    planned: &PlannedTarget,
    choice: ReaderChoice,
    stop: &StopSettings,
    progress: Arc<TransferProgress>,
) -> TargetBackup {
    let started = Instant::now();
    let mut result = TargetBackup::new(&planned.target);
    result.strategy = Some(planned.strategy);
    let tag = format!("strategy={}", planned.strategy);
    if planned.strategy == Strategy::Stop
        && let Some(refusal) = planned.stop_refusal()
    {
        return result.complete(Err(Error::Refused(refusal)), started);
    }
    let mut journal = crate::journal::Journal::new(engine, &stop.state_dir);
    // Post hooks are owed from the moment pre hooks may have run: an
    // interrupted or killed lifeboat leaves them to the journal. Without a
    // journal, no hook runs.
    if let Err(e) = journal.owe(&crate::hooks::owed_after(&planned.hooks)) {
        return result.complete(Err(e), started);
    }
    let (pre, abort) = crate::hooks::run_phase(engine, &planned.hooks, Phase::Pre, None).await;
    result.hooks.extend(pre);
    let outcome = match (abort, planned.strategy) {
        (Some(e), _) => Err(e),
        (None, Strategy::Live) => {
            let pass = FilePass {
                choice,
                tags: vec![tag],
                parent: None,
            };
            run(engine, repo, &planned.target, &pass, progress, &mut result).await
        }
        (None, Strategy::Dump) => dump(engine, repo, planned, &[], progress, &mut journal).await,
        (None, Strategy::Stop) => {
            let settings = StopRun {
                choice,
                single_pass: stop.single_pass,
            };
            stop_and_copy(
                engine,
                repo,
                planned,
                &settings,
                &mut journal,
                progress,
                &mut result,
            )
            .await
        }
    };
    let (post, failed) =
        crate::hooks::run_phase(engine, &planned.hooks, Phase::Post, Some(&mut journal)).await;
    result.hooks.extend(post);
    if let Some(e) = failed {
        // The snapshot, if any, is good; what the hook should have undone
        // is not.
        result.failure = Some(e.class());
        result.error = Some(e.to_string());
    }
    result.complete(outcome, started)
}

/// Backs up a planned dump target with extra tags and without hooks: the
/// snapshot of what a restore into its container is about to replace.
pub(crate) async fn backup_tagged(
    engine: &Engine,
    repo: &Repo,
    planned: &PlannedTarget,
    extra_tags: &[String],
    state_dir: &std::path::Path,
    progress: Arc<TransferProgress>,
) -> TargetBackup {
    let started = Instant::now();
    let mut result = TargetBackup::new(&planned.target);
    result.strategy = Some(planned.strategy);
    let mut journal = crate::journal::Journal::new(engine, state_dir);
    let outcome = dump(engine, repo, planned, extra_tags, progress, &mut journal).await;
    result.complete(outcome, started)
}

impl TargetBackup {
    fn new(target: &Target) -> Self {
        Self {
            kind: target.kind,
            name: target.name.clone(),
            strategy: None,
            reader: None,
            snapshot: None,
            files: 0,
            bytes: 0,
            bytes_added: 0,
            seconds: 0.0,
            vanished: Vec::new(),
            sockets: Vec::new(),
            stop_windows: Vec::new(),
            hooks: Vec::new(),
            error: None,
            failure: None,
        }
    }

    fn complete(mut self, outcome: Result<SnapshotInfo>, started: Instant) -> Self {
        match outcome {
            Ok(snapshot) => {
                if let (Some(files), Some(bytes), Some(added)) =
                    (snapshot.files, snapshot.bytes, snapshot.bytes_added())
                {
                    self.files = files;
                    self.bytes = bytes;
                    self.bytes_added = added;
                }
                self.snapshot = Some(snapshot);
            }
            Err(e) => {
                // A failed restart said its part already; say the cause too.
                self.failure = Some(e.class());
                let cause = e.to_string();
                self.error = Some(match self.error.take() {
                    Some(earlier) => format!("{cause}; {earlier}"),
                    None => cause,
                });
            }
        }
        self.seconds = started.elapsed().as_secs_f64();
        self
    }
}

/// How the stop strategy runs.
#[derive(Clone, Debug)]
pub struct StopSettings {
    /// Where the journal of stopped containers lives.
    pub state_dir: PathBuf,
    /// Stop first and copy everything while stopped, instead of copying
    /// live first and only the changes while stopped.
    pub single_pass: bool,
}

/// The stop strategy: copy live, stop the writers and their dependents,
/// copy again on top of the first copy (so that the window covers only
/// what changed meanwhile), and start the containers again, whatever
/// happened. The first copy, an inconsistent one, is deleted.
/// How one stopped backup reads.
struct StopRun {
    choice: ReaderChoice,
    single_pass: bool,
}

async fn stop_and_copy(
    engine: &Engine,
    repo: &Repo,
    planned: &PlannedTarget,
    settings: &StopRun,
    journal: &mut crate::journal::Journal,
    progress: Arc<TransferProgress>,
    result: &mut TargetBackup,
) -> Result<SnapshotInfo> {
    let choice = settings.choice;
    let target = &planned.target;
    let tag = format!("strategy={}", Strategy::Stop);
    let two_pass = !settings.single_pass
        && !planned.stop.is_empty()
        && choice != ReaderChoice::Engine
        && target.host_readable();
    let prepass = if two_pass {
        let pass = FilePass {
            choice,
            tags: vec![tag.clone(), crate::repo::spec::PREPASS_TAG.to_string()],
            parent: None,
        };
        Some(run(engine, repo, target, &pass, progress.clone(), result).await?)
    } else {
        None
    };
    progress.reset();
    let mut window = crate::stop::StopWindow::new(engine, journal);
    let copied = match window.stop(&planned.stop).await {
        Ok(()) => {
            let pass = FilePass {
                choice,
                tags: vec![tag],
                parent: prepass.as_ref().map(|p| p.id.clone()),
            };
            run(engine, repo, target, &pass, progress, result).await
        }
        Err(e) => Err(e),
    };
    let (windows, failed_starts) = window.restart().await;
    result.stop_windows = windows;
    if let Some(prepass) = prepass {
        let repo = repo.clone();
        let deleted = tokio::task::spawn_blocking(move || repo.delete_snapshot(&prepass)).await;
        if let Ok(Err(e)) | Err(e) = deleted.map_err(|e| Error::Other(e.to_string())) {
            tracing::warn!("could not delete the first-pass snapshot: {e}");
        }
    }
    if !failed_starts.is_empty() {
        // The snapshot, if any, is good; the containers are not running.
        result.failure = Some(ErrorClass::Engine);
        result.error = Some(format!(
            "containers stopped for the backup could not be started again: {} (the next lifeboat command retries)",
            failed_starts.join("; ")
        ));
    }
    copied
}

/// Dumps the database that keeps its data in the target.
async fn dump(
    engine: &Engine,
    repo: &Repo,
    planned: &PlannedTarget,
    extra_tags: &[String],
    progress: Arc<TransferProgress>,
    journal: &mut crate::journal::Journal,
) -> Result<SnapshotInfo> {
    if let Some(problem) = &planned.problem {
        return Err(Error::Other(problem.clone()));
    }
    let from = planned
        .dump
        .as_ref()
        .ok_or_else(|| Error::Other(format!("{}: nothing to dump from", planned.name)))?;
    let mut spec = planned
        .target
        .spec()
        .ok_or_else(|| Error::BadRequest(format!("{} cannot be dumped", planned.name)))?;
    spec.extra_tags.push(format!("strategy={}", Strategy::Dump));
    spec.extra_tags.extend(extra_tags.iter().cloned());
    spec.extra_tags
        .push(format!("database={}", from.database.dir_name()));
    let snapshot_path = spec.snapshot_path();
    let root_name: OsString = snapshot_path
        .file_name()
        .map(ToOwned::to_owned)
        .unwrap_or_else(|| OsString::from("root"));
    let log = SharedLog::default();
    let request = ArchiveRequest {
        base: PathBuf::from(crate::dump::DUMP_BASE),
        snapshot_path,
        tags: spec.to_tags(),
        description: None,
        use_parent: false,
        label: Some(crate::dump::DUMP_LABEL.to_string()),
        parent: None,
        list_ahead: false,
        streams: true,
        progress: progress.clone(),
    };
    let prepared = from
        .database
        .tools()
        .prepare(DumpContext {
            engine,
            from,
            log: &log,
            progress: &progress,
            journal,
        })
        .await?;
    let source = dump_source(root_name, from.database, prepared.files);
    let archived = {
        let repo = repo.clone();
        tokio::task::spawn_blocking(move || {
            repo.archive(&source, &request, || {
                verdict(&log).map_err(Error::DumpFailed)
            })
        })
        .await
    };
    // Owed whether the archive succeeded or not.
    if let Some(after) = prepared.after {
        after.run(engine, journal).await;
    }
    archived.map_err(|e| Error::Other(format!("dump of {} stopped: {e}", planned.name)))?
}

/// One pass over a target's files.
struct FilePass {
    choice: ReaderChoice,
    /// Tags besides those that describe the target.
    tags: Vec<String>,
    /// The snapshot whose unchanged files may be reused, instead of the
    /// latest of the same path.
    parent: Option<String>,
}

async fn run(
    engine: &Engine,
    repo: &Repo,
    target: &Target,
    pass: &FilePass,
    progress: Arc<TransferProgress>,
    result: &mut TargetBackup,
) -> Result<SnapshotInfo> {
    let (choice, extra_tags) = (pass.choice, &pass.tags);
    let mut spec = target.spec().ok_or_else(|| {
        Error::BadRequest(format!(
            "{} is a tmpfs mount: it lives in memory and has nothing to back up",
            target.name
        ))
    })?;
    spec.extra_tags.extend(extra_tags.iter().cloned());
    let reader = match choice {
        ReaderChoice::Host => {
            if !target.host_readable() {
                return Err(Error::BadRequest(format!(
                    "{} cannot be read from a host path here; use the engine reader",
                    target.name
                )));
            }
            Reader::Host
        }
        ReaderChoice::Engine => Reader::Engine,
        ReaderChoice::Auto if target.host_readable() => Reader::Host,
        ReaderChoice::Auto => Reader::Engine,
    };
    result.reader = Some(reader);
    let snapshot_path = spec.snapshot_path();
    let root_name: OsString = snapshot_path
        .file_name()
        .map(ToOwned::to_owned)
        .unwrap_or_else(|| OsString::from("root"));
    let log = SharedLog::default();
    let request = ArchiveRequest {
        base: PathBuf::new(),
        snapshot_path,
        tags: spec.to_tags(),
        description: None,
        label: None,
        use_parent: reader == Reader::Host,
        parent: pass.parent.clone(),
        list_ahead: reader == Reader::Host,
        streams: false,
        progress: progress.clone(),
    };

    let snapshot = match reader {
        Reader::Host => {
            let root = PathBuf::from(target.host_path.clone().unwrap_or_default());
            let request = ArchiveRequest {
                base: root.clone(),
                ..request
            };
            let repo = repo.clone();
            let log = log.clone();
            tokio::task::spawn_blocking(move || -> Result<SnapshotInfo> {
                let source = HostSource::new(&root, root_name, log.clone(), progress)
                    .map_err(Error::ReadFailed)?;
                repo.archive(&source, &request, || {
                    verdict(&log).map_err(Error::ReadFailed)
                })
            })
            .await
            .map_err(|e| Error::Other(format!("backup task failed: {e}")))?
        }
        Reader::Engine => {
            archive_from_engine(
                engine,
                repo,
                target,
                request,
                root_name,
                log.clone(),
                progress,
            )
            .await
        }
    };
    if let Ok(log) = log.lock() {
        result.vanished = log.vanished.clone();
        result.sockets = log.sockets.clone();
    }
    snapshot
}

fn target_size(target: &Target) -> Option<u64> {
    match target.size {
        crate::inventory::Size::Known { bytes, .. } => Some(bytes),
        _ => None,
    }
}

/// Whether a source read cleanly: the snapshot may be published.
fn verdict(log: &SharedLog) -> std::result::Result<(), String> {
    let log = log.lock().map_err(|_| "read log poisoned".to_string())?;
    let ReadLog { fatal, .. } = &*log;
    match fatal.as_slice() {
        [] => Ok(()),
        [one] => Err(format!("not backed up: {one}")),
        [first, rest @ ..] => Err(format!(
            "not backed up: {first} (and {} more problem{})",
            rest.len(),
            if rest.len() == 1 { "" } else { "s" }
        )),
    }
}

/// Streams a helper's archive into a blocking reader.
/// Streams a helper's archive into a blocking reader. Cancelled (or its
/// abort handle used), the task that pumps it closes the engine's stream,
/// and the reader sees the stream end: the engine holds the helper while
/// the stream is open, so a backup given up must close it, or removing the
/// helper waits for the whole volume to be streamed.
pub(crate) fn stream_reader(
    engine: &Engine,
    helper: &Helper,
    path: &str,
    cancel: crate::cancel::Cancel,
) -> (ChunkReader, tokio::task::AbortHandle) {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(STREAM_CHUNKS);
    let mut stream = Box::pin(engine.download(helper, path));
    let pump = tokio::spawn(async move {
        let pumped = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()));
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        };
        tokio::select! {
            () = pumped => {}
            () = cancel.cancelled() => {}
        }
    });
    (ChunkReader::new(rx), pump.abort_handle())
}

async fn archive_from_engine(
    engine: &Engine,
    repo: &Repo,
    target: &Target,
    request: ArchiveRequest,
    root_name: OsString,
    log: SharedLog,
    progress: Arc<TransferProgress>,
) -> Result<SnapshotInfo> {
    let source = match target.kind {
        MountKind::Bind => HelperSource::Bind(target.name.clone()),
        _ => HelperSource::Volume(target.name.clone()),
    };
    let size = target_size(target);
    // Mounting a volume that no longer exists makes the engine create it,
    // empty: a backup of that stand-in would become the latest snapshot.
    ensure_same_volume(engine, target, "").await?;
    let helper = engine.create_helper(&source, true).await?;
    if let Err(e) = ensure_same_volume(
        engine,
        target,
        " (the engine may have created an empty one for lifeboat's helper container)",
    )
    .await
    {
        if let Err(undo) = engine.remove_helper(&helper).await {
            tracing::warn!("{undo}");
        }
        return Err(e);
    }
    let base = PathBuf::from(HELPER_MOUNT);
    let (reader, pump) = stream_reader(
        engine,
        &helper,
        &format!("{HELPER_MOUNT}/."),
        repo.cancellation(),
    );
    let spool = repo.settings().cache_dir.join("spool");
    let link_helper = Arc::new(std::sync::Mutex::new(None));
    let refetch = refetcher(
        engine.clone(),
        source.clone(),
        link_helper.clone(),
        spool.clone(),
        progress.clone(),
        repo.cancellation(),
    );
    let request = ArchiveRequest {
        base: base.clone(),
        ..request
    };
    let repo = repo.clone();
    let archived = tokio::task::spawn_blocking(move || {
        let input = ArchiveInput {
            stream: Box::new(reader),
            base,
            root_name,
            spool_dir: spool,
            refetch,
            close: Some(Box::new(move || pump.abort())),
        };
        let source = ArchiveSource::start(input, log.clone(), progress, size);
        repo.archive(&source, &request, || {
            verdict(&log).map_err(Error::ReadFailed)
        })
    })
    .await
    .map_err(|e| Error::Other(format!("backup task failed: {e}")));
    let link_helper = link_helper.lock().ok().and_then(|mut h| h.take());
    for h in std::iter::once(helper).chain(link_helper) {
        if let Err(e) = engine.remove_helper(&h).await {
            tracing::warn!("{e}");
        }
    }
    archived?
}

/// Fails when a volume is gone or is no longer the one the inventory saw.
async fn ensure_same_volume(engine: &Engine, target: &Target, note: &str) -> Result<()> {
    if target.kind != MountKind::Volume {
        return Ok(());
    }
    let now = engine.volume(&target.name).await?;
    let same = match (&now, &target.created_at) {
        (None, _) => false,
        (Some(v), Some(created)) => v.created_at.as_ref() == Some(created),
        (Some(_), None) => true,
    };
    if same {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "volume {} was removed or replaced since the inventory was taken{note}; not backing it up",
            target.name
        )))
    }
}

/// Reads the content behind a hard link again. The engine holds a
/// container's lock for as long as one of its archive streams is open, so
/// this goes through a second helper, created on the first link met and
/// kept in `slot` for the caller to remove.
fn refetcher(
    engine: Engine,
    source: HelperSource,
    slot: Arc<std::sync::Mutex<Option<Helper>>>,
    spool: PathBuf,
    progress: Arc<TransferProgress>,
    cancel: crate::cancel::Cancel,
) -> Refetch {
    let handle = tokio::runtime::Handle::current();
    Box::new(move |relative: &[u8]| -> std::io::Result<Payload> {
        let relative = std::str::from_utf8(relative).map_err(|_| {
            std::io::Error::other(
                "hard links to names that are not UTF-8 cannot be read through the engine",
            )
        })?;
        let mut helper = slot
            .lock()
            .map_err(|_| std::io::Error::other("link reader poisoned"))?;
        if helper.is_none() {
            let created = handle
                .block_on(engine.create_helper(&source, true))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            *helper = Some(created);
        }
        let Some(helper) = helper.as_ref() else {
            return Err(std::io::Error::other("no helper for hard links"));
        };
        let path = format!("{HELPER_MOUNT}/{relative}");
        let reader = {
            let _entered = handle.enter();
            stream_reader(&engine, helper, &path, cancel.clone()).0
        };
        let mut archive = crate::tar_reader::TarReader::new(reader);
        let entry = archive
            .next_entry()?
            .ok_or_else(|| std::io::Error::other("empty archive"))?;
        read_payload(&mut archive.content(), entry.meta.size, &spool, &progress)
    })
}

/// A summary of a whole backup run.
#[derive(Clone, Debug, Serialize)]
pub struct BackupRun {
    pub targets: Vec<TargetBackup>,
    pub seconds: f64,
}

impl BackupRun {
    /// How many targets failed.
    pub fn failures(&self) -> usize {
        self.targets.iter().filter(|t| !t.succeeded()).count()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};

    use super::*;
    use crate::repo::source::{CheckedOpen, ListedSource, Open};
    use crate::repo::testing::{repo_in, request};

    /// Gives some bytes, then fails: a disk error in the middle of a file.
    struct FailsMidway(Cursor<Vec<u8>>);

    impl Read for FailsMidway {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(std::io::Error::other("input/output error")),
                n => Ok(n),
            }
        }
    }

    impl Open for FailsMidway {
        type Reader = Self;

        fn open(self) -> std::io::Result<Self> {
            Ok(self)
        }
    }

    /// A source whose one file fails half-way through.
    fn one_bad_file(log: &SharedLog) -> ListedSource<CheckedOpen<FailsMidway>> {
        let open = CheckedOpen::new(
            FailsMidway(Cursor::new(vec![7u8; 100_000])),
            PathBuf::from("/b/data"),
            log.clone(),
            Arc::new(TransferProgress::default()),
        );
        ListedSource::new(
            PathBuf::from("/b"),
            OsString::from("v"),
            "d",
            vec![("data".to_string(), open)],
        )
    }

    #[test]
    fn a_read_error_midway_leaves_no_snapshot() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let repo = repo_in(dir.path());
        let log = SharedLog::default();
        let result = repo.archive(&one_bad_file(&log), &request(), || {
            verdict(&log).map_err(Error::ReadFailed)
        });
        let err = result.expect_err("a snapshot was published");
        assert_eq!(err.class(), ErrorClass::Io, "{err}");
        assert!(err.to_string().contains("/b/data"), "{err}");
        assert!(err.to_string().contains("input/output error"), "{err}");
        assert!(repo.snapshots()?.is_empty());
        Ok(())
    }
}
